"""Warnings about how a recording sounds (DC offset, clipping, a level above full scale, a noise-like
spectrum): one line each, naming the file. They never change a label or a number; they tell the user
which files to listen to. Computed block by block, so a long file costs no more memory than a short one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emoboost.audio import is_silent

DC_OFFSET_RATIO = 0.1
"""A clip whose mean is at least this share of its peak has a heavy DC offset (recorded speech stays below
0.01: EmoDB's largest is 0.006); the encoders see a shifted waveform they were never trained on."""
CLIP_LEVEL = 0.98
CLIP_SHARE = 0.002
"""Clipping: at least this share of samples at or above :data:`CLIP_LEVEL` of full scale (EmoDB's most is
0.0007, a clip driven 4x past full scale 0.02; survives resampling, which blurs runs of equal samples)."""
FLATNESS_NOISE = 0.3
FLATNESS_FFT = 512
"""No speech-like content: the median spectral flatness (geometric over arithmetic mean of the power
spectrum) of the loudest half of 512-sample frames is at least this. Speech frames are far below it
(EmoDB's highest clip median is 0.03, speech in strong white noise 0.24); white noise is about 0.56."""


class LevelChecks:
    """Level and content checks of one clip, fed block by block (a streamed file or a whole array), whose
    findings are warnings: the clip is still labelled and trained on as before, and the user is told.

    Memory: a few numbers, plus two per 256 samples for the flatness (about 4 MB for an hour). The
    flatness is computed here with numpy (two lines): librosa's costs a numba compilation of seconds,
    more than a short clip's whole prediction."""

    def __init__(self) -> None:
        self.samples = 0
        self.total = 0.0
        self.peak = 0.0
        self.clipped = 0
        self._flat: list[np.ndarray] = []
        self._rms: list[np.ndarray] = []
        self._flatness: float | None = None  # a summary's, when read back (from_summary)

    def summary(self) -> np.ndarray:
        """What the warnings are computed from, as 5 float64 (samples, sum, peak, clipped, flatness or -1):
        a corpus run keeps it per audio file, so a warm run warns without decoding the audio again."""
        flat = self.flatness()
        return np.array([self.samples, self.total, self.peak, self.clipped, -1.0 if flat is None else flat])

    @classmethod
    def from_summary(cls, summary: np.ndarray) -> LevelChecks:
        c = cls()
        samples, c.total, c.peak, clipped, flat = (float(v) for v in np.asarray(summary, dtype=np.float64))
        c.samples, c.clipped = int(samples), int(clipped)
        c._flatness = None if flat < 0 else flat
        return c

    def add(self, block: np.ndarray) -> None:
        """Take the next consecutive samples; temporaries stay about 1 MB whatever the block's length."""
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if not len(x):
            return
        self.samples += len(x)
        for i in range(0, len(x), 1 << 16):
            c = x[i : i + (1 << 16)]
            self.total += float(np.sum(c, dtype=np.float64))
            self.peak = max(self.peak, float(c.max()), -float(c.min()))
            self.clipped += int(np.count_nonzero(c >= CLIP_LEVEL)) + int(np.count_nonzero(c <= -CLIP_LEVEL))
        n = FLATNESS_FFT
        if len(x) >= n:
            view = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]  # a view: no copy
            window = np.hanning(n)
            for i in range(0, len(view), 128):
                frames = view[i : i + 128].astype(np.float64)
                power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 + 1e-20
                self._flat.append(np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1))
                self._rms.append(np.sqrt(np.mean(frames * frames, axis=1)))

    def flatness(self) -> float | None:
        """Median spectral flatness of the loudest half of the frames (None for clips under one frame)."""
        if not self._flat:
            return self._flatness
        flat, rms = np.concatenate(self._flat), np.concatenate(self._rms)
        return float(np.median(flat[rms >= np.median(rms)]))

    def warnings(self, name: str | Path = "<array>") -> list[str]:
        """One line per finding, each naming ``name``; none for digital silence (reported on its own)."""
        if not self.samples or self.peak <= 0.0 or is_silent(np.float32(self.peak)):
            return []
        out = []
        mean = self.total / self.samples
        if abs(mean) >= DC_OFFSET_RATIO * self.peak:
            out.append(f"{name}: heavy DC offset (mean {mean:+.3g}, {abs(mean) / self.peak:.0%} of the peak "
                       f"{self.peak:.3g}; remove it with a high-pass filter)")
        if self.peak > 1.0 + 1e-6:
            out.append(f"{name}: level above full scale (peak {self.peak:.3g} × full scale; float samples "
                       f"written unscaled?)")
        elif self.clipped >= CLIP_SHARE * self.samples:
            out.append(f"{name}: clipped ({self.clipped / self.samples:.1%} of samples at full scale)")
        flat = self.flatness()
        if flat is not None and flat >= FLATNESS_NOISE:
            out.append(f"{name}: no speech-like content (spectral flatness {flat:.2f} over its loudest frames, "
                       f"as noise has; speech stays below {FLATNESS_NOISE:g})")
        return out


def audio_warnings(wav: np.ndarray, name: str | Path = "<array>") -> list[str]:
    """The :class:`LevelChecks` warnings of one clip held in memory (16 kHz mono), one line each."""
    checks = LevelChecks()
    checks.add(wav)
    return checks.warnings(name)
