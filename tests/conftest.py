"""Shared fixtures: locating ../shared, tiny synthetic audio."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from builders import write_tone

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


@pytest.fixture
def tone(tmp_path):
    def make(name: str = "a.wav", **kw) -> Path:
        return write_tone(tmp_path / name, **kw)
    return make
