"""Speaker adaptation: UA of every ``adapt=`` protocol against no adaptation, paired, on EmoDB, RAVDESS and CASIA.

Each corpus runs under its own default speaker-independent protocol (EmoDB 10-fold leave-one-speaker-out,
RAVDESS 6 actor folds, CASIA 4-fold leave-one-speaker-out), Whisper-base hidden states 2, 3, 4 pooled and
concatenated, logistic regression (C by inner speaker-grouped CV), one run directory per protocol:

* ``none`` (no adaptation), ``transductive`` (``speaker_norm=speaker``: a test speaker's own statistics, the
  scored utterance included), ``loo`` — one draw;
* ``enrol:K`` for K in 1, 2, 5, 10, 20 and ``online`` — seeds 0-4 (five enrolment draws / orders);
* ``enrol:K:skewed`` and ``online:skewed`` — seeds 0..C-1: the enrolment (online: the first clips) from
  one emotion topped up from the next, every emotion in turn.

Each row: UA (mean over draws of the fold-mean UA, ± the std over draws; one-draw rows: ± over folds), and
the paired difference against ``none`` on the *same scored utterances* per (fold, draw), with its 95 %
percentile-bootstrap CI (10,000 resamples of the (fold, draw) differences). Online rows also by position
of the clip in its speaker's order (clips heard before it + 1), pooled over folds and draws, with a CI from
resampling test speakers. ``--print`` shows the ``emoboost run`` commands; finished runs are reused.

    python benchmarks/speaker_adaptation.py --out-root runs [--corpora emodb ravdess casia]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

KS = (1, 2, 5, 10, 20)
DRAWS = (0, 1, 2, 3, 4)
BUCKETS = ((1, 1), (2, 5), (6, 10), (11, 20), (21, 10**9))
BASE = {"layer": [2, 3, 4]}
LAM = "emotion correction lam (inner CV on training speakers)"  # the report key (methods.adaptation)


def entries(n_classes: int) -> list[tuple[str, dict, list[int]]]:
    """(name, method parameters beyond BASE, seeds) of every row."""
    skew = list(range(n_classes))
    rows = [("none", {}, [0]), ("transductive", {"speaker_norm": "speaker"}, [0]), ("loo", {"adapt": "loo"}, [0])]
    rows += [(f"enrol:{k}", {"adapt": f"enrol:{k}"}, list(DRAWS)) for k in KS]
    rows += [("online", {"adapt": "online"}, list(DRAWS))]
    rows += [(f"enrol:{k}:skewed", {"adapt": f"enrol:{k}:skewed"}, skew) for k in KS]
    return rows + [("online:skewed", {"adapt": "online:skewed"}, skew)]


def run_dir(root: Path, corpus: str, name: str) -> Path:
    return root / "speaker-adaptation" / corpus / name.replace(":", "-")


def command(corpus: str, params: dict, seeds: list[int], out: Path) -> list[str]:
    argv = ["--threads", "1", "run", "--corpus", corpus, "--upstream", "whisper-base", "--method", "logreg",
            "--store", "pooled", "--no-progress", "--out", str(out), "--seeds", *map(str, seeds)]
    for k, v in {**BASE, **params}.items():
        argv += ["-p", f"{k}={json.dumps(v).replace(' ', '') if isinstance(v, list) else v}"]
    return argv + ["--no-save-models"]


def fold_results(d: Path) -> dict[tuple[int, int], dict]:
    return {(r["fold"], r["seed"]): r for r in (json.loads(f.read_text()) for f in sorted((d / "folds").glob("*.json")))}


def ua(y: np.ndarray, pred: np.ndarray) -> float:
    from emoboost.evaluation.metrics import unweighted_accuracy

    return 100.0 * unweighted_accuracy(y, pred)


def positions(d: Path, r: dict, n_classes: int) -> np.ndarray:
    """1-based position of each scored utterance of an online fold result in its speaker's order."""
    from emoboost.data.manifest import Manifest
    from emoboost.methods.adapt_protocol import parse_adapt, plan

    man = {u.id: u for u in Manifest.read(d / "manifest.jsonl")}
    test = next(f["test_ids"] for f in json.loads((d / "folds.json").read_text()) if f["index"] == r["fold"])
    classes = sorted({u.label for u in man.values()})
    cfg = json.loads((d / "config.json").read_text())
    p = plan(parse_adapt(cfg["method_params"]["adapt"]), np.array([man[i].speaker for i in test], dtype=object),
             np.array([classes.index(man[i].label) for i in test]), r["seed"], n_classes)
    if [test[i] for i in p.scored] != r["test_ids"]:
        raise ValueError(f"{d}: fold {r['fold']} seed {r['seed']}: scored utterances differ from the plan")
    return p.positions + 1


def table(root: Path, corpus: str) -> tuple[list[str], dict]:
    """Markdown rows of one corpus and the numbers the targets are checked on."""
    from emoboost.evaluation.paired import bootstrap_ci

    base = fold_results(run_dir(root, corpus, "none"))
    none = {i: (t, p) for r in base.values() for i, t, p in zip(r["test_ids"], r["y_true"], r["y_pred"])}
    n_classes = len({t for t, _ in none.values()})
    from emoboost.data.manifest import Manifest

    speaker = {u.id: u.speaker for u in Manifest.read(run_dir(root, corpus, "none") / "manifest.jsonl")}
    lines, gains = [], {}
    for name, _, _ in entries(n_classes):
        d = run_dir(root, corpus, name)
        res = fold_results(d) if (d / "summary.json").is_file() else {}
        if not res:
            lines.append(f"| {name} | not run | | | | |")
            continue
        units = sorted(res)
        a = {u: ua(np.array(res[u]["y_true"]), np.array(res[u]["y_pred"])) for u in units}
        b = {u: ua(np.array([none[i][0] for i in res[u]["test_ids"]]), np.array([none[i][1] for i in res[u]["test_ids"]]))
             for u in units}
        diffs = np.array([a[u] - b[u] for u in units])
        lo, hi = bootstrap_ci(diffs)
        per_draw = [np.mean([a[u] for u in units if u[1] == s]) for s in sorted({u[1] for u in units})]
        spread = np.std(per_draw) if len(per_draw) > 1 else np.std(list(a.values()))
        what = f"{len(per_draw)} draws" if len(per_draw) > 1 else f"{len(units)} folds"
        gains[name] = (float(diffs.mean()), lo, hi)
        lam = [res[u]["info"]["method"].get(LAM) for u in units if res[u]["info"]["method"].get(LAM) is not None]
        lam_cell = ", ".join(f"{v:g}: {lam.count(v)}" for v in sorted(set(lam))) if lam else "—"
        lines.append(f"| {name} | {np.mean(per_draw):.2f} ± {spread:.2f} ({what}) | {diffs.mean():+.2f} | "
                     f"[{lo:+.2f}, {hi:+.2f}] | {len(units)} | {lam_cell} |")
        if name.startswith("online"):
            lines += _buckets(d, res, none, speaker, n_classes, name)
    return lines, gains


def _buckets(d: Path, res: dict, none: dict, speaker: dict, n_classes: int, name: str) -> list[str]:
    """Online rows by position bucket: pooled UA, paired with none, CI from resampling test speakers."""
    rows = []
    for u, r in sorted(res.items()):
        for i, t, p, pos in zip(r["test_ids"], r["y_true"], r["y_pred"], positions(d, r, n_classes)):
            rows.append((speaker[i], u[1], pos, t, p, none[i][1]))
    arr = np.array([(s, seed, pos, t, p, q) for s, seed, pos, t, p, q in rows], dtype=object)
    out = []
    rng = np.random.default_rng(0)
    spk = np.array(sorted({r[0] for r in rows}), dtype=object)
    for lo_, hi_ in BUCKETS:
        sel = arr[(arr[:, 2] >= lo_) & (arr[:, 2] <= hi_)]
        if not len(sel):
            continue
        y, p, q = (sel[:, k].astype(int) for k in (3, 4, 5))
        diff = ua(y, p) - ua(y, q)
        by = {s: np.flatnonzero(sel[:, 0] == s) for s in spk}
        boots = []
        for _ in range(2000):
            idx = np.concatenate([by[s] for s in rng.choice(spk, len(spk))])
            if len(idx):
                boots.append(ua(y[idx], p[idx]) - ua(y[idx], q[idx]))
        ci = np.quantile(boots, [0.025, 0.975])
        label = f"{lo_}" if lo_ == hi_ else (f"{lo_}–{hi_}" if hi_ < 10**9 else f"> {lo_ - 1}")
        out.append(f"| {name}, clip {label} | {ua(y, p):.2f} (pooled, {len(sel)} scored) | {diff:+.2f} | "
                   f"[{ci[0]:+.2f}, {ci[1]:+.2f}] (speakers) | {len(sel)} | |")
    return out


def targets(gains: dict, root: Path, corpus: str) -> list[str]:
    """The estimator's three targets, checked on the numbers above."""
    from emoboost.evaluation.paired import paired

    out = []
    if {"loo", "transductive"} <= set(gains):
        d = gains["loo"][0] - gains["transductive"][0]
        p = paired(run_dir(root, corpus, "loo"), run_dir(root, corpus, "transductive"), "UA")
        out.append(f"loo − transductive: {d:+.2f} UA, paired per fold [95 % CI {p.ci_low:+.2f}, {p.ci_high:+.2f}] "
                   f"({'met' if d >= -0.5 else 'NOT met'}: within 0.5)")
    lower = [n for n, (_, _, hi) in gains.items() if n.startswith("enrol") and hi < 0]
    out.append("no enrol:K below none beyond the CI: " + ("met" if not lower else f"NOT met ({', '.join(lower)})"))
    if {"enrol:10", "loo"} <= set(gains) and gains["loo"][0] > 0:
        share = 100 * gains["enrol:10"][0] / gains["loo"][0]
        out.append(f"enrol:10 keeps {share:.0f} % of the loo gain ({'met' if share >= 70 else 'NOT met'}: >= 70 %)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-root", default="runs")
    ap.add_argument("--corpora", nargs="+", default=["emodb", "ravdess", "casia"])
    ap.add_argument("--print", action="store_true", help="print the emoboost run commands, run nothing")
    ap.add_argument("--table-only", action="store_true", help="only the table, from finished runs")
    args = ap.parse_args(argv)
    from emoboost.cli import main as emoboost
    from emoboost.data.corpora import get_corpus

    root = Path(args.out_root)
    rc = 0
    for corpus in args.corpora:
        n_classes = len(get_corpus(corpus).INFO.classes)
        for name, params, seeds in entries(n_classes):
            out = run_dir(root, corpus, name)
            cmd = command(corpus, params, seeds, out)
            print("emoboost " + " ".join(shlex.quote(c) for c in cmd), flush=True)
            if not (args.print or args.table_only or (out / "summary.json").is_file()):
                rc |= emoboost(cmd)
    if args.print:
        return rc
    for corpus in args.corpora:
        lines, gains = table(root, corpus)
        print(f"\n### {corpus}\n\n| protocol | UA % | Δ UA vs none | 95 % CI | units | λ chosen: units |\n"
              f"|---|---|---|---|---|---|")
        print("\n".join(lines))
        print("\n" + "\n".join(f"- {t}" for t in targets(gains, root, corpus)))
        wall = sum(json.loads(f.read_text())["total_s"] for f in (root / "speaker-adaptation" / corpus).glob("*/timings.json"))
        print(f"- wall time of the {corpus} runs: {wall:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
