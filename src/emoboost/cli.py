"""Command line: ``emoboost {data,run,predict,benchmark,pretrain,intensity}``.

Heavy modules are imported inside each command so ``emoboost --help`` is instant and one missing
optional dependency never breaks unrelated commands.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import yaml

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
        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    direct = {
        "corpus": args.corpus, "data_root": args.data_root, "manifest": args.manifest, "upstream": args.upstream,
        "method": args.method, "protocol": args.protocol, "n_folds": args.folds, "seeds": args.seeds,
        "segment_length": args.segment_length, "segment_hop": args.segment_hop, "out_dir": args.out,
        "cache_dir": args.cache_dir, "classes": args.classes,
    }
    cfg.update({k: v for k, v in direct.items() if v is not None})
    params = cfg.setdefault("method_params", {})
    for p in args.param or []:
        apply_overrides(params, [p])
    apply_overrides(cfg, args.override or [])
    if args.quick:
        cfg["max_folds"] = 2
        params.setdefault("max_epochs", 3)
        cfg["tsne"] = False
    if args.no_save_models:
        cfg["save_models"] = False
    if args.no_progress:
        cfg["progress"] = False
    return cfg


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML experiment config (recipes/...); flags override it")
    p.add_argument("--corpus", help="emodb, ravdess, iemocap, ... (default emodb)")
    p.add_argument("--data-root", help="corpus folder (default: $EMOBOOST_DATA/<corpus>, then $EMOBOOST_SHARED/data/<corpus>, then download)")
    p.add_argument("--manifest", help="a prepared manifest (.jsonl/.csv) instead of --corpus/--data-root")
    p.add_argument("--upstream", help="encoder: name (whisper-base, wav2vec2-base, ...), Hugging Face id or local dir")
    p.add_argument("--method", help="linear (SSL-only baseline), msemoboost, ssl_cnn, svm, spec_cnn")
    p.add_argument("-p", "--param", action="append", help="method parameter key=value (repeatable), e.g. -p layer=4")
    p.add_argument("-o", "--override", action="append", help="config override key=value, dotted for nesting")
    p.add_argument("--protocol", choices=["loso", "loso-session", "group-kfold", "stratified-kfold"])
    p.add_argument("--folds", type=int, help="number of folds for grouped protocols")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--segment-length", type=float)
    p.add_argument("--segment-hop", type=float)
    p.add_argument("--classes", nargs="+", help="keep only these labels")
    p.add_argument("--out", help="run directory (default runs/<corpus>-<method>)")
    p.add_argument("--cache-dir", help="feature cache (default $EMOBOOST_CACHE or ~/.cache/emoboost)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 folds, 3 epochs, no t-SNE")
    p.add_argument("--no-save-models", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def cmd_run(args: argparse.Namespace) -> int:
    from emoboost.runner import ExperimentConfig, run_experiment

    d = _experiment_dict(args)
    d.setdefault("out_dir", f"runs/{d.get('corpus', 'emodb')}-{d.get('method', 'linear')}")
    sweeps = args.sweep or []
    if not sweeps:
        rep = run_experiment(ExperimentConfig.from_dict(d))
        print((Path(d["out_dir"]) / "summary.md").read_text())
        print(f"report: {d['out_dir']}  (total {rep['timings']['total_s']:.0f} s)")
        return 0
    key, _, values = sweeps[0].partition("=")
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


def cmd_predict(args: argparse.Namespace) -> int:
    from emoboost.audio import AudioError
    from emoboost.predict import Predictor

    pred = Predictor.load(args.model, upstream=args.upstream)
    rows, failed = [], 0
    for a in args.audio:
        try:
            rows.append(pred.predict_file(a, timeline=args.timeline).to_dict())
        except (AudioError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        classes = pred.classes
        if args.timeline:
            w.writerow(["path", "start", "end", "label", *classes])
            for r in rows:
                for t in r["timeline"]:
                    w.writerow([r["path"], t["start"], t["end"], t["label"], *[t["probabilities"][c] for c in classes]])
        else:
            w.writerow(["path", "label", *classes])
            for r in rows:
                w.writerow([r["path"], r["label"], *[r["probabilities"][c] for c in classes]])
    else:
        for r in rows:
            probs = "  ".join(f"{c}={p:.3f}" for c, p in sorted(r["probabilities"].items(), key=lambda kv: -kv[1]))
            print(f"{r['path']}\t{r['label']}\t{probs}")
            for t in r.get("timeline", []):
                print(f"  {t['start']:8.2f}-{t['end']:8.2f}s  {t['label']}")
    return 1 if failed else 0


def cmd_data(args: argparse.Namespace) -> int:
    from emoboost.data.corpora import CORPORA, get_corpus

    if args.data_cmd == "list":
        for name in sorted(CORPORA):
            info = get_corpus(name).INFO
            print(f"{name:10s} {len(info.classes):2d} classes  protocol={info.default_protocol:13s} {info.url or ''}")
        return 0
    if args.data_cmd == "download":
        from emoboost.data.download import download_corpus
        from emoboost.runner import default_cache_dir

        dest = args.dest or str(Path(default_cache_dir()) / "corpora")
        root = download_corpus(args.corpus, dest, url=args.url, force=args.force)
        print(root)
        return 0
    if args.data_cmd == "prepare":
        mod = get_corpus(args.corpus)
        if hasattr(mod, "scan"):
            manifest, skipped = mod.scan(args.root)
        else:
            manifest, skipped = mod.prepare(args.root), []
        manifest.write(args.out)
        print(f"{manifest} -> {args.out}")
        for p, problem in skipped:
            print(f"skipped {p}: {problem}", file=sys.stderr)
        return 0
    return 2


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="emoboost", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is best on a busy machine)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="train + evaluate one method with speaker-independent CV, write a report")
    _add_run_args(p)
    p.add_argument("--sweep", action="append", help="method parameter sweep, e.g. layer=0,2,4,6,weighted")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("predict", help="label new audio with a trained run or model")
    p.add_argument("model", help="run directory or saved model directory")
    p.add_argument("audio", nargs="+")
    p.add_argument("--timeline", action="store_true", help="per-segment probabilities with times")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text")
    p.add_argument("--upstream", help="override where the encoder is loaded from (must match its fingerprint)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("data", help="corpora: list, download, prepare manifests")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    dsub.add_parser("list")
    d = dsub.add_parser("download", help="fetch a corpus from its official public URL")
    d.add_argument("corpus")
    d.add_argument("--dest")
    d.add_argument("--url", help="override the download URL (mirrors)")
    d.add_argument("--force", action="store_true")
    d = dsub.add_parser("prepare", help="scan a corpus folder into a manifest")
    d.add_argument("corpus")
    d.add_argument("root")
    d.add_argument("--out", required=True, help="manifest path (.jsonl or .csv)")
    p.set_defaults(func=cmd_data)

    _add_optional_commands(sub)
    return ap


def _add_optional_commands(sub) -> None:
    """Commands whose modules are written per method; each registers its own arguments."""
    try:
        from emoboost import benchmark

        p = sub.add_parser("benchmark", help="several methods × encoders on identical folds -> one table")
        benchmark.add_args(p)
        p.set_defaults(func=benchmark.run)
    except ImportError:
        pass
    try:
        from emoboost.pretrain import cli as pcli

        p = sub.add_parser("pretrain", help="self-supervised pretraining (Mockingjay / NPC, random or EMS masking)")
        pcli.add_pretrain_args(p)
        p.set_defaults(func=pcli.run_pretrain)
        p = sub.add_parser("intensity", help="frame-level emotion intensity curve of audio files")
        pcli.add_intensity_args(p)
        p.set_defaults(func=pcli.run_intensity)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as e:
        if args.verbose:
            raise
        print(f"emoboost: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
