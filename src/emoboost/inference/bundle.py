"""What is on disk for a trained model: reading and checking ``bundle.json`` (a leaf module)."""

from __future__ import annotations

import json
from pathlib import Path


def check_bundle(model: Path) -> Path | None:
    """Parse ``bundle.json`` up front: a JSON error alone would not say which file is broken."""
    from emoboost.utils import read_json

    path = model / "bundle.json"
    if not path.is_file():
        return None  # Predictor.load explains a missing run directory or bundle
    bundle = read_json(path, "run bundle")
    if not isinstance(bundle, dict):
        raise ValueError(f"{path}: broken run bundle: expected a JSON object, got {type(bundle).__name__}")
    classes = bundle.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(classes) < 2:
        raise ValueError(f"{path}: broken run bundle: 'classes' must list at least 2 class names")
    return path


PREPROCESSING_FILE = "preprocessing.json"


EXPORT_FORMAT = "emoboost-onnx"


def is_onnx_export(path: str | Path) -> bool:
    """True when ``path`` is a directory written by :func:`emoboost.inference.export.export_onnx`."""
    p = Path(path) / PREPROCESSING_FILE
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def _read_preprocessing(path: Path) -> dict:
    file = path / PREPROCESSING_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such ONNX export directory")
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not an ONNX export (no {PREPROCESSING_FILE})")
    try:
        pre = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: unreadable ({e})") from e
    if pre.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{file}: not an emoboost ONNX export (format {pre.get('format')!r})")
    missing = [k for k in ("sample_rate", "n_fft", "hop", "n_mels", "window_samples", "classes", "mel_filters",
                           "encoder", "head") if k not in pre]
    if missing:
        raise ValueError(f"{file}: missing keys {', '.join(missing)}")
    return pre
