"""Acoustic features a method declares, for a whole corpus (cached) or for one waveform (predict);
and opening the SSL feature store for an encoder.

Acoustic feature names: segment-level ``mfcc``, ``spec``, ``logmel``; utterance-level ``egemaps``,
``compare``, ``mfcc_stats``. Their computation lives in :mod:`emoboost.features.acoustic` /
:mod:`emoboost.features.functionals`; this module only routes and caches, and turns bad files into a
skipped list instead of a crash. SSL features (``ssl``) never pass through here: they come from the
feature store (:mod:`emoboost.features.store`, filled by :mod:`emoboost.features.extract`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from emoboost.audio import AudioError, Segmenting, content_hash, load_audio, segment
from emoboost.data.manifest import Manifest

SEGMENT_FEATURES = ("mfcc", "spec", "logmel")
UTTERANCE_FEATURES = ("egemaps", "compare", "mfcc_stats")
log = logging.getLogger(__name__)


def _acoustic(wav: np.ndarray, name: str, seg: Segmenting) -> np.ndarray:
    if name in UTTERANCE_FEATURES:
        from emoboost.features.functionals import functionals

        return functionals(wav, name).astype(np.float32)
    from emoboost.features.acoustic import segment_features

    return segment_features(wav, seg, name).astype(np.float32)


def _acoustic_key(name: str, seg: Segmenting) -> str:
    from emoboost import __version__

    if name in UTTERANCE_FEATURES:
        return f"{name}-utt-v{__version__}"
    from emoboost.features.acoustic import acoustic_key

    return acoustic_key(name, seg)


def compute_corpus_features(
    manifest: Manifest,
    names: Iterable[str],
    seg: Segmenting,
    cache_dir: str,
    min_duration: float = 0.0,
    progress: bool = True,
) -> tuple[dict[str, dict[str, np.ndarray]], list[tuple[str, str]]]:
    """Acoustic features of a corpus -> ({feature: {utt_id: array}}, [(path, problem)] of skipped files).

    Cached per (feature parameters, audio content) and resumable.
    """
    from emoboost.features.cache import FeatureCache, warn_skipped

    names = list(dict.fromkeys(names))
    _check_names(names)
    cache = FeatureCache(cache_dir)
    out: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    skipped: dict[str, str] = {}
    if not names:
        return out, []
    for u in tqdm(manifest, desc=f"features {'+'.join(names)}", disable=not progress):
        try:
            h = content_hash(u.path)
        except OSError as e:
            skipped[u.path] = f"unreadable ({e})"
            continue
        wav = None
        for n in names:
            key = _acoustic_key(n, seg)
            arr = cache.get(key, h)
            if arr is None:
                if wav is None:
                    try:
                        wav = load_audio(u.path, min_duration=min_duration, reject_silence=True)
                    except AudioError as e:
                        skipped[u.path] = e.problem
                        break
                arr = _acoustic(wav, n, seg)
                cache.put(key, h, arr)
            out[n][u.id] = arr
    bad_ids = {u.id for u in manifest if u.path in skipped}
    for n in names:
        for i in bad_ids:
            out[n].pop(i, None)
    warn_skipped(sorted(skipped.items()))
    return out, sorted(skipped.items())


def _check_names(names: list[str]) -> None:
    if "ssl" in names:
        raise ValueError("SSL features come from the feature store (emoboost.features.store), not from here")
    unknown = [n for n in names if n not in SEGMENT_FEATURES + UTTERANCE_FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}")


def wav_features(wav: np.ndarray, names: Iterable[str], seg: Segmenting,
                 start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Acoustic features of segments ``start:stop`` of one waveform (predict streams long audio this way)."""
    names = list(names)
    _check_names(names)
    segs_all = None
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n in UTTERANCE_FEATURES:
            out[n] = _acoustic(wav, n, seg)[None]
            continue
        if segs_all is None:
            n_seg = seg.num_segments(len(wav))
            stop_ = n_seg if stop is None else min(stop, n_seg)
            lo = start * seg.hop_samples
            hi = (stop_ - 1) * seg.hop_samples + seg.length_samples
            segs_all = segment(wav[lo:hi], seg)[: stop_ - start]
        from emoboost.features.acoustic import segment_features

        feats = [segment_features(s, seg, n)[0] for s in segs_all]
        out[n] = np.stack(feats).astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------------
# SSL features through the feature store
# ------------------------------------------------------------------------------------------------
class LazyUpstream:
    """Builds the encoder on first use only: a fully cached corpus never loads weights."""

    def __init__(self, spec: str, device: str = "cpu"):
        self.spec = spec
        self.device = device
        self._up = None

    def __call__(self):
        if self._up is None:
            from emoboost.upstreams import build_upstream
            from emoboost.utils import resolve_device

            self._up = build_upstream(self.spec, device=resolve_device(self.device))
        return self._up

    @property
    def built(self) -> bool:
        return self._up is not None

    def fingerprint(self) -> str:
        """The encoder's fingerprint, from its config and weight files when the upstream package allows."""
        try:
            from emoboost.upstreams import fingerprint_spec  # type: ignore[attr-defined]
        except ImportError:
            fingerprint_spec = None
        if fingerprint_spec is not None:
            return fingerprint_spec(self.spec)
        return self().fingerprint()


def open_store(upstream_spec: str, cache_dir: str, spec, lazy: LazyUpstream | None = None, device: str = "cpu"):
    """-> (FeatureStore for this encoder and store spec, the lazy encoder factory on ``device``)."""
    from emoboost.features.store import FeatureStore

    lazy = lazy or LazyUpstream(upstream_spec, device)
    return FeatureStore(cache_dir, lazy.fingerprint(), spec), lazy


def store_num_layers(store, manifest: Manifest, lazy: LazyUpstream) -> int:
    """Hidden-state count: from any existing entry of the corpus, else from the encoder itself."""
    for u in list(manifest)[:20]:
        try:
            st = store.read_stats(content_hash(u.path))
        except (OSError, ValueError):
            continue
        if st is not None:
            return int(st.mean.shape[0])
    return int(lazy().num_layers)
