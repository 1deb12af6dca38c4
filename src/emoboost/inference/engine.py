"""The inference engine's rules, written once for every backend and entry point.

What a prediction is (:class:`Prediction`), when a clip is too short or digitally silent, when a file
switches to voice activity detection, and how a stream of audio is cut into fixed blocks and metered
on the way through. The torch backend (:mod:`emoboost.inference.predict`) and the onnxruntime backend
(:mod:`emoboost.inference.onnx_predict`) both apply these; the CLI, the Python API and the server
call the backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoboost.audio import AudioError, peak_dbfs

MIN_DURATION = 0.25
"""Shortest clip (seconds) that predict labels; shorter ones are refused."""
VAD_AUTO_SECONDS = 30.0
"""Files longer than this get VAD unless told otherwise (``vad=None``; ``--vad`` / ``--no-vad``)."""
WINDOW_BATCH = 16
"""VAD windows classified per model call."""
STREAM_BLOCK_SECONDS = 30.0
"""Audio read per block when a file is streamed: one Whisper encoder window."""


@dataclass
class Prediction:
    """One file's answer. ``label`` is None when nothing was classified (silence, or no speech found)."""

    path: str
    label: str | None
    probabilities: dict[str, float]
    timeline: list[dict] = field(default_factory=list)
    silent: bool = False  # peak below -60 dBFS: not classified
    duration: float | None = None  # seconds of audio read
    speech_seconds: float | None = None  # with VAD: seconds classified (None: the whole file was)

    def to_dict(self) -> dict:
        d: dict = {"path": self.path, "label": self.label, "probabilities": self.probabilities,
                   "silent": self.silent}
        if self.duration is not None:
            d["duration"] = round(self.duration, 3)
        if self.speech_seconds is not None:
            d["vad"] = True
            d["speech_seconds"] = round(self.speech_seconds, 3)
        if self.timeline:
            d["timeline"] = self.timeline
        return d


def silent_prediction(path: str, duration: float) -> Prediction:
    """The result for digital silence: flagged, not labelled."""
    return Prediction(str(path), None, {}, [], silent=True, duration=duration)


def too_short(path: str | Path, seconds: float, minimum: float = MIN_DURATION) -> AudioError:
    return AudioError(path, f"too short to label: {seconds:.3f} s < minimum {minimum:.3f} s")


def _rounded(classes: Sequence[str], p: np.ndarray) -> dict[str, float]:
    return {c: round(float(x), 5) for c, x in zip(classes, p)}


class _Meter:
    """Passes blocks through, counting samples and their peak (file-level silence in one pass)."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self.blocks = blocks
        self.samples = 0
        self.peak = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in self.blocks:
            self.samples += len(b)
            if len(b):
                self.peak = max(self.peak, float(np.abs(b).max()))
            yield b

    def peak_dbfs(self) -> float:
        return peak_dbfs(np.float64(self.peak))


def _exact_blocks(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of blocks of any sizes into fresh arrays of exactly ``size`` samples (last: the rest)."""
    buf = np.empty(size, dtype=np.float32)
    n = 0
    for b in blocks:
        i = 0
        while i < len(b):
            take = min(size - n, len(b) - i)
            buf[n : n + take] = b[i : i + take]
            n += take
            i += take
            if n == size:
                yield buf.copy()
                n = 0
    if n:
        yield buf[:n].copy()
