"""Utterance-level functionals: eGeMAPS and ComParE (openSMILE) and MFCC statistics (librosa).

These are the hand-crafted baselines of the SER literature (Eyben et al. 2016; Schuller et al. 2016).
Each utterance becomes ONE fixed-size vector (not segmented): the SVM baseline classifies it
directly. Sizes: ``egemaps`` 88 (eGeMAPSv02 Functionals), ``compare`` 6373 (ComParE_2016
Functionals), ``mfcc_stats`` 320 (mean/std/min/max of 40 MFCCs and their 40 deltas).

NaN-safety: openSMILE fills every functional with NaN when the signal is shorter than its
analysis window (about 60 ms); such signals are zero-padded (centred) to :data:`MIN_SAMPLES` first,
and any non-finite value left in the output (e.g. a statistic of an empty voiced-frame set) is set
to 0, so a cached vector is always finite. Empty or non-finite input raises ``ValueError``.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

KINDS = ("egemaps", "compare", "mfcc_stats")

#: Vector length per kind (documented contract; checked in the tests).
SIZES = {"egemaps": 88, "compare": 6373, "mfcc_stats": 320}

#: Signals shorter than this (100 ms at 16 kHz) are zero-padded so openSMILE returns numbers, not NaN.
MIN_SAMPLES = 1600

# MFCC statistics: HTK-style MFCC, 25 ms window, 10 ms hop at 16 kHz (same framing as the segment MFCCs).
N_MFCC = 40
MFCC_KW: dict[str, Any] = {"n_mfcc": N_MFCC, "n_fft": 512, "win_length": 400, "hop_length": 160,
                           "n_mels": 64, "htk": True, "fmin": 0.0}
STATS = ("mean", "std", "min", "max")

_SMILE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
_smiles: dict[str, Any] = {}
_lock = threading.Lock()


def _smile(kind: str) -> Any:
    """One ``opensmile.Smile`` per kind and process: building one parses the config (~0.1 s)."""
    with _lock:
        if kind not in _smiles:
            import opensmile

            _smiles[kind] = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, _SMILE_SETS[kind]),
                feature_level=opensmile.FeatureLevel.Functionals,
            )
        return _smiles[kind]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown functionals kind {kind!r}; choose from {KINDS}")


def feature_names(kind: str) -> list[str]:
    """Names of the vector's entries, in order (openSMILE's names; ``mfcc{i}_{stat}`` for MFCC stats)."""
    _check_kind(kind)
    if kind == "mfcc_stats":
        coeffs = [f"mfcc{i}" for i in range(N_MFCC)] + [f"delta_mfcc{i}" for i in range(N_MFCC)]
        return [f"{c}_{s}" for s in STATS for c in coeffs]
    return list(_smile(kind).feature_names)


def _prepare(wav: np.ndarray) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"functionals expect a mono 1-D signal, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("functionals: the signal is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("functionals: the signal contains NaN or infinite samples")
    if x.size < MIN_SAMPLES:
        pad = MIN_SAMPLES - x.size
        x = np.pad(x, (pad // 2, pad - pad // 2))
    return np.ascontiguousarray(x)


def _mfcc_stats(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=x, sr=sr, **MFCC_KW)  # [40, frames]
    # mode="nearest" works for any number of frames (the default 'interp' needs >= 9 frames).
    d = librosa.feature.delta(m, width=9, mode="nearest")
    c = np.concatenate([m, d], axis=0)
    return np.concatenate([c.mean(1), c.std(1), c.min(1), c.max(1)])


def functionals(wav: np.ndarray, kind: str, sr: int = 16000) -> np.ndarray:
    """One utterance -> a finite float32 vector of ``SIZES[kind]`` functionals."""
    _check_kind(kind)
    x = _prepare(wav)
    if kind == "mfcc_stats":
        v = _mfcc_stats(x, sr)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Segment too short": handled below
            df = _smile(kind).process_signal(x, sr)
        v = df.to_numpy(dtype=np.float64).reshape(-1)
    if v.shape[0] != SIZES[kind]:
        raise RuntimeError(f"{kind} functionals gave {v.shape[0]} values, expected {SIZES[kind]}")
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
