"""Content-addressed feature cache and the SSL feature extractor that fills it.

Layout: ``<root>/<feature_key>/<hash[:2]>/<hash>.npy``, one file per (feature, audio content).
The feature key names everything that determines the array (extractor fingerprint incl. weights
hash and code version, segmenting, parameters); the audio hash is the SHA-256 of the file bytes.
Renaming or moving audio therefore keeps its cache entries, and changing any weight or parameter
starts a fresh key instead of serving stale features.

Writes go through :func:`emoboost.utils.atomic_write` (temp file in the same folder, fsync, rename):
a reader sees either no entry or a complete one, a crashed or killed writer leaves no entry, and two
processes computing the same entry simply both rename a complete file into place.

SSL hidden states are stored as float16 (half the disk; EmoDB x whisper-base x 3 s segments is
~0.7 GB instead of ~1.4 GB). float16 keeps ~3 significant digits, far below the run-to-run noise of
the classifiers trained on them; values beyond the float16 range (+-65504) are clipped, not inf.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoboost.audio import AudioError, Segmenting, content_hash, load_audio, segment
from emoboost.utils import atomic_write

if TYPE_CHECKING:
    from emoboost.data.manifest import Manifest, Utterance
    from emoboost.upstreams.base import Upstream

log = logging.getLogger(__name__)

_HASH_RE = re.compile(r"^[0-9a-zA-Z_-]{4,128}$")
_KEY_RE = re.compile(r"^[0-9A-Za-z._+=-]{1,200}$")
FP16_MAX = float(np.finfo(np.float16).max)


def feature_key(kind: str, fingerprint: str, segmenting: Segmenting | None) -> str:
    """Folder name for one feature configuration, e.g. ``ssl__whisper-base-1a2b...__seg3-hop3-sr16000``.

    ``segmenting=None`` means whole utterances. Characters unsafe in file names are replaced, so
    the fingerprint must already be unique (it is a hash for upstreams and acoustic features).
    """
    seg = segmenting.key() if segmenting is not None else "full"
    key = "__".join([kind, fingerprint, seg])
    key = re.sub(r"[^0-9A-Za-z._+=-]", "-", key)
    if len(key) > 200:  # keep readable prefix, stay unique
        key = key[:180] + "-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return key


def params_fingerprint(name: str, params: dict) -> str:
    """``name-<hash of params + code version>``: for extractors defined by parameters, not weights."""
    from emoboost import __version__

    blob = json.dumps({"params": params, "code": __version__}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def to_float16(array: np.ndarray) -> np.ndarray:
    """float16 copy, clipped to the float16 range (never inf)."""
    a = np.asarray(array)
    if a.dtype == np.float16:
        return a
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16)


class FeatureCache:
    """One ``.npy`` per (feature key, audio content hash) under ``root``; safe for concurrent writers."""

    suffix = ".npy"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    def path(self, key: str, audio_hash: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"invalid feature key {key!r} (use feature_key() to build one)")
        if not _HASH_RE.match(audio_hash):
            raise ValueError(f"invalid audio hash {audio_hash!r}")
        return self.root / key / audio_hash[:2] / f"{audio_hash}{self.suffix}"

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self.path(*item).is_file()

    def get(self, key: str, audio_hash: str) -> np.ndarray | None:
        """The stored array, or None when absent (or unreadable, which only outside damage can cause)."""
        p = self.path(key, audio_hash)
        try:
            a = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as e:
            log.warning("cache entry %s is unreadable (%s); recomputing", p, e)
            return None
        # Validate on read: a damaged entry must never become a silent wrong number downstream.
        if a.dtype.kind not in "fiub" or a.size == 0:
            log.warning("cache entry %s has dtype %s / %d values; recomputing", p, a.dtype, a.size)
            return None
        if a.dtype.kind == "f" and not np.isfinite(a).all() and "egemaps" not in key and "compare" not in key:
            log.warning("cache entry %s holds non-finite values; recomputing", p)
            return None
        return a

    def put(self, key: str, audio_hash: str, array: np.ndarray) -> Path:
        """Store atomically: write a temp file in the entry's folder, fsync, rename over the entry."""
        array = np.ascontiguousarray(array)
        if array.dtype == object:
            raise TypeError(f"cannot cache an object array under {key}/{audio_hash}")
        return atomic_write(self.path(key, audio_hash), lambda f: np.save(f, array, allow_pickle=False))

    def get_or_compute(self, key: str, audio_hash: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
        """Cached array, or ``fn()`` stored then returned (as read back, so dtype is what is stored)."""
        hit = self.get(key, audio_hash)
        if hit is not None:
            return hit
        self.put(key, audio_hash, np.asarray(fn()))
        out = self.get(key, audio_hash)
        if out is None:  # pragma: no cover - only if someone deletes the entry in between
            raise OSError(f"cache entry {self.path(key, audio_hash)} vanished right after writing")
        return out

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def entries(self, key: str) -> list[str]:
        """Audio hashes stored under ``key``."""
        base = self.root / key
        return sorted(p.stem for p in base.glob(f"*/*{self.suffix}")) if base.is_dir() else []

    def write_info(self, key: str, info: dict) -> Path:
        """Human-readable description of a feature key (``<root>/<key>/info.json``), written atomically."""
        from emoboost.utils import atomic_write_text

        return atomic_write_text(self.root / key / "info.json", json.dumps(info, indent=2, sort_keys=True, default=str))


def iter_utterances(
    manifest: Manifest,
    cache: FeatureCache,
    key: str,
    skipped: list[tuple[str, str]],
    progress: bool = True,
    desc: str = "features",
    min_duration: float = 0.0,
) -> Iterator[tuple[Utterance, str, np.ndarray | None]]:
    """Yield (utterance, audio hash, cached array or None) with a progress bar.

    Shared by the SSL and acoustic extractors, which fill the misses. Files that cannot even be
    read for hashing, or whose manifest duration is below ``min_duration`` (so cached entries obey
    the same limit as fresh ones), are appended to ``skipped`` as (path, problem) and not yielded.
    """
    from tqdm.auto import tqdm

    for utt in tqdm(list(manifest), desc=desc, disable=not progress, unit="utt"):
        if utt.duration < min_duration:
            skipped.append((utt.path, f"too short: {utt.duration:.3f} s < minimum {min_duration:.3f} s"))
            continue
        try:
            h = content_hash(utt.path)
        except OSError as e:
            skipped.append((utt.path, f"cannot read file ({e.strerror or e})"))
            continue
        yield utt, h, cache.get(key, h)


def extract_ssl(
    manifest: Manifest,
    upstream: Upstream,
    cache: FeatureCache,
    segmenting: Segmenting,
    batch_size: int = 8,
    progress: bool = True,
    min_duration: float = 0.0,
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """All hidden states of every utterance, per segment: ``{utt_id: [S, L, T', D] float16}``.

    Utterances already cached (same audio bytes, upstream fingerprint and segmenting) are read, not
    recomputed, so an interrupted run resumes where it stopped. Unusable audio (:class:`AudioError`)
    is recorded as ``(path, problem)`` in the returned list and skipped (as are files shorter than
    ``min_duration`` seconds). Segments of several utterances are batched together; all have the
    segmenting's length, so no padding is involved.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if segmenting.sample_rate != upstream.sample_rate:
        raise ValueError(f"segmenting is at {segmenting.sample_rate} Hz but {upstream.name} expects "
                         f"{upstream.sample_rate} Hz")
    key = feature_key("ssl", upstream.fingerprint(), segmenting)
    cache.write_info(key, {"kind": "ssl", "upstream": upstream.config_dict(), "segmenting": segmenting.key(),
                           "layout": "[S, L, T', D] float16"})
    upstream.eval()
    out: dict[str, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    pending: list[tuple[str, str, np.ndarray]] = []  # (utt id, audio hash, segments [S, N])

    def flush() -> None:
        if not pending:
            return
        segs = np.concatenate([p[2] for p in pending])
        results = []
        with torch.inference_mode():
            for i in range(0, len(segs), batch_size):
                x = torch.from_numpy(segs[i : i + batch_size])
                layers, lens = upstream(x, torch.full((len(x),), x.shape[1], dtype=torch.long))
                t = int(lens.max())
                results.append(to_float16(layers[:, :, :t].permute(1, 0, 2, 3).float().cpu().numpy()))
        feats = np.concatenate(results)
        start = 0
        for utt_id, h, s in pending:
            arr = feats[start : start + len(s)]
            start += len(s)
            cache.put(key, h, arr)
            out[utt_id] = arr
        pending.clear()

    desc = f"ssl {upstream.name}"
    for utt, h, hit in iter_utterances(manifest, cache, key, skipped, progress, desc, min_duration):
        if hit is not None:
            out[utt.id] = hit
            continue
        try:
            wav = load_audio(utt.path, min_duration=min_duration)
        except AudioError as e:
            skipped.append((e.path, e.problem))
            continue
        pending.append((utt.id, h, segment(wav, segmenting)))
        if sum(len(p[2]) for p in pending) >= batch_size:
            flush()
    flush()
    out = {u.id: out[u.id] for u in manifest if u.id in out}  # manifest order
    warn_skipped(skipped)
    return out, skipped


def warn_skipped(skipped: list[tuple[str, str]], shown: int = 5) -> None:
    """One warning line naming the first few unusable files; the full list goes to the run's
    ``skipped.json`` or the extraction summary (thousands of bad files must not make one huge line)."""
    if not skipped:
        return
    more = f"; and {len(skipped) - shown} more (listed in full in skipped.json or the summary)" if len(skipped) > shown else ""
    log.warning("skipped %d unusable file(s): %s%s", len(skipped),
                "; ".join(f"{p}: {m}" for p, m in skipped[:shown]), more)
