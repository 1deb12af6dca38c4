"""Small shared utilities: atomic writes, seeding, environment-located paths."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so reruns give identical numbers on CPU."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def shared_root() -> Path:
    """The read-only shared folder (corpora + offline weights): $EMOBOOST_SHARED or ../shared."""
    env = os.environ.get("EMOBOOST_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared"


def parse_value(v: str):
    """YAML scalar parsing for CLI overrides: 1e-3 -> float, true -> bool, [1,2] -> list, abc -> str."""
    import yaml

    try:
        out = yaml.safe_load(v)
    except yaml.YAMLError:
        return v
    if isinstance(out, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(out)
        except ValueError:
            return out
    return out
