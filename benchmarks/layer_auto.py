"""Does ``layer=auto`` transfer? The ``layer-auto-*`` tables of tables.py as one table, with each fold's choice.

    python benchmarks/layer_auto.py            # run (or resume) the three tables, then print the table
    python benchmarks/layer_auto.py --summary  # print it from the finished run directories only

Per corpus × encoder: logreg's UA (fold mean ± std) with ``layer=auto`` (layers and C chosen by inner
CV on each fold's training speakers), the fixed choices made on EmoDB with Whisper-base (hidden state
3; 2,3,4), and the old default (the last hidden state); auto − the better of the two EmoDB choices
(chosen in hindsight, on the test folds) as a paired difference per fold with a 95 % bootstrap CI; what
auto read in each fold (the union of its committee's runs; how many folds) and its most frequent
committee runs; and the summed fit time of auto and of a fixed layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (the sibling script: table definitions)

CORPORA = ("emodb", "ravdess", "casia")
FIXED = ("L3", "L2,3,4")  # the EmoDB choices auto is held against
CHOICE_KEY = "layers (layer=auto: inner CV on training speakers)"
COMMITTEE_KEY = "layer=auto committee"


def _entry(root: Path, label: str, up: str) -> Path:
    from emoboost.experiment.benchmark import entry_dir_name

    return root / entry_dir_name(f"{label} @ {up}")


def _fold_choices(run: Path) -> list[tuple[str, list[str]]]:
    """Per fold: (the layers read, the committee's runs) as the fold's report line recorded them."""
    out = []
    for f in sorted((run / "folds").glob("fold*_seed*.json")):
        m = json.loads(f.read_text())["info"].get("method") or {}
        members = [x.split(" (C=")[0].strip() for x in str(m.get(COMMITTEE_KEY) or "").split(";") if x.strip()]
        out.append((str(m.get(CHOICE_KEY)), members))
    return out


def ua_cell(ua: dict) -> str:
    """Fold mean ± std of ``{(fold, seed): UA}``."""
    v = list(ua.values())
    return f"{np.mean(v):.2f} ± {np.std(v):.2f}"


def paired(a: Path, b: Path) -> tuple[float, float, float]:
    """UA of run A − run B paired per (fold, seed): (mean, 95 % bootstrap CI low, high)."""
    from emoboost.evaluation.paired import paired as paired_runs

    p = paired_runs(a, b, "UA")
    return p.mean_diff, p.ci_low, p.ci_high


def choice_cells(run: Path, top: int = 4) -> tuple[str, str]:
    """What an auto run read in each fold, and its most frequent committee runs: ``x (folds), ...``."""
    choices = _fold_choices(run)
    chosen = ", ".join(f"{c} ({n})" for c, n in Counter(c for c, _ in choices).most_common())
    members = Counter(m for _, ms in choices for m in ms).most_common(top)
    return chosen, ", ".join(f"{m} ({n})" for m, n in members) or "-"


def summary(out_root: str = "runs") -> str:
    from emoboost.evaluation.paired import fold_metrics

    lines = ["| corpus | encoder | folds | auto | 3 | 2,3,4 | last | auto − best of (3; 2,3,4) [95 % CI] | "
             "layers auto read (folds) | most frequent committee runs (folds) | fit s: auto / 3 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for corpus in CORPORA:
        name = f"layer-auto-{corpus}"
        root = Path(out_root) / name
        for up in tables.TABLES[name]["upstreams"]:
            runs = {label.split("=", 1)[0]: _entry(root, label.split("=", 1)[0], up) for label in tables.LAYER_AUTO}
            if not all((r / "summary.json").is_file() for r in runs.values()):
                continue
            ua = {k: fold_metrics(r, "UA") for k, r in runs.items()}
            cell = {k: ua_cell(v) for k, v in ua.items()}
            best = max(FIXED, key=lambda k: np.mean(list(ua[k].values())))
            d, lo, hi = paired(runs["auto"], runs[best])
            chosen, member = choice_cells(runs["auto"])
            fit = {k: json.loads((r / "summary.json").read_text())["summary"]["timings_total_s"].get("fit_s", 0.0)
                   for k, r in runs.items()}
            lines.append(f"| {corpus} | {up} | {len(ua['auto'])} | {cell['auto']} | {cell['L3']} | {cell['L2,3,4']} | "
                         f"{cell['last']} | {d:+.2f} [{lo:+.2f}, {hi:+.2f}] vs {best[1:]} | {chosen} | {member} | "
                         f"{fit['auto']:.0f} / {fit['L3']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-root", default="runs")
    ap.add_argument("--summary", action="store_true", help="print the table from finished runs; run nothing")
    ap.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    args = ap.parse_args(argv)
    rc = 0
    if not args.summary:
        for corpus in args.corpora:
            rc |= tables.main([f"layer-auto-{corpus}", "--out-root", args.out_root])
    print(summary(args.out_root))
    return rc


if __name__ == "__main__":
    sys.exit(main())
