"""Upstream encoders by name, hub id or local directory.

Every implementation is imported lazily inside :func:`build_upstream` (the s3prl lesson: one missing
optional dependency must not make every upstream unusable).

Names resolve to offline weights first: ``whisper-base`` becomes ``<shared>/weights/whisper-base-encoder``
(``<shared>`` = $EMOBOOST_SHARED or ``../shared``) when that folder exists, else the hub id, so runs
by name work offline wherever the shared weights are present.

:func:`fingerprint_spec` gives ``build_upstream(spec).fingerprint()`` from the config and a hash of
the weight files without loading the model (see :mod:`emoboost.upstreams.identity`);
``build_upstream(spec, expect_fingerprint=fp)`` checks it before any weights are read, and
``max_layer=k`` builds and runs the encoder only up to hidden state k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emoboost.upstreams.identity import (
    default_name,
    fingerprint_of,
    hf_identity,
    hub_snapshot,
    own_identity,
    read_config,
    whisper_identity,
)

if TYPE_CHECKING:
    from emoboost.upstreams.base import Upstream

__all__ = ["KNOWN_UPSTREAMS", "Upstream", "build_upstream", "fingerprint_spec", "known_upstreams",
           "resolve_upstream", "state_dict_hash", "upstream_sources"]


def __getattr__(name: str):
    """``Upstream`` and ``state_dict_hash`` import torch: loaded on first use, so that resolving and
    fingerprinting specs stays light."""
    if name in ("Upstream", "state_dict_hash"):
        from emoboost.upstreams import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# name -> Hugging Face hub id
KNOWN_UPSTREAMS: dict[str, str] = {
    "wav2vec2-base": "facebook/wav2vec2-base",
    "wav2vec2-large": "facebook/wav2vec2-large",
    "wav2vec2-large-lv60": "facebook/wav2vec2-large-lv60",
    "wav2vec2-large-robust": "facebook/wav2vec2-large-robust",
    "wav2vec2-large-xlsr-53": "facebook/wav2vec2-large-xlsr-53",
    "hubert-base": "facebook/hubert-base-ls960",
    "hubert-large": "facebook/hubert-large-ll60k",
    "wavlm-base": "microsoft/wavlm-base",
    "wavlm-base-plus": "microsoft/wavlm-base-plus",
    "wavlm-large": "microsoft/wavlm-large",
    "whisper-tiny": "openai/whisper-tiny",
    "whisper-tiny.en": "openai/whisper-tiny.en",
    "whisper-base": "openai/whisper-base",
    "whisper-base.en": "openai/whisper-base.en",
    "whisper-small": "openai/whisper-small",
}

LOCAL_UPSTREAM_MARKER = "emoboost_upstream.json"
HF_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")


def known_upstreams() -> list[str]:
    return sorted(KNOWN_UPSTREAMS)


def _depth(config: dict) -> str:
    """'6 layers x 512' from a Hugging Face config (Whisper's encoder or a wav2vec2-style model)."""
    layers = config.get("encoder_layers", config.get("num_hidden_layers"))
    dim = config.get("d_model", config.get("hidden_size"))
    return f"{layers} layers x {dim}" if layers and dim else ""


def upstream_sources() -> list[dict]:
    """Where each known name would load from, without contacting the hub (``emoboost upstreams``).

    ``where`` is ``"offline copy"`` (the shared weights folder), ``"hub cache"`` (downloaded earlier)
    or ``"download"`` (fetched from the hub on first use).
    """
    from huggingface_hub import try_to_load_from_cache

    rows = []
    for name in known_upstreams():
        hub_id = KNOWN_UPSTREAMS[name]
        local = _shared_weights(name)
        cached = None if local is not None else try_to_load_from_cache(hub_id, "config.json")
        where, path = ("offline copy", local) if local is not None else (
            ("hub cache", Path(cached).parent) if isinstance(cached, str) else ("download", None))
        try:
            size = _depth(read_config(path)) if path is not None else ""
        except ValueError:
            size = ""
        rows.append({"name": name, "hub_id": hub_id, "where": where, "path": str(path) if path else None,
                     "size": size})
    return rows


def _shared_weights(name: str) -> Path | None:
    from emoboost.utils import shared_root

    weights = shared_root() / "weights"
    for cand in (weights / f"{name}-encoder", weights / name):
        if (cand / "config.json").is_file():
            return cand
    return None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(("/", "\\")) or spec.count("/") > 1


def resolve_upstream(spec: str) -> tuple[str, bool]:
    """(source, is_local_dir): a directory, the shared offline copy of a known name, or a hub id."""
    spec = str(spec)
    p = Path(spec).expanduser()
    if p.is_dir():
        return str(p), True
    if spec in KNOWN_UPSTREAMS:
        local = _shared_weights(spec)
        return (str(local), True) if local is not None else (KNOWN_UPSTREAMS[spec], False)
    if _looks_like_path(spec) or p.exists():
        raise FileNotFoundError(f"upstream {spec!r}: no such directory")
    if "/" not in spec:
        raise ValueError(
            f"unknown upstream {spec!r}: give a known name ({', '.join(known_upstreams())}), "
            "a Hugging Face id (owner/model) or a local directory"
        )
    return spec, False


def _canonical_name(spec: str, source: str, local: bool) -> str | None:
    """The registry name for a known model however it was given (name, hub id, shared folder), so the
    same weights get the same feature-cache key; None lets the upstream derive a name itself."""
    if spec in KNOWN_UPSTREAMS:
        return spec
    by_id = {v: k for k, v in KNOWN_UPSTREAMS.items()}
    if not local:
        return by_id.get(source)
    folder = Path(source).name
    stem = folder[: -len("-encoder")] if folder.endswith("-encoder") else folder
    return stem if stem in KNOWN_UPSTREAMS else None


def _model_type(directory: Path, source: str) -> str:
    if not (directory / "config.json").is_file():
        raise ValueError(f"{source}: not an upstream directory (no config.json and no {LOCAL_UPSTREAM_MARKER})")
    model_type = read_config(directory).get("model_type")
    if not model_type:
        raise ValueError(f"{directory / 'config.json'}: no 'model_type' field")
    return str(model_type)


@dataclass(frozen=True)
class _Resolved:
    source: str  # what the upstream class is given: a directory or a hub id
    directory: Path  # where its files are (the hub snapshot for a hub id)
    kind: str  # "own" (emoboost-pretrained), "whisper" or "hf"
    name: str | None  # registry name, or None to let the upstream derive one


def _resolve(spec: str, name: str | None) -> _Resolved:
    """How ``build_upstream`` and ``fingerprint_spec`` see a spec (one function, so they agree)."""
    source, local = resolve_upstream(spec)
    if local and (Path(source) / LOCAL_UPSTREAM_MARKER).is_file():
        return _Resolved(source, Path(source), "own", None)
    name = name or _canonical_name(str(spec), source, local)
    directory = Path(source) if local else hub_snapshot(source)
    model_type = _model_type(directory, source)
    if model_type == "whisper":
        return _Resolved(source, directory, "whisper", name)
    if model_type in HF_MODEL_TYPES:
        return _Resolved(source, directory, "hf", name)
    raise ValueError(
        f"{source}: model_type {model_type!r} is not supported (whisper, {', '.join(HF_MODEL_TYPES)})"
    )


def _fingerprint(r: _Resolved, kw: dict) -> str:
    if r.kind == "own":
        ident = own_identity(r.directory)
        return fingerprint_of(ident["name"], ident)
    extra = set(kw) - ({"normalize"} if r.kind == "hf" else set())
    if extra:
        raise TypeError(f"unexpected upstream option(s) for a {r.kind} upstream: {', '.join(sorted(extra))}")
    name = r.name or default_name(r.source)
    if r.kind == "whisper":
        return fingerprint_of(name, whisper_identity(r.directory, name))
    return fingerprint_of(name, hf_identity(r.directory, name, kw.get("normalize")))


def fingerprint_spec(spec: str, **kw) -> str:
    """``build_upstream(spec, **kw).fingerprint()`` from the config and the weight files' hash, without
    building the model (nor importing torch): what a cached run or a bundle check needs."""
    kw = dict(kw)
    return _fingerprint(_resolve(str(spec), kw.pop("name", None)), kw)


def build_upstream(spec: str, device: str = "cpu", expect_fingerprint: str | None = None,
                   max_layer: int | None = None, **kw) -> Upstream:
    """An :class:`Upstream` from a known name, a Hugging Face id or a local directory.

    Local directories: one holding ``emoboost_upstream.json`` is an emoboost-trained encoder
    (:func:`emoboost.upstreams.local.load_local_upstream`); otherwise ``config.json``'s ``model_type``
    picks Whisper (encoder only) or wav2vec2/HuBERT/WavLM. Extra keywords go to the upstream class
    (e.g. ``normalize=True`` for :class:`~emoboost.upstreams.hf.HFUpstream`).

    ``expect_fingerprint``: the fingerprint the caller's features were made with; it is compared with
    :func:`fingerprint_spec` first, and a mismatch raises ``ValueError`` before any weights are read.
    ``max_layer``: build and run the encoder only up to hidden state ``max_layer`` (``num_layers``
    stays the model's count, ``layers_out`` is ``max_layer + 1``; the fingerprint does not change).
    """
    r = _resolve(str(spec), kw.pop("name", None))
    if expect_fingerprint is not None:
        got = _fingerprint(r, kw)
        if got != expect_fingerprint:
            raise ValueError(
                f"{r.directory}: encoder fingerprint {got} does not match the expected {expect_fingerprint} "
                "(other weights or config than the features were made with)"
            )
    if r.kind == "own":
        from emoboost.upstreams.local import load_local_upstream

        return load_local_upstream(r.directory, device=device, max_layer=max_layer).eval()
    if r.kind == "whisper":
        from emoboost.upstreams.whisper import WhisperEncoderUpstream

        return WhisperEncoderUpstream(r.source, name=r.name, device=device, max_layer=max_layer, **kw)
    from emoboost.upstreams.hf import HFUpstream

    return HFUpstream(r.source, name=r.name, device=device, max_layer=max_layer, **kw)
