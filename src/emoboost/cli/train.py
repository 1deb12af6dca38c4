"""``emoboost train``: cross-validation (or ``--from-run RUN``), then one model on all speakers."""

from __future__ import annotations

import argparse
from pathlib import Path

from emoboost.experiment.refit import train_final
from emoboost.inference.bundle import describe_cv
from emoboost.outdir import claim_dir


def add_args(p: argparse.ArgumentParser) -> None:
    from emoboost.cli.run import _add_run_args

    _add_run_args(p)
    for a in p._actions:
        if a.dest == "out":
            a.help = "bundle directory of the final model (default models/<corpus>-<method>)"
    p.description = ("Run speaker-independent CV (or reuse one with --from-run), then fit one model on all "
                     "speakers with the settings the CV chose, into a self-contained bundle (--out).")
    p.add_argument("--from-run", metavar="RUN_DIR",
                   help="reuse this finished `emoboost run` directory (its config, folds and features)")
    p.add_argument("--cv-out", metavar="DIR", help="where the CV run goes without --from-run (default OUT/cv)")


def run(args: argparse.Namespace) -> int:
    from emoboost.cli.run import _experiment_dict

    out = Path(args.out) if args.out else None
    if args.from_run:
        given = [f"--{k.replace('_', '-')}" for k in _RUN_FLAGS if getattr(args, k, None) not in (None, [], False)]
        if given:
            raise ValueError(f"--from-run takes every setting from {Path(args.from_run) / 'config.json'}; "
                             f"drop {', '.join(given)}")
        run_dir = Path(args.from_run)
        if out is None:
            out = Path("models") / run_dir.resolve().name
    else:
        from emoboost.experiment.run import ExperimentConfig, run_experiment

        d = _experiment_dict(args)
        from emoboost.cli.threads import config_threads

        config_threads(d, args.threads)
        if out is None:
            corpus = "+".join(d["corpora"]) if d.get("corpora") else d.get("corpus", "emodb")
            out = Path("models") / f"{corpus}-{d.get('method', 'linear')}"
        run_dir = Path(args.cv_out) if args.cv_out else out / "cv"
        d["out_dir"] = str(run_dir)
    with claim_dir(out, "model"):  # before the CV: a folder that is not a model folder costs nothing
        if not args.from_run:
            run_experiment(ExperimentConfig.from_dict(d))
        bundle = train_final(run_dir, out, cache_dir=args.cache_dir, progress=not args.no_progress, device=args.device)
    sel, tr = bundle["selection"], bundle["training"]
    chosen = ", ".join(f"{k}={v}" for k, v in sel["chosen"].items() if v is not None) or "-"
    print(f"final {bundle['method']} model: {out}")
    print(f"  trained on all {tr['speakers']} speakers, {tr['utterances']} utterances ({tr['fit_s']:.1f} s); "
          f"chosen: {chosen} ({sel['rule']})")
    print(f"  cross-validation: {describe_cv(bundle['cv'])}")
    print(f"  ONNX form: {bundle['onnx_form']}")
    return 0


_RUN_FLAGS = ("config", "corpus", "data_root", "manifest", "upstream", "method", "param", "override", "protocol",
              "folds", "seeds", "segment_length", "segment_hop", "segment_encoding", "store", "layers", "classes",
              "min_class_count", "corpus_option", "quick", "no_save_models", "train", "test", "leave_one_corpus_out",
              "label_map")
