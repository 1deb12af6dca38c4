"""Accuracy of finished benchmark rows split by clip duration, from their fold files (no training).

Why: at the last layer masking the padded frames lowers MS-EmoBoost's uniform baseline, at the best
layer it raises it. A clip of at most one window (3 s) has no tail window, so a gap there cannot come
from how tail windows are averaged; it must come from the window itself (the unmasked mean is the
masked one scaled by the real-frame fraction, a duration cue).

    python benchmarks/by_duration.py runs/bench/msemoboost-seeds-last-emodb none none-masked
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emoboost.evaluation.metrics import unweighted_accuracy, weighted_accuracy  # noqa: E402


def row_predictions(table: Path, row: str) -> tuple[dict[str, float], list[tuple[str, int, int]]]:
    """(clip durations by id, (id, true, predicted) over every finished fold and seed of one row)."""
    run = next(iter(sorted(table.glob(f"{row}__*"))), None) or table / row
    if not (run / "folds").is_dir():
        raise SystemExit(f"{run}: no finished folds")
    dur = {}
    for line in (run / "manifest.jsonl").read_text().splitlines():
        u = json.loads(line)
        dur[u["id"]] = float(u["duration"])
    preds = []
    for f in sorted((run / "folds").glob("fold*_seed*.json")):
        r = json.loads(f.read_text())
        preds += list(zip(r["test_ids"], r["y_true"], r["y_pred"]))
    return dur, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", help="a benchmark directory (runs/bench/NAME)")
    ap.add_argument("rows", nargs="+", help="entry labels, e.g. none none-masked")
    ap.add_argument("--split", type=float, default=3.0, help="seconds: clips up to this vs longer (default 3)")
    args = ap.parse_args()
    print(f"| row | clips ≤ {args.split:g} s: n, WA, UA | clips > {args.split:g} s: n, WA, UA |")
    print("|---|---|---|")
    for row in args.rows:
        dur, preds = row_predictions(Path(args.table), row)
        cells = []
        for short in (True, False):
            sel = [(t, p) for i, t, p in preds if (dur[i] <= args.split) == short]
            y, yp = np.array([t for t, _ in sel]), np.array([p for _, p in sel])
            cells.append(f"{len(sel)}, {100 * weighted_accuracy(y, yp):.2f}, {100 * unweighted_accuracy(y, yp):.2f}")
        print(f"| {row} | {cells[0]} | {cells[1]} |")
    print("\n(n counts (clip, seed) predictions pooled over folds and seeds)")


if __name__ == "__main__":
    main()
