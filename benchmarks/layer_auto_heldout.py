"""Held-out check of ``layer=auto``: our own pretrained encoders, which played no part in designing the rule.

    python benchmarks/layer_auto_heldout.py                      # pretrain (or reuse), run (or resume), print
    python benchmarks/layer_auto_heldout.py --summary            # print the table from finished runs only
    python benchmarks/layer_auto_heldout.py --upstreams A B      # reuse finished `emoboost pretrain` directories

The encoders are the seed-0 Mockingjay-small and NPC-small with random masking, pretrained by
``benchmarks/ems.py`` (stage ``pretrain``) under ``<out-root>/ems`` unless ``--upstreams`` names them.
Per corpus × encoder (each corpus under its default speaker-independent protocol, pooled store), logreg
runs with ``layer=auto`` and with every fixed choice auto can make (:func:`auto_candidates` of the
encoder's depth: each hidden state, each run of 2-3 adjacent ones). The table: auto's UA (fold mean ±
std), the best fixed choice picked in hindsight on the test folds, auto − that best and auto − the last
hidden state (the old default) paired per fold with 95 % bootstrap CIs, and whether auto is within 1 UA
of the hindsight best (the pre-registered criterion in docs/benchmarks.md). A second table lists every
fixed choice's UA and where auto's UA falls among them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ems  # noqa: E402  (the sibling scripts: pretraining, table runner, the layer=auto table's cells)
import layer_auto  # noqa: E402
import tables  # noqa: E402

from emoboost.methods.layer_choice import auto_candidates, layers_text  # noqa: E402
from emoboost.upstreams.identity import read_own_meta  # noqa: E402

CORPORA = layer_auto.CORPORA
ENCODERS = ("mockingjay", "npc")
MARGIN = 1.0  # UA: auto passes when its mean paired difference to the hindsight best is >= -MARGIN


def pretrained(out_root: str) -> list[str]:
    """Pretrain (or resume, or reuse) the seed-0 random-masking encoders under ``<out_root>/ems``."""
    out = Path(out_root) / "ems"
    ems.main(["--out", str(out), "--seeds", "0", "--strategies", "random", "--stages", "pretrain",
              "--models", *ENCODERS])
    return [str(out / "pretrain" / f"{m}-random-s0") for m in ENCODERS]


def depth(upstream: str) -> int:
    """How many hidden states a pretrained encoder has (its input embedding or first block counts)."""
    return int(read_own_meta(Path(upstream))["num_layers"])


def fixed_labels(upstream: str) -> list[str]:
    """The fixed runs ``layer=auto`` chooses among for this encoder, as table labels (``L2,3``)."""
    return [f"L{layers_text(c)}" for c in auto_candidates(depth(upstream))]


def table_name(corpus: str, upstream: str) -> str:
    return f"layer-auto-heldout-{corpus}-{Path(upstream).name}"


def register(corpus: str, upstream: str) -> str:
    """Add this corpus × encoder to ``tables.TABLES`` (its methods follow the encoder's depth) -> its name."""
    methods = ["auto=logreg:layer=auto"] + [f"{lab}=logreg:layer={lab[1:] if ',' not in lab else f'[{lab[1:]}]'}"
                                            for lab in fixed_labels(upstream)]
    name = table_name(corpus, upstream)
    tables.TABLES[name] = {"corpus": corpus, "upstreams": [upstream], "extra": ["--store", "pooled"],
                           "methods": methods}
    return name


def summary(out_root: str, upstreams: list[str]) -> str:
    from emoboost.evaluation.paired import fold_metrics

    head = ["| corpus | encoder | folds | auto | hindsight best fixed | auto − best [95 % CI] | last | "
            "auto − last [95 % CI] | within 1 UA | layers auto read (folds) | most frequent committee runs (folds) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    every = ["| corpus | encoder | auto's place among the fixed choices | every fixed choice, fold-mean UA (best first) |",
             "|---|---|---|---|"]
    passed = total = 0
    for corpus in CORPORA:
        for up in upstreams:
            root = Path(out_root) / table_name(corpus, up)
            labels = ["auto", *fixed_labels(up)]
            runs = {k: layer_auto._entry(root, k, up) for k in labels}
            if not all((r / "summary.json").is_file() for r in runs.values()):
                continue
            ua = {k: fold_metrics(r, "UA") for k, r in runs.items()}
            mean = {k: float(np.mean(list(v.values()))) for k, v in ua.items()}
            fixed = sorted(labels[1:], key=lambda k: -mean[k])
            best, last = fixed[0], f"L{depth(up) - 1}"
            d, lo, hi = layer_auto.paired(runs["auto"], runs[best])
            dl, lol, hil = layer_auto.paired(runs["auto"], runs[last])
            ok = d >= -MARGIN
            passed, total = passed + ok, total + 1
            chosen, member = layer_auto.choice_cells(runs["auto"])
            enc = Path(up).name
            head.append(f"| {corpus} | {enc} | {len(ua['auto'])} | {layer_auto.ua_cell(ua['auto'])} | "
                        f"{best[1:]}: {layer_auto.ua_cell(ua[best])} | {d:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
                        f"{last[1:]}: {layer_auto.ua_cell(ua[last])} | {dl:+.2f} [{lol:+.2f}, {hil:+.2f}] | "
                        f"{'yes' if ok else 'NO'} | {chosen} | {member} |")
            place = 1 + sum(mean[k] > mean["auto"] for k in fixed)
            every.append(f"| {corpus} | {enc} | {place} of {len(fixed) + 1} | " + ", ".join(f"{k[1:]} {mean[k]:.2f}" for k in fixed) + " |")
    return "\n".join([*head, "", f"within 1 UA of the hindsight best: {passed} of {total} corpus × encoder pairs",
                      "", *every])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-root", default="runs")
    ap.add_argument("--upstreams", nargs="+", help="finished `emoboost pretrain` directories (default: pretrain "
                    "the seed-0 random-masking Mockingjay-small and NPC-small under <out-root>/ems)")
    ap.add_argument("--summary", action="store_true", help="print the table from finished runs; run nothing")
    ap.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    args = ap.parse_args(argv)
    ups = args.upstreams or [str(Path(args.out_root) / "ems" / "pretrain" / f"{m}-random-s0") for m in ENCODERS]
    for up in ups if args.summary or args.upstreams else []:
        try:
            depth(up)
        except (OSError, ValueError) as e:  # not a finished `emoboost pretrain` directory: one line, no traceback
            ap.error(str(e))
    rc = 0
    if not args.summary:
        ups = args.upstreams or pretrained(args.out_root)
        for corpus in args.corpora:
            for up in ups:
                rc |= tables.main([register(corpus, up), "--out-root", args.out_root])
    print(summary(args.out_root, ups))
    return rc


if __name__ == "__main__":
    sys.exit(main())
