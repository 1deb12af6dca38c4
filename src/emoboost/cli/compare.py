"""``emoboost compare``: finished run directories side by side, paired with the first."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emoboost.evaluation.compare import compare, load_run, parse_run_arg, same_folds
from emoboost.evaluation.paired import METRICS
from emoboost.utils import atomic_write_text


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories, each as PATH or LABEL=PATH; the first is "
                   "the baseline the others are paired with unless --paired is given")
    p.add_argument("--paired", nargs=2, action="append", metavar=("A", "B"), default=[],
                   help="pair run A with run B (labels); repeatable. Default: every run against the first")
    p.add_argument("--metric", choices=METRICS, action="append", help="metric(s) to pair (default UA and WA)")
    p.add_argument("--out", help="also write the table to this Markdown file (and the numbers beside it as .json)")


def main(args: argparse.Namespace) -> int:
    runs = [load_run(*parse_run_arg(a)) for a in args.runs]
    pairs = [tuple(p) for p in args.paired] or [(r.label, runs[0].label) for r in runs[1:]
                                                 if same_folds(runs[0], r)]
    md, results = compare(runs, pairs, tuple(args.metric or ("UA", "WA")))
    print(md, end="")
    if args.out:
        out = Path(args.out)
        atomic_write_text(out, md)
        atomic_write_text(out.with_suffix(".json"), json.dumps(
            {"runs": [r.row() for r in runs], "paired": [p.to_dict() for p in results]}, indent=2))
    return 0
