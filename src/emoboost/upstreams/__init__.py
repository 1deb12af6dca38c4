"""Upstream encoders by name, hub id or local directory.

Every implementation is imported lazily inside :func:`build_upstream` (the s3prl lesson: one missing
optional dependency must not make every upstream unusable).

Names resolve to offline weights first: ``whisper-base`` becomes ``<shared>/weights/whisper-base-encoder``
(``<shared>`` = $EMOBOOST_SHARED or ``../shared``) when that folder exists, else the hub id, so runs
by name work offline wherever the shared weights are present.
"""

from __future__ import annotations

import json
from pathlib import Path

from emoboost.upstreams.base import Upstream, state_dict_hash

__all__ = ["KNOWN_UPSTREAMS", "Upstream", "build_upstream", "known_upstreams", "resolve_upstream", "state_dict_hash"]

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


def _model_type(source: str, local: bool) -> str:
    if local:
        cfg = Path(source) / "config.json"
        if not cfg.is_file():
            raise ValueError(f"{source}: not an upstream directory (no config.json and no {LOCAL_UPSTREAM_MARKER})")
        try:
            with open(cfg, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type")
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{cfg}: unreadable model config ({e})") from e
        if not model_type:
            raise ValueError(f"{cfg}: no 'model_type' field")
        return str(model_type)
    from transformers import AutoConfig

    return str(AutoConfig.from_pretrained(source).model_type)


def build_upstream(spec: str, device: str = "cpu", **kw) -> Upstream:
    """An :class:`Upstream` from a known name, a Hugging Face id or a local directory.

    Local directories: one holding ``emoboost_upstream.json`` is an emoboost-trained encoder
    (:func:`emoboost.upstreams.local.load_local_upstream`); otherwise ``config.json``'s ``model_type``
    picks Whisper (encoder only) or wav2vec2/HuBERT/WavLM. Extra keywords go to the upstream class
    (e.g. ``normalize=True`` for :class:`~emoboost.upstreams.hf.HFUpstream`).
    """
    source, local = resolve_upstream(spec)
    name = kw.pop("name", None) or _canonical_name(str(spec), source, local)
    if local and (Path(source) / LOCAL_UPSTREAM_MARKER).is_file():
        from emoboost.upstreams.local import load_local_upstream

        return load_local_upstream(source, device=device).eval()
    model_type = _model_type(source, local)
    if model_type == "whisper":
        from emoboost.upstreams.whisper import WhisperEncoderUpstream

        return WhisperEncoderUpstream(source, name=name, device=device, **kw)
    if model_type in HF_MODEL_TYPES:
        from emoboost.upstreams.hf import HFUpstream

        return HFUpstream(source, name=name, device=device, **kw)
    raise ValueError(
        f"{source}: model_type {model_type!r} is not supported (whisper, {', '.join(HF_MODEL_TYPES)})"
    )
