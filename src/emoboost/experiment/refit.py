"""The final model: one model fitted on every speaker, with the settings speaker-independent CV chose.

A cross-validation run estimates how well a *procedure* generalises to new speakers; its fold models
each saw only part of the speakers. ``emoboost train`` runs (or, with ``--from-run``, reuses) that
CV and then fits the same procedure once on all speakers, fixing what the procedure would otherwise
have chosen on held-out data that no longer exists:

* methods on the shared training loop (linear, msemoboost, ssl_cnn, spec_cnn): the number of epochs
  is the median of the folds' early-stopping best epochs (rounded half up), trained with no
  validation set for exactly that many epochs;
* logreg: ``C`` is the value the folds' inner CV chose most often; on a tie, inner CV over all
  speakers decides among the tied values only. (The mode describes the models the CV report scored;
  rerunning the full search on all speakers would choose from data the report never evaluated.)
* ``layer=auto`` (logreg, linear): its inner CV (the committee of runs of layers, each with its C) reruns
  on all speakers, as svm's grid search does: a committee is several choices at once, and the folds'
  committees seldom agree exactly, so there is no single modal value to fix; the folds' choices are
  listed beside it.
* svm: its own speaker-grouped inner grid search over C x gamma reruns on all speakers (that search
  *is* its procedure; the grid is unchanged);
* anything else: fitted with the run's parameters.

The bundle directory is self-contained: ``model.safetensors`` + ``method.json`` (the method's own
save format), ``bundle.json`` (classes and label map, segmenting, the upstream's spec, fingerprint
and layers, features, ``"kind": "final"``, the pooled linear head when the model is one, what was
selected and from what, and the CV report: protocol, WA/UA mean ± std and pooled). Training reads
the same feature store as the run, so ``--from-run`` encodes nothing that the run already encoded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.outdir import claim_dir
from emoboost.utils import atomic_write_text, library_errors, read_json

log = logging.getLogger(__name__)

FINAL_KIND = "final"
TRAINED_METHODS = ("linear", "msemoboost", "ssl_cnn", "spec_cnn")


@dataclass
class Selection:
    """What the final fit uses: parameter overrides and the evidence behind them."""

    params: dict[str, Any]  # the method parameters of the final fit (the run's, with overrides applied)
    chosen: dict[str, Any]  # e.g. {"max_epochs": 12} or {"C": 0.1}
    rule: str  # one line: how it was chosen
    per_fold: list[Any]  # the folds' own choices, in fold order

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# choosing the settings from the folds
# ------------------------------------------------------------------------------------------------
def median_epochs(best_epochs: list[int | None]) -> int:
    """Median of the folds' best epochs, rounded half up (never below 1); folds without one are ignored."""
    vals = [int(e) for e in best_epochs if e is not None]
    if not vals:
        raise ValueError("no fold recorded an early-stopping best epoch (was the run trained with validation?)")
    return max(1, int(np.floor(float(np.median(vals)) + 0.5)))


def modal_values(values: list[Any]) -> list[Any]:
    """The most frequent value(s), sorted: one value, or all those tied for most frequent."""
    vals = [v for v in values if v is not None]
    if not vals:
        raise ValueError("no fold recorded a chosen value")
    counts = Counter(vals)
    top = max(counts.values())
    return sorted(v for v, n in counts.items() if n == top)


def select_settings(method: str, params: dict[str, Any], fold_infos: list[dict], fold_states: list[dict]) -> Selection:
    """Final-fit parameters from the folds' results (``FoldResult.info``) and saved model states.

    ``fold_states`` are the folds' ``method.json`` ``state`` dicts (empty where models were not saved).
    """
    from emoboost.methods.layer_choice import is_auto

    params = dict(params)
    if method in ("logreg", "linear") and "layer" not in params and fold_states and all(
            s.get("layers") and not s.get("committee") for s in fold_states):
        # a run from before layer=auto was the default: its folds all read the old default's layers
        params["layer"] = [int(v) for v in modal_values([_fold_layers({}, s) for s in fold_states])[0].split(",")]
    auto = method in ("logreg", "linear") and is_auto(params.get("layer", "auto"))
    rerun = "layer=auto: its inner CV (a committee of runs of layers, each with its C) rerun on all speakers"
    if auto and method == "logreg":
        return Selection(params, {}, rerun, [_fold_layers(i, s) for i, s in zip(fold_infos, fold_states)])
    if method in TRAINED_METHODS:
        per_fold = [i.get("best_epoch") for i in fold_infos]
        epochs = median_epochs(per_fold)
        params.update(max_epochs=epochs, refit=False)
        rule = ("median of the folds' early-stopping best epochs (rounded half up); trained on all speakers with "
                "no validation for that many epochs")
        return Selection(params, {"max_epochs": epochs}, f"{rule}; {rerun}" if auto else rule, per_fold)
    if method == "logreg":
        per_fold = [_fold_c(info, state) for info, state in zip(fold_infos, fold_states)]
        tied = modal_values(per_fold)
        params["Cs"] = [float(c) for c in tied]
        rule = "the C the folds' inner CV chose most often"
        how = sorted({k[len("logreg C ("):-1] for i in fold_infos for k in (i.get("method") or {})
                      if k.startswith("logreg C (") and "inner CV on" not in k})
        if how:  # one training speaker (or one C given): no fold chose anything
            rule = f"the folds' C ({'; '.join(how)})"
        if len(tied) > 1:
            rule += f"; tied between {tied}: inner CV over all speakers chose among them"
        return Selection(params, {"C": tied[0] if len(tied) == 1 else None}, rule, per_fold)
    if method == "svm":
        per_fold = [s.get("best_params") for s in fold_states]
        return Selection(params, {}, "its speaker-grouped inner grid search (C x gamma) rerun on all speakers",
                         per_fold)
    return Selection(params, {}, "the run's parameters (nothing is selected on held-out data)", [])


def _fold_layers(info: dict, state: dict) -> str | None:
    from emoboost.methods.layer_choice import layers_text

    if state.get("layers"):
        return layers_text(state["layers"])
    for k, v in (info.get("method") or {}).items():
        if k.startswith("layers (layer=auto") and v is not None:
            return str(v)
    return None


def _fold_c(info: dict, state: dict) -> float | None:
    if state.get("C") is not None:
        return float(state["C"])
    for k, v in (info.get("method") or {}).items():
        if k.startswith("logreg C") and v is not None:
            return float(v)
    return None


# ------------------------------------------------------------------------------------------------
# the run a final model comes from
# ------------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """A finished CV run read back: config, fold results, saved model states, summary, bundle."""

    path: Path
    config: dict
    fold_infos: list[dict]
    fold_states: list[dict]
    summary: dict
    bundle: dict


def read_run(run_dir: str | Path) -> RunRecord:
    """Read a finished run directory; an incomplete or foreign one is refused in one line naming it."""
    from emoboost.evaluation.report import FoldResult

    d = Path(run_dir)
    if (d / "bundle.json").is_file() and read_json(d / "bundle.json", "bundle").get("kind") == FINAL_KIND:
        raise ValueError(f"{d}: is a final-model bundle, not a cross-validation run")
    for name in ("config.json", "summary.json", "bundle.json", "folds.json"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d}: not a finished run directory (no {name}); run `emoboost run` first")
    config = read_json(d / "config.json", "run config")
    summary = read_json(d / "summary.json", "run summary")
    bundle = read_json(d / "bundle.json", "run bundle")
    folds = read_json(d / "folds.json", "fold list")
    seeds = config.get("seeds") or [0]
    infos, states = [], []
    missing = []
    for f in folds:
        for seed in seeds:
            name = f"fold{int(f['index']):02d}_seed{seed}"
            res = d / "folds" / f"{name}.json"
            if not res.is_file():
                missing.append(name)
                continue
            try:
                r = FoldResult.from_json(res.read_text())
            except (OSError, ValueError, TypeError) as e:
                raise ValueError(f"{res}: unreadable fold result ({e})") from e
            infos.append(r.info)
            mj = d / "models" / name / "method.json"
            states.append(read_json(mj, "method config").get("state", {}) if mj.is_file() else {})
    if missing:
        raise ValueError(f"{d}: the run is incomplete ({len(missing)} fold result(s) missing, e.g. {missing[0]}); "
                         f"rerun the same `emoboost run` to finish it")
    return RunRecord(d, config, infos, states, summary, bundle)


def cv_report(rec: RunRecord) -> dict:
    """The CV numbers a final model quotes: protocol facts, WA/UA/macro-F1 mean ± std over folds, pooled."""
    proto = rec.summary.get("protocol", {})
    s = rec.summary.get("summary", {})
    keep = ("corpus", "utterances", "speakers", "classes", "protocol", "seeds", "method", "upstream", "features",
            "segmenting")
    return {"run": str(rec.path.resolve()), **{k: proto[k] for k in keep if k in proto},
            **{m: s[m] for m in ("WA", "UA", "macro_F1") if m in s}, "pooled": s.get("pooled", {}),
            "n_results": s.get("n_results")}




# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def training_set(cfg, manifest, method, classes: list[str]):
    """(UtteranceSet of every usable utterance, skipped files, upstream info): the run's data path."""
    from emoboost.experiment.run import align_to_view, build_dataset, prepare_ssl

    names = method.requires
    skipped: list[tuple[str, str]] = []
    up_info: dict = {}
    view = None
    if "ssl" in names:
        view, bad, up_info = prepare_ssl(cfg, manifest, method)
        skipped += bad
    bad_paths = {p for p, _ in skipped}
    manifest = manifest.filter(lambda u: u.path not in bad_paths)
    feats: dict = {}
    acoustic = [n for n in names if n != "ssl"]
    if acoustic:
        from emoboost.features.pipeline import compute_corpus_features

        feats, bad = compute_corpus_features(manifest, acoustic, cfg.segmenting, cfg.cache_dir,
                                             min_duration=cfg.min_duration, progress=cfg.progress)
        skipped += bad
        bad_paths = {p for p, _ in skipped}
        manifest = manifest.filter(lambda u: u.path not in bad_paths)
    if len(manifest) == 0:
        raise ValueError(f"no usable utterances: all {len(skipped)} file(s) were skipped")
    if "ssl" in names and view is None:
        raise ValueError(f"no utterance could be encoded: all {len(skipped)} file(s) were skipped")
    if view is not None:  # by id, as the run does
        manifest, view = align_to_view(manifest, view)
    return build_dataset(manifest, feats, classes, ssl=view), manifest, skipped, up_info


def train_final(run_dir: str | Path, out: str | Path, cache_dir: str | None = None, progress: bool = True,
                device: str | None = None, onnx: bool = True) -> dict:
    """Fit the final model of a finished CV run into bundle directory ``out``; returns bundle.json's dict.

    ``out`` must be new, empty or a model folder ``train`` wrote (then it is replaced: re-training);
    anything else (a Hugging Face model, a run directory) is refused before anything is fitted.
    """
    rec = read_run(run_dir)
    out = Path(out)
    if out.resolve() == rec.path.resolve():
        raise ValueError(f"{out}: the bundle must not be written into the run directory it comes from")
    with claim_dir(out, "model"):
        bundle = _fit_final(rec, out, cache_dir, progress, device)
        bundle["onnx_form"] = write_onnx_form(out) if onnx else "not written (onnx=False)"
        return bundle


def write_onnx_form(out: Path) -> str:
    """The final model's ONNX form in ``out/onnx``, so that ``predict`` runs it with onnxruntime (a
    fraction of torch's start-up), when the method and encoder export and onnx + onnxruntime are
    installed; returns what happened, in one line. An earlier form there (an earlier ``train`` into the
    same folder) is replaced, never left beside a new model."""
    import importlib.util
    import shutil

    from emoboost.inference.bundle import ONNX_SUBDIR, read_bundle
    from emoboost.inference.export import export_bundle
    from emoboost.outdir import check_owner

    dest = out / ONNX_SUBDIR
    if dest.exists():
        check_owner(dest, "export")  # only an export we wrote is replaced
        shutil.rmtree(dest)
    if "onnx" not in read_bundle(out).exports_to():
        return "no (only pooled linear/logreg heads and msemoboost on an SSL encoder export)"
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return f"no ({' and '.join(missing)} not installed: pip install 'emoboost[onnx]')"
    try:
        export_bundle(out, dest)
    except (TypeError, ValueError) as e:  # e.g. an encoder other than Whisper
        shutil.rmtree(dest, ignore_errors=True)
        return f"no ({e})"
    return f"yes ({dest}: predict runs it with onnxruntime; --backend torch runs the torch model)"


def _fit_final(rec: RunRecord, out: Path, cache_dir: str | None, progress: bool, device: str | None) -> dict:
    from emoboost.data.manifest import Manifest
    from emoboost.experiment.run import ExperimentConfig, load_manifest
    from emoboost.methods import get_method

    cfg_d = {**rec.config, "progress": progress}
    if cache_dir:
        cfg_d["cache_dir"] = cache_dir
    if device:
        cfg_d["device"] = device
    cfg = ExperimentConfig.from_dict(cfg_d)
    classes = list(rec.bundle["classes"])
    sel = select_settings(cfg.method, cfg.method_params, rec.fold_infos, rec.fold_states)
    method = get_method(cfg.method)(classes, **sel.params)
    method.device = cfg.device
    mpath = rec.path / "manifest.jsonl"
    manifest = Manifest.read(mpath) if mpath.is_file() else load_manifest(cfg)[0]
    if cfg.test_corpora:  # a cross-corpus CV: the final model learns from the training corpora, as its fold did
        from emoboost.experiment.run import corpus_names

        held_out = set(corpus_names(cfg.test_corpora))
        manifest = manifest.filter(lambda u: u.corpus not in held_out)
    data, manifest, skipped, up_info = training_set(cfg, manifest, method, classes)
    want = (rec.bundle.get("upstream") or {}).get("fingerprint")
    if want and up_info.get("fingerprint") not in (None, want):
        raise ValueError(f"upstream {cfg.upstream!r} now has fingerprint {up_info['fingerprint']}, but the run "
                         f"{rec.path} was evaluated with {want}: its CV report would not describe this model")
    seed = int((cfg.seeds or [0])[0])
    t0 = time.perf_counter()
    with library_errors(f"the final {cfg.method} model"):
        method.fit(data, None, seed=seed)
    fit_s = time.perf_counter() - t0
    probe = data.subset(np.arange(min(len(data), 8)))  # a diverged fit (NaN loss, NaN weights) answers NaN
    if not np.all(np.isfinite(method.predict_proba(probe))):
        raise ValueError(f"the final {cfg.method} model gives non-finite probabilities on its own training "
                         f"utterances (its training diverged: NaN loss or weights); nothing was written to {out}")
    if getattr(method, "committee_", None):  # layer=auto: what its inner CV chose on all speakers
        sel.chosen.update(layer=list(method.layers_), committee=[  # type: ignore[attr-defined]
            {"layers": lay, "C": c} for lay, c in method.committee_])  # type: ignore[attr-defined]
    elif cfg.method == "logreg":
        sel.chosen["C"] = float(method.C_)  # type: ignore[attr-defined]
    elif cfg.method == "svm":
        sel.chosen.update(getattr(method, "best_params_", {}))
    method.save(out)
    names = list(method.requires)
    up = dict(rec.bundle.get("upstream") or {})
    if up_info:
        up.update({k: up_info[k] for k in ("spec", "fingerprint", "num_layers", "hidden_size", "frame_rate")
                   if k in up_info})
        up["layers"] = method.ssl_layers(int(up_info["num_layers"]))
    bundle: dict[str, Any] = {
        "kind": FINAL_KIND,
        "classes": classes,
        "label_map": {str(i): c for i, c in enumerate(classes)},
        "method": cfg.method,
        "method_params": method.params,
        "upstream": up,
        "segment_length": cfg.segment_length,
        "segment_hop": cfg.segment_hop,
        "segment_encoding": cfg.segment_encoding,
        "encoder_window": cfg.encoder_window,
        "segmenting": _segmenting_line(cfg, method),
        "features": names,
        "models": ["."],  # one model: this directory
        "selection": sel.to_dict(),
        "training": {"utterances": len(data), "speakers": len(manifest.speakers()), "seed": seed,
                     "corpora": sorted({u.corpus for u in manifest}),
                     "fit_s": round(fit_s, 3), "skipped_files": [{"path": p, "problem": m} for p, m in skipped],
                     "class_counts": {c: int((data.y == i).sum()) for i, c in enumerate(classes)}},
        "cv": cv_report(rec),
    }
    head_fn = getattr(method, "pooled_head", None)
    head = head_fn(up.get("num_layers")) if callable(head_fn) else None
    if head is not None:
        bundle["head"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in head.items()}
    atomic_write_text(out / "bundle.json", json.dumps(bundle, indent=2, default=_json_default))
    return bundle


def _segmenting_line(cfg, method) -> str:
    from emoboost.experiment.run import _segmenting_line as line

    return line(cfg, method)


def _json_default(o: Any) -> Any:
    from emoboost.methods.base import _json_default as d

    return d(o)


# ------------------------------------------------------------------------------------------------
# command line: emoboost train
# ------------------------------------------------------------------------------------------------
