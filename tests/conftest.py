"""Shared fixtures: locating ../shared, tiny synthetic audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("EMOBOOST_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder; tests needing it are skipped when it is absent."""
    p = shared_path()
    if not (p / "data").is_dir():
        pytest.skip(f"real corpora not found at {p} (set EMOBOOST_SHARED to the shared folder)")
    return p


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


@pytest.fixture
def tone(tmp_path):
    def make(name: str = "a.wav", **kw) -> Path:
        return write_tone(tmp_path / name, **kw)
    return make
