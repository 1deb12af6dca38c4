"""What is on disk for a trained model: one schema for every form, read and checked before any weights load.

Forms a user can pass to ``predict``, ``emoboost.load``, ``serve`` and ``export``:

* ``ensemble`` — a run directory (``emoboost run``): ``bundle.json`` lists its fold models under
  ``models/``; their posteriors are averaged;
* ``final`` — a final model (``emoboost train``): ``bundle.json`` with ``"kind": "final"`` beside
  ``method.json`` and its weights; may hold its ONNX form in ``onnx/``;
* ``model`` — one saved model directory: ``bundle.json`` beside ``method.json``, or a fold model
  inside a run directory (``RUN/models/fold03_seed0``: the run's ``bundle.json`` describes it);
* ``onnx`` — an ONNX export (``emoboost export``): ``preprocessing.json``, ``encoder.onnx``, ``head.onnx``.

A leaf module: JSON and paths only, so reading a bundle imports neither numpy nor torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE_FILE = "bundle.json"
METHOD_FILE = "method.json"
PREPROCESSING_FILE = "preprocessing.json"
EXPORT_FORMAT = "emoboost-onnx"
ONNX_SUBDIR = "onnx"
"""Where ``emoboost train`` writes a final model's ONNX form, beside the torch one."""
KINDS = ("ensemble", "final", "model", "onnx")
BACKENDS = ("auto", "torch", "onnx")
ONNX_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "window_samples", "classes", "mel_filters", "encoder", "head")


@dataclass
class Bundle:
    """One trained model on disk, whatever its form (see the module docstring)."""

    path: Path
    kind: str
    classes: list[str]
    method: str | None = None
    features: list[str] = field(default_factory=list)
    upstream: dict = field(default_factory=dict)  # spec, fingerprint, num_layers, hidden_size, frame_rate, layers
    segment_length: float = 3.0
    segment_hop: float | None = None
    segment_encoding: str = "utterance"
    encoder_window: float = 30.0
    models: list[Path] = field(default_factory=list)  # method directories the torch backend loads
    onnx_dir: Path | None = None  # an ONNX form of this model (the bundle itself for kind "onnx")
    info: dict = field(default_factory=dict)  # the JSON as read (cv, selection, training; preprocessing)

    # -- what it is --------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str | None:
        return self.upstream.get("fingerprint") or None

    def exports_to(self) -> list[str]:
        """Formats this model can be exported to (``emoboost export``)."""
        if self.kind == "onnx":
            return []
        if self.kind == "ensemble":
            return []  # an ensemble of fold models: train one final model and export that
        pooled = "head" in self.info or self.method in ("linear", "logreg")
        return ["onnx"] if "ssl" in self.features and (pooled or self.method == "msemoboost") else []

    def describe(self, backend: str | None = None, models: int | None = None) -> dict:
        """What answers: path, kind, backend, models, classes, encoder fingerprint (and a final model's CV)."""
        d: dict[str, Any] = {"path": str(self.path), "kind": self.kind, "models": models or max(1, len(self.models)),
                             "classes": list(self.classes)}
        if backend:
            d["backend"] = backend
        if self.fingerprint:
            d["upstream"] = self.fingerprint
        if self.kind == "final":
            d["summary"] = final_summary(self.info)
        return d

    def choose_backend(self, backend: str = "auto", device: str = "cpu", upstream: str | None = None) -> str:
        """``torch`` or ``onnx`` for ``backend`` (``auto``: the ONNX form when there is one, onnxruntime is
        installed and neither a GPU nor another encoder copy was asked for)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        on_cpu = str(device).lower() in ("cpu", "auto")
        if self.kind == "onnx":
            if backend == "torch":
                raise ValueError(f"{self.path}: an ONNX export runs on onnxruntime only; --backend torch needs the "
                                 "final model it was exported from")
            if upstream:
                raise ValueError(f"{self.path}: an ONNX export holds its own encoder; --upstream does not apply")
            if not on_cpu:
                raise ValueError(f"{self.path}: an ONNX export runs on onnxruntime's CPU provider; --device {device} "
                                 "does not apply (predict the run directory or final model on the GPU instead)")
            return "onnx"
        if backend == "onnx":
            if self.onnx_dir is None:
                raise ValueError(f"{self.path}: no ONNX form beside this model (write one with emoboost export "
                                 f"{self.path} --out DIR, then predict DIR)")
            if upstream or not on_cpu:
                raise ValueError(f"{self.path}: --backend onnx runs on the CPU with the exported encoder; drop "
                                 "--upstream / --device")
            return "onnx"
        if backend == "auto" and self.onnx_dir is not None and on_cpu and not upstream and _has_onnxruntime():
            return "onnx"
        return "torch"


def not_adaptable(path: Any, method: Any) -> str:
    """The one line for a speaker profile given to a model that cannot use one."""
    return (f"{path}: this {method or 'model'} cannot adapt to a speaker: speaker profiles need a pooled linear/"
            f"logreg model trained with -p adapt=loo, enrol:K or online (emoboost train ... -p adapt=online)")


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def final_summary(info: dict) -> str:
    """One line on a final model's provenance (training speakers, CV numbers)."""
    tr = info.get("training") or {}
    return (f"final {info.get('method', '?')} model trained on all {tr.get('speakers', '?')} speakers "
            f"({tr.get('utterances', '?')} utterances); cross-validation {describe_cv(info.get('cv') or {})}")


def describe_cv(cv: dict) -> str:
    """One line: 'UA 93.0 ± 4.0 %, WA ... (10-fold leave-one-speaker-out, ...)'."""
    def pm(m: str) -> str:
        v = cv.get(m) or {}
        return f"{m} {100 * v['mean']:.1f} ± {100 * v['std']:.1f} %" if "mean" in v else f"{m} ?"
    return f"{pm('UA')}, {pm('WA')} ({cv.get('protocol', 'protocol unknown')})"


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def is_onnx_export(path: str | Path) -> bool:
    """True when ``path`` is a directory written by :func:`emoboost.inference.export.export_onnx`."""
    p = Path(path) / PREPROCESSING_FILE
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _read_json(path: Path, what: str) -> dict:
    from emoboost.utils import read_json

    d = read_json(path, what)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: broken {what}: expected a JSON object, got {type(d).__name__}")
    return d


def _classes(d: dict, where: Path, what: str) -> list[str]:
    classes = d.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes) \
            or len(set(classes)) != len(classes):
        raise ValueError(f"{where}: broken {what}: 'classes' must list at least 2 distinct class names")
    return list(classes)


def read_preprocessing(path: Path) -> dict:
    """An ONNX export's ``preprocessing.json``, checked: every key the runtime needs is there."""
    file = path / PREPROCESSING_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such ONNX export directory")
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not an ONNX export (no {PREPROCESSING_FILE})")
    pre = _read_json(file, "ONNX export description")
    if pre.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{file}: not an emoboost ONNX export (format {pre.get('format')!r})")
    missing = [k for k in ONNX_KEYS if k not in pre]
    if missing:
        raise ValueError(f"{file}: missing keys {', '.join(missing)}")
    _classes(pre, file, "ONNX export description")
    return pre


def read_bundle(path: str | Path) -> Bundle:
    """The model at ``path`` in any form, its description checked; no weights are read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory or model")
    if is_onnx_export(path):
        pre = read_preprocessing(path)
        seg = pre.get("segments") or {}
        return Bundle(path, "onnx", list(pre["classes"]), method=(pre.get("head") or {}).get("method"),
                      features=["ssl"], upstream=dict(pre.get("upstream") or {}),
                      segment_length=float(seg.get("length", pre.get("segment_length", 3.0))),
                      segment_hop=seg.get("hop", pre.get("segment_hop")), onnx_dir=path, info=pre)
    bundle_file = path / BUNDLE_FILE
    run_dir = None
    if not bundle_file.is_file():
        # a fold model inside a run directory: RUN/models/<fold>/method.json, RUN/bundle.json
        if (path / METHOD_FILE).is_file() and (path.parent.parent / BUNDLE_FILE).is_file():
            run_dir = path.parent.parent
            bundle_file = run_dir / BUNDLE_FILE
        elif (path / PREPROCESSING_FILE).is_file():
            read_preprocessing(path)  # says what is wrong with it
        else:
            raise FileNotFoundError(f"{path}: not a run directory or model bundle (no {BUNDLE_FILE})")
    d = _read_json(bundle_file, "run bundle")
    classes = _classes(d, bundle_file, "run bundle")
    features = d.get("features")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise ValueError(f"{bundle_file}: broken run bundle: 'features' must list the features the model reads")
    up = d.get("upstream") or {}
    if not isinstance(up, dict):
        raise ValueError(f"{bundle_file}: broken run bundle: 'upstream' must be an object")
    if "ssl" in features and not up.get("spec"):
        raise ValueError(f"{bundle_file}: broken run bundle: no upstream spec (the encoder to load)")
    final = d.get("kind") == "final"
    if run_dir is not None:
        kind, models = "model", [path]
    elif final or (path / METHOD_FILE).is_file():
        if not (path / METHOD_FILE).is_file():
            raise FileNotFoundError(f"{path}: final-model bundle without {METHOD_FILE} (the bundle is incomplete)")
        kind, models = ("final" if final else "model"), [path]
    elif "head" in d and not d.get("models"):  # a pooled linear head written into bundle.json, no saved model
        kind, models = "model", []
    else:
        names = d.get("models")
        if not isinstance(names, list) or not all(isinstance(m, str) for m in names):
            raise ValueError(f"{bundle_file}: broken run bundle: 'models' must list the saved model folders")
        if not names:
            raise FileNotFoundError(f"{path}: the run saved no models (rerun without --no-save-models)")
        kind, models = ("ensemble" if len(names) > 1 else "model"), [path / m for m in names]
    try:
        seg_len, hop = float(d.get("segment_length", 3.0)), d.get("segment_hop")
        hop = None if hop is None else float(hop)
        window = float(d.get("encoder_window") or 30.0)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{bundle_file}: broken run bundle: {e}") from e
    onnx = path / ONNX_SUBDIR
    return Bundle(path, kind, classes, method=d.get("method"), features=list(features), upstream=dict(up),
                  segment_length=seg_len, segment_hop=hop, segment_encoding=str(d.get("segment_encoding", "segment")),
                  encoder_window=window, models=models, onnx_dir=onnx if kind == "final" and is_onnx_export(onnx) else None,
                  info=d)
