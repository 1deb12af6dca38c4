"""``emoboost run``: one method, speaker-independent cross-validation, a report (``--sweep`` over a parameter)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emoboost.cli.corpora import add_cross_corpus_args
from emoboost.utils import parse_value as _parse_value


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Dotted ``key=value`` overrides (``method_params.lr=1e-4``); unknown top-level keys are errors later."""
    for o in overrides:
        if "=" not in o:
            raise SystemExit(f"override {o!r} must look like key=value")
        key, val = o.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SystemExit(f"override {o!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_value(val)
    return cfg


def _experiment_dict(args: argparse.Namespace) -> dict:
    cfg: dict = {}
    if args.config:
        cfg = _read_yaml(args.config)
    direct = {
        "corpus": args.corpus, "data_root": args.data_root, "manifest": args.manifest, "upstream": args.upstream,
        "method": args.method, "protocol": args.protocol, "n_folds": args.folds, "seeds": args.seeds,
        "segment_length": args.segment_length, "segment_hop": args.segment_hop, "out_dir": args.out,
        "segment_encoding": args.segment_encoding, "store": args.store, "store_layers": args.layers,
        "cache_dir": args.cache_dir, "classes": args.classes,
    }
    cfg.update({k: v for k, v in direct.items() if v is not None})
    from emoboost.data.crosscorpus import corpus_plan

    plan = corpus_plan(args.train, args.test, args.leave_one_corpus_out)
    if plan and (args.corpus or args.data_root or args.manifest or args.protocol):
        raise ValueError("--train/--test and --leave-one-corpus-out set the corpora and the protocol; "
                         "--corpus, --data-root, --manifest and --protocol cannot go with them")
    cfg.update(plan)
    if args.label_map:
        cfg["label_map"] = args.label_map
    params = cfg.setdefault("method_params", {})
    for p in args.param or []:
        apply_overrides(params, [p])
    apply_overrides(cfg, args.override or [])
    if args.min_class_count is not None:
        cfg["min_class_count"] = args.min_class_count
    for o in args.corpus_option or []:
        apply_overrides(cfg.setdefault("corpus_options", {}), [o])
    if args.quick:
        cfg["max_folds"] = 2
        if _accepts(cfg.get("method", "linear"), "max_epochs"):
            params.setdefault("max_epochs", 3)
        cfg["tsne"] = False
    if getattr(args, "tsne", False) and not args.quick:
        cfg["tsne"] = True
    if getattr(args, "plots", False):
        cfg["plots"] = True
    if getattr(args, "device", None):
        cfg["device"] = args.device
    if args.no_save_models:
        cfg["save_models"] = False
    if args.no_progress:
        cfg["progress"] = False
    return cfg


def _read_yaml(path: str) -> dict:
    """An experiment recipe; a missing or malformed file is one line naming it."""
    import yaml

    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: config file does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: invalid YAML ({' '.join(str(e).split())})") from e
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{p}: an experiment config must be a mapping of keys, got {type(cfg).__name__}")
    return cfg


def _accepts(method: str, param: str) -> bool:
    """Whether ``method`` takes ``param`` (``--quick`` only caps epochs of methods that have epochs)."""
    from emoboost.methods import get_method
    from emoboost.methods.base import accepts_param

    try:
        return accepts_param(get_method(method), param)
    except KeyError:
        return False  # an unknown method is reported by the run itself


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML experiment config (recipes/...); flags override it")
    p.add_argument("--corpus", help="emodb, ravdess, iemocap, ... (default emodb)")
    p.add_argument("--data-root", help="corpus folder (default: $EMOBOOST_DATA/<corpus>, then $EMOBOOST_SHARED/data/<corpus>, then download)")
    p.add_argument("--manifest", help="a prepared manifest (.jsonl/.csv) instead of --corpus/--data-root")
    p.add_argument("--upstream", help="encoder: name (whisper-base, wav2vec2-base, ...), Hugging Face id or local dir")
    p.add_argument("--method", help="linear (SSL-only baseline, the default), logreg, msemoboost, ssl_cnn, svm, spec_cnn; "
                                    "linear and logreg choose their layers by inner CV on the training speakers "
                                    "(layer=auto) unless given -p layer=...")
    p.add_argument("-p", "--param", action="append", help="method parameter key=value (repeatable), e.g. -p layer=4")
    p.add_argument("-o", "--override", action="append", help="config override key=value, dotted for nesting")
    p.add_argument("--protocol",
                   choices=["loso", "loso-session", "group-kfold", "stratified-group-kfold", "stratified-kfold"])
    p.add_argument("--folds", type=int, help="number of folds for grouped protocols")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--segment-length", type=float)
    p.add_argument("--segment-hop", type=float)
    p.add_argument("--segment-encoding", choices=["utterance", "segment"],
                   help="SSL store: each clip on its own frames (default) or each segment alone (MS-EmoBoost's paper)")
    p.add_argument("--store", choices=["auto", "frames", "pooled"],
                   help="what the feature store keeps: auto (frames only when the method reads them), frames, pooled")
    p.add_argument("--layers", help="keep frames of these layers only, e.g. 2,3,4 (default all); use the same as extract")
    p.add_argument("--classes", nargs="+", help="keep only these labels")
    p.add_argument("--min-class-count", type=int,
                   help="fewest utterances a class may have (default: the number of folds)")
    p.add_argument("--corpus-option", action="append", metavar="KEY=VALUE",
                   help="corpus scan option (repeatable), e.g. speaker_regex='^(\\d+)_' for --corpus folder")
    p.add_argument("--out", help="run directory (default runs/<corpus>-<method>)")
    p.add_argument("--cache-dir", help="feature cache (default $EMOBOOST_CACHE or ~/.cache/emoboost)")
    p.add_argument("--device", help="encoder and torch methods: auto (default: cuda when visible), cpu, cuda, "
                                    "cuda:N, mps; also the config key device:")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 folds, 3 epochs, no t-SNE")
    p.add_argument("--tsne", action="store_true", help="also plot a t-SNE of the test embeddings (tsne.png)")
    p.add_argument("--plots", action="store_true",
                   help="also draw confusion.png (summary.md always has the matrix as a table); rerun a "
                        "finished run with --plots to draw it in seconds")
    p.add_argument("--no-save-models", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    add_cross_corpus_args(p)


def cmd_run(args: argparse.Namespace) -> int:
    from emoboost.experiment.run import ExperimentConfig, run_experiment

    d = _experiment_dict(args)
    from emoboost.cli.threads import config_threads

    config_threads(d, args.threads)
    corpus = "+".join(d["corpora"]) if d.get("corpora") else d.get("corpus", "emodb")
    d.setdefault("out_dir", f"runs/{corpus}-{d.get('method', 'linear')}")
    sweeps = args.sweep or []
    if not sweeps:
        rep = run_experiment(ExperimentConfig.from_dict(d))
        print((Path(d["out_dir"]) / "summary.md").read_text())
        print(f"report: {d['out_dir']}  (total {rep['timings']['total_s']:.0f} s)")
        return 0
    from emoboost.outdir import claim_dir

    with claim_dir(d["out_dir"], "sweep"):  # one run directory per value inside it, each claimed by its run
        return _sweep(d, sweeps[0])


def _sweep(d: dict, sweep: str) -> int:
    from emoboost.experiment.run import ExperimentConfig, run_experiment

    key, _, values = sweep.partition("=")
    rows = []
    base_out = d["out_dir"]
    for v in values.split(","):
        dd = json.loads(json.dumps(d))
        dd["method_params"][key] = _parse_value(v)
        dd["out_dir"] = f"{base_out}/{key}={v}"
        rep = run_experiment(ExperimentConfig.from_dict(dd))
        s = rep["summary"]
        rows.append((v, s["WA"], s["UA"], s["macro_F1"], rep["timings"]["total_s"]))
        print(f"{key}={v}: WA {100 * s['WA']['mean']:.2f} ± {100 * s['WA']['std']:.2f}  "
              f"UA {100 * s['UA']['mean']:.2f} ± {100 * s['UA']['std']:.2f}", flush=True)
    from emoboost.evaluation.report import fmt_pm

    proto = json.loads((Path(dd["out_dir"]) / "summary.json").read_text())["protocol"]
    lines = [f"# sweep over {key}", ""] + [f"- **{k}**: {v}" for k, v in proto.items() if k not in ("method", "parameters")]
    lines += ["", f"| {key} | WA | UA | macro-F1 | wall s |", "|---|---|---|---|---|"]
    lines += [f"| {v} | {fmt_pm(wa)} | {fmt_pm(ua)} | {fmt_pm(f1)} | {t:.0f} |" for v, wa, ua, f1, t in rows]
    from emoboost.utils import atomic_write_text

    atomic_write_text(Path(base_out) / "sweep.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
