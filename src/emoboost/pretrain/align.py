"""Linear alignment of a frame-level sequence (emotion intensity) to another frame grid.

The intensity model works on its own grid (window centres every 20 ms); Mockingjay sees 30 ms
stacked frames, NPC 10 ms frames. Values are linearly interpolated at the target frames' centre
times and held constant beyond the first/last source point.
"""

from __future__ import annotations

import numpy as np


def frame_centres(n_frames: int, frame_rate: float, offset: float = 0.0) -> np.ndarray:
    """Centre times (s) of ``n_frames`` frames: ``offset + i / frame_rate``."""
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    return offset + np.arange(int(n_frames), dtype=np.float64) / frame_rate


def align_to_times(src_times: np.ndarray, values: np.ndarray, tgt_times: np.ndarray) -> np.ndarray:
    """Interpolate ``values`` given at ``src_times`` onto ``tgt_times`` (float32)."""
    src_times = np.asarray(src_times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if src_times.ndim != 1 or values.shape != src_times.shape:
        raise ValueError(f"times {src_times.shape} and values {values.shape} must be equal-length 1-D arrays")
    if len(src_times) == 0:
        raise ValueError("cannot align an empty sequence")
    if np.any(np.diff(src_times) <= 0):
        raise ValueError("source times must be strictly increasing")
    return np.interp(np.asarray(tgt_times, dtype=np.float64), src_times, values).astype(np.float32)


def align_to_rate(src_times: np.ndarray, values: np.ndarray, n_frames: int, frame_rate: float,
                  offset: float = 0.0) -> np.ndarray:
    """Values at the centres of ``n_frames`` target frames of rate ``frame_rate`` (+ ``offset`` s)."""
    return align_to_times(src_times, values, frame_centres(n_frames, frame_rate, offset))


def align_to_length(values: np.ndarray, n_frames: int) -> np.ndarray:
    """Stretch/squeeze a sequence to ``n_frames`` when only counts are known.

    Both sequences are taken to cover the same span with equally spaced frame centres, i.e. target
    frame ``j`` sits at source position ``(j + 0.5) * len / n - 0.5``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"expected a non-empty 1-D sequence, got shape {values.shape}")
    if n_frames <= 0:
        return np.zeros(0, dtype=np.float32)
    pos = (np.arange(n_frames) + 0.5) * len(values) / n_frames - 0.5
    return np.interp(pos, np.arange(len(values)), values).astype(np.float32)
