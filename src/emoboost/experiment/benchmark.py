"""``emoboost benchmark``: several methods × encoders on one corpus, identical folds and seeds, one table.

Each entry is a normal run directory (so it resumes, and its models work with ``predict``); the
feature cache is shared, so an encoder's features are extracted once for every method. The table
checks that every entry was tested on exactly the same folds and says so.

Method specs: ``name`` or ``name:key=value,key=value`` (e.g. ``msemoboost:guidance=mfcc,attention=false``),
optionally labelled ``label=name:...``. ``--paired A B`` adds A − B per (fold, seed) with a 95 %
bootstrap interval (:mod:`emoboost.evaluation.paired`).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

from emoboost.evaluation.report import fmt_pm
from emoboost.outdir import claim_dir
from emoboost.utils import atomic_write_text
from emoboost.utils import parse_value as _parse_value

DEFAULT_METHODS = ["svm:features=egemaps", "linear", "ssl_cnn", "msemoboost", "spec_cnn"]


def parse_method_spec(spec: str) -> tuple[str, str, dict]:
    """'label=name:k=v,k=v' -> (label, name, params)."""
    label = None
    if "=" in spec.split(":", 1)[0]:
        label, spec = spec.split("=", 1)
    name, _, rest = spec.partition(":")
    params = {}
    for kv in filter(None, re.split(r",(?![^\[]*\])", rest)):  # commas inside [...] belong to a list
        if "=" not in kv:
            raise ValueError(f"method spec {spec!r}: parameter {kv!r} must be key=value")
        k, v = kv.split("=", 1)
        params[k] = _parse_value(v)
    label = label or (name + (":" + rest if rest else ""))
    return label, name, params


def _needs_upstream(name: str, params: dict) -> bool:
    from emoboost.experiment.run import PLACEHOLDER_CLASSES
    from emoboost.methods import get_method

    return "ssl" in get_method(name)(PLACEHOLDER_CLASSES, **params).requires


def _pooled_mean(pooled: dict, key: str) -> str:
    vals = [m[key] for m in pooled.values() if key in m]
    return f"{100 * sum(vals) / len(vals):.2f}" if vals else "-"


def _paired_entries(pairs: list[list[str]], entries: list[str]) -> list[tuple[str, str]]:
    """Resolve ``--paired`` labels to entries before anything runs (a typo must not cost a benchmark)."""
    def find(label: str) -> str:
        hits = [e for e in entries if e == label or e.split(" @ ")[0] == label]
        if len(hits) != 1:
            raise ValueError(f"--paired {label!r}: {'no' if not hits else 'several'} matching entries "
                             f"(entries: {', '.join(entries)})")
        return hits[0]

    return [(find(a), find(b)) for a, b in pairs]


def _entry_names(args: argparse.Namespace) -> list[str]:
    names = []
    for spec in args.methods:
        label, name, params = parse_method_spec(spec)
        ups = args.upstreams if _needs_upstream(name, params) else [None]
        names += [label if up is None else f"{label} @ {up}" for up in ups]
    return names


def entry_dir_name(entry: str) -> str:
    """The run directory name of a benchmark entry (``label @ upstream`` -> ``label__upstream``)."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in entry.replace(" @ ", "__"))


def _config(args: argparse.Namespace, plan: dict, **kw):
    """The run config of one entry: the benchmark's flags, the corpus plan (a corpus, or merged corpora)."""
    from emoboost.experiment.run import ExperimentConfig, default_cache_dir

    if plan.get("protocol") and args.protocol:
        raise ValueError(f"--protocol {args.protocol} does not apply: the corpora set the protocol ({plan['protocol']})")
    corpus = {"corpus": plan.get("corpus") or "emodb", "corpora": plan.get("corpora"),
              "test_corpora": plan.get("test_corpora"), "protocol": plan.get("protocol") or args.protocol,
              "classes": plan.get("classes", getattr(args, "classes", None)),
              "label_map": getattr(args, "label_map", None) if plan.get("corpora") else None}
    if not plan.get("corpora"):
        corpus.update(data_root=args.data_root, manifest=args.manifest)
    return ExperimentConfig(
        **corpus, n_folds=args.folds, seeds=list(args.seeds), segment_length=args.segment_length,
        segment_encoding=args.segment_encoding, store=getattr(args, "store", None) or "auto",
        cache_dir=args.cache_dir or default_cache_dir(), save_models=not args.no_save_models,
        tsne=args.tsne and not (args.quick or args.no_tsne), plots=args.plots, device=args.device,
        progress=not args.no_progress, max_folds=2 if args.quick else None, **kw)


def run_table(args: argparse.Namespace, out: Path, plan: dict, pairs: list[tuple[str, str]],
              cell: str | None = None) -> tuple[list[dict], bool]:
    """The benchmark loop: every method × upstream on ``plan``'s corpus (or merged corpora), identical
    folds, one run directory each under ``out``; writes ``out/benchmark.md|json`` -> (rows, identical folds).
    ``cell`` names it when it is one cell of a larger table (progress lines say it; the table is not printed)."""
    from emoboost.experiment.run import run_experiment

    rows = []
    t_all = time.perf_counter()
    for spec in args.methods:
        label, name, params = parse_method_spec(spec)
        ups = args.upstreams if _needs_upstream(name, params) else [None]
        for up in ups:
            if args.quick:
                from emoboost.methods import get_method
                from emoboost.methods.base import accepts_param

                if accepts_param(get_method(name), "max_epochs"):
                    params = {"max_epochs": 2, **params}
            entry = label if up is None else f"{label} @ {up}"
            cfg = _config(args, plan, upstream=up, method=name, method_params=params,
                          out_dir=str(out / entry_dir_name(entry)))
            t0 = time.perf_counter()
            rep = run_experiment(cfg)
            folds = json.loads((Path(cfg.out_dir) / "folds.json").read_text())
            s = rep["summary"]
            rows.append({
                "entry": entry, "method": name, "params": params, "upstream": up, "run_dir": cfg.out_dir,
                "WA": s["WA"], "UA": s["UA"], "macro_F1": s["macro_F1"],
                "pooled": s.get("pooled", {}),
                "train_s": s["timings_total_s"].get("fit_s", 0.0), "infer_s": s["timings_total_s"].get("predict_s", 0.0),
                "features_s": rep["timings"]["features_s"], "wall_s": time.perf_counter() - t0,
                "parameters": rep["protocol"].get("parameters"), "protocol": rep["protocol"],
                "per_fold": rep["per_fold"], "folds": [f["test_ids"] for f in folds],
            })
            print(f"{cell + ': ' if cell else ''}{entry}: WA {fmt_pm(s['WA'])}  UA {fmt_pm(s['UA'])}", flush=True)
    same = all(r["folds"] == rows[0]["folds"] for r in rows)
    proto = rows[0]["protocol"]
    lines = [f"# emoboost benchmark: {proto['corpus']}", ""]
    for k in ("corpus", "utterances", "speakers", "classes", "label map", "classes left out", "protocol", "seeds",
              "features", "segmenting", "machine"):
        if k not in proto:  # "label map", "classes left out": only runs on several corpora have them
            continue
        values = [r["protocol"].get(k) for r in rows]
        if len({str(v) for v in values}) > 1:  # entries differ (pooled vs windowed methods): say so per entry
            lines.append(f"- **{k}**: " + "; ".join(f"{r['entry']}: {v}" for r, v in zip(rows, values)))
        else:
            lines.append(f"- **{k}**: {proto.get(k)}")
    lines.append(f"- **identical folds across entries**: {'yes' if same else 'NO (some entries skipped different files)'}")
    lines.append(f"- **total wall time**: {time.perf_counter() - t_all:.0f} s (machine: {platform.machine()})")
    lines += ["", "WA/UA/macro-F1: fold mean ± std; pooled: over all test utterances of all folds (mean over seeds).", "",
              "| method | upstream | WA % | UA % | macro-F1 % | pooled WA % | pooled UA % | train s | infer s | params |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pw, pu = (_pooled_mean(r["pooled"], k) for k in ("WA", "UA"))
        lines.append(
            f"| {r['entry'].split(' @ ')[0]} | {r['upstream'] or '-'} | {fmt_pm(r['WA'])} | {fmt_pm(r['UA'])} | "
            f"{fmt_pm(r['macro_F1'])} | {pw} | {pu} | {r['train_s']:.0f} | {r['infer_s']:.1f} | {r['parameters']:,} |"
        )
    lines += _per_corpus_lines(rows)
    notes = {k: v for r in rows for k, v in r["protocol"].items() if k in ("alexnet", "pretrained_weights", "weights")}
    if notes:
        lines += [""] + [f"- {k}: {v}" for k, v in notes.items()]
    paired_out = []
    if pairs:
        from emoboost.evaluation.paired import paired

        by_entry = {r["entry"]: r["run_dir"] for r in rows}
        lines += ["", "Paired differences A − B per (fold, seed), percentage points; 95 % CI = percentile bootstrap "
                  "of the mean over the (fold, seed) differences (10,000 resamples); wins = units where A > B.", "",
                  "| A | B | metric | units | A | B | A − B | 95 % CI | A wins |", "|---|---|---|---|---|---|---|---|---|"]
        for a, b in pairs:
            for metric in ("UA", "WA"):
                res = paired(by_entry[a], by_entry[b], metric, a, b)
                paired_out.append(res.to_dict())
                lines.append(res.table_row())
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "benchmark.md", md)
    atomic_write_text(out / "benchmark.json", json.dumps({"identical_folds": same, "paired": paired_out, "rows": [
        {k: v for k, v in r.items() if k not in ("folds", "per_fold")} for r in rows]}, indent=2, default=str))
    if cell is None:
        print(md)
    return rows, same


def _per_corpus_lines(rows: list[dict]) -> list[str]:
    """Leave-one-corpus-out: UA per test corpus (each fold is one corpus), mean over seeds."""
    if "leave-one-corpus-out" not in rows[0]["protocol"].get("protocol", ""):
        return []
    tests = list(dict.fromkeys(", ".join(f["test_groups"]) for f in rows[0]["per_fold"]))
    lines = ["", "UA % per test corpus (trained on the other corpora):", "",
             "| method | upstream | " + " | ".join(tests) + " |", "|---|---|" + "---|" * len(tests)]
    for r in rows:
        ua = {t: [f["UA"] for f in r["per_fold"] if ", ".join(f["test_groups"]) == t] for t in tests}
        lines.append(f"| {r['entry'].split(' @ ')[0]} | {r['upstream'] or '-'} | "
                     + " | ".join(f"{100 * sum(v) / len(v):.2f}" if v else "-" for v in ua.values()) + " |")
    return lines


def run(args: argparse.Namespace) -> int:
    """``emoboost benchmark`` on one corpus, or on a cross-corpus / leave-one-corpus-out plan -> one table.
    (``--corpora`` and ``--cross-corpus`` loop over this: :mod:`emoboost.experiment.multicorpus`.)"""
    from emoboost.data.crosscorpus import corpus_plan

    pairs = _paired_entries(getattr(args, "paired", []) or [], _entry_names(args))
    plan = corpus_plan(getattr(args, "train", None), getattr(args, "test", None),
                       getattr(args, "leave_one_corpus_out", None))
    if plan and (args.corpus or args.data_root or args.manifest):
        raise ValueError("--corpus/--data-root/--manifest name one corpus; --train/--test and "
                         "--leave-one-corpus-out read each corpus from its default place")
    if not plan and getattr(args, "label_map", None):
        raise ValueError("--label-map maps the labels of several corpora: use it with --train/--test, "
                         "--leave-one-corpus-out, --corpora or --cross-corpus")
    plan = plan or {"corpus": args.corpus or "emodb"}
    name = plan.get("corpus") or "+".join(plan["corpora"])
    out = Path(args.out or f"runs/benchmark-{name}")
    with claim_dir(out, "benchmark"):  # its entries are run directories inside it, each claimed by its run
        _, same = run_table(args, out, plan, pairs)
    return 0 if same else 1
