"""Synthetic audio for tests (a plain module: ``conftest`` names clash between test folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(path: Path, seconds: float = 1.0, sr: int = 16000, freq: float = 220.0, channels: int = 1,
               fmt: str | None = None, subtype: str | None = None, seed: int = 0) -> Path:
    """A short tone + noise file (real audio content, distinct per seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    x = np.stack([x] * channels, axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr, format=fmt, subtype=subtype)
    return path
