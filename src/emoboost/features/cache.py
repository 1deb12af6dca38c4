"""The content-addressed acoustic feature cache, and the key scheme the SSL feature store shares.

Layout: ``<root>/<feature_key>/<hash[:2]>/<hash>.npy``, one file per (feature, audio content).
The feature key names everything that determines the array (extractor fingerprint incl. weights
hash and code version, segmenting, parameters); the audio hash is the SHA-256 of the file bytes.
Renaming or moving audio therefore keeps its cache entries, and changing any weight or parameter
starts a fresh key instead of serving stale features.

Writes go through :func:`emoboost.utils.atomic_write` (temp file in the same folder, fsync, rename):
a reader sees either no entry or a complete one, a crashed or killed writer leaves no entry, and two
processes computing the same entry simply both rename a complete file into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.audio import AudioError, Segmenting, content_hash, load_audio
from emoboost.audio_checks import LevelChecks
from emoboost.utils import atomic_write, atomic_write_text

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


def warn_skipped(skipped: list[tuple[str, str]], shown: int = 5) -> None:
    """One warning line naming the first few unusable files; the full list goes to the run's
    ``skipped.json`` or the extraction summary (thousands of bad files must not make one huge line)."""
    if not skipped:
        return
    more = f"; and {len(skipped) - shown} more (listed in full in skipped.json or the summary)" if len(skipped) > shown else ""
    log.warning("skipped %d unusable file(s): %s%s", len(skipped),
                "; ".join(f"{p}: {m}" for p, m in skipped[:shown]), more)


AUDIO_CHECKS_KEY = "audiochecks-v1"
"""Cache key of each audio file's :meth:`emoboost.audio_checks.LevelChecks.summary` (thresholds apply on reading)."""


def remember_checks(cache: FeatureCache, audio_hash: str, wav: np.ndarray) -> np.ndarray:
    """Keep a decoded clip's level-check summary (extraction has the audio in hand) and return it; a cache
    that cannot be written only costs decoding again next time."""
    checks = LevelChecks()
    checks.add(wav)
    summary = checks.summary()
    try:
        cache.put(AUDIO_CHECKS_KEY, audio_hash, summary)
    except OSError as e:
        log.debug("cannot cache the audio checks of %s (%s)", audio_hash, e)
    return summary


def corpus_warnings(items: Iterable[tuple[str, str | None]], cache_root: str | Path) -> list[tuple[str, str]]:
    """(path, warning) for every (path, audio hash or None) whose audio looks wrong (DC offset, clipping, a
    level above full scale, no speech-like content; :class:`emoboost.audio_checks.LevelChecks`), in order.

    A file is decoded only when its summary is not cached yet (extraction caches it for the clips it
    encodes); unreadable files are left to the skipped list, which already names them."""
    cache = FeatureCache(cache_root)
    out: list[tuple[str, str]] = []
    for path, h in items:
        try:
            h = h or content_hash(path)
            summary = cache.get(AUDIO_CHECKS_KEY, h)
            if summary is None or summary.shape != (5,):
                summary = remember_checks(cache, h, load_audio(path))
        except (AudioError, OSError):
            continue
        out += [(path, w) for w in LevelChecks.from_summary(summary).warnings(path)]
    return out


def warn_warnings(warnings: list[tuple[str, str]], where: str, shown: int = 3) -> None:
    """One log line for a corpus's audio warnings (they are listed in full in ``where``)."""
    if warnings:
        more = f"; and {len(warnings) - shown} more" if len(warnings) > shown else ""
        log.warning("%d audio warning(s), used as they are (listed in %s): %s%s", len(warnings), where,
                    "; ".join(w for _, w in warnings[:shown]), more)


def write_warnings(out: Path, manifest: Any, hash_of: dict[str, str], cache_dir: str) -> list[tuple[str, str]]:
    """``warnings.json`` (like ``skipped.json``): the used files whose audio looks wrong (DC offset, clipping,
    noise; :class:`emoboost.audio_checks.LevelChecks`). They are trained and evaluated on as they are: a warning
    never changes a label or a number, it tells the user which files to listen to."""
    warnings = corpus_warnings([(u.path, hash_of.get(u.id)) for u in manifest], cache_dir)
    atomic_write_text(out / "warnings.json", json.dumps([{"path": p, "warning": w} for p, w in warnings], indent=2))
    warn_warnings(warnings, str(out / "warnings.json"))
    return warnings
