"""``emoboost compare``: finished run directories side by side, with paired differences.

``benchmark`` runs several methods on identical folds and tabulates them; ``compare`` does the same
for runs that already exist (made by ``run``, ``benchmark`` or a recipe, on this machine or another),
without training anything. Every number is recomputed from the runs' fold files, so a run still in
progress is shown with the (fold, seed) units it has finished, and the table says so.

A paired difference needs both runs to have tested the same utterances in each (fold, seed): runs
on other corpora, protocols or file sets are refused for pairing (the side-by-side table still shows
them, marked). Differences are taken on the units both runs finished, and the table gives that count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoboost.evaluation.metrics import all_metrics, mean_std
from emoboost.evaluation.paired import METRICS, PairedResult, paired


@dataclass
class RunSummary:
    label: str
    path: Path
    corpus: str
    method: str
    upstream: str
    units: list[tuple[int, int]]
    seeds: list[int]
    metrics: dict[str, tuple[float, float]]  # metric -> (mean, std) over units, in %
    pooled: dict[str, float]  # metric -> pooled over each seed's test utterances, mean over seeds, in %
    test_ids: dict[tuple[int, int], list[str]]

    def row(self) -> dict:
        return {"label": self.label, "run_dir": str(self.path), "corpus": self.corpus, "method": self.method,
                "upstream": self.upstream, "units": len(self.units), "seeds": self.seeds,
                **{m: {"mean": mu, "std": sd} for m, (mu, sd) in self.metrics.items()},
                "pooled": self.pooled}


def parse_run_arg(arg: str) -> tuple[str, Path]:
    """``label=path`` or ``path`` (labelled by its folder name)."""
    label, sep, path = arg.partition("=")
    if sep and label and not Path(arg).exists():
        return label, Path(path)
    return Path(arg).name or arg, Path(arg)


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable {what} ({e})") from e


def load_run(label: str, path: str | Path) -> RunSummary:
    """A run directory's finished folds, summarised as ``run`` summarises them."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    cfg = _read_json(path / "config.json", "run config")
    files = sorted((path / "folds").glob("fold*_seed*.json"))
    if not files:
        raise ValueError(f"{path}: no finished folds yet (folds/fold*_seed*.json)")
    folds = [_read_json(f, "fold result") for f in files]
    try:
        units = [(int(d["fold"]), int(d["seed"])) for d in folds]
        per_unit = [all_metrics(np.asarray(d["y_true"]), np.asarray(d["y_pred"])) for d in folds]
        test_ids = {u: list(d["test_ids"]) for u, d in zip(units, folds)}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: a fold result lacks its predictions ({e!r})") from e
    seeds = sorted({s for _, s in units})
    metrics = {m: tuple(100.0 * v for v in mean_std([p[m] for p in per_unit])) for m in METRICS}
    pooled = {}
    for m in METRICS:
        per_seed = []
        for seed in seeds:
            ds = [d for d, (_, s) in zip(folds, units) if s == seed]
            per_seed.append(all_metrics(np.concatenate([d["y_true"] for d in ds]),
                                        np.concatenate([d["y_pred"] for d in ds]))[m])
        pooled[m] = 100.0 * float(np.mean(per_seed))
    params = cfg.get("method_params") or {}
    method = str(cfg.get("method", "?")) + (f" {json.dumps(params, sort_keys=True)}" if params else "")
    return RunSummary(label, path, str(cfg.get("corpus", "?")), method, str(cfg.get("upstream") or "-"), units,
                      seeds, metrics, pooled, test_ids)


def same_folds(a: RunSummary, b: RunSummary) -> bool:
    """Both runs tested the same utterances in every (fold, seed) they share (and share at least one)."""
    shared = set(a.units) & set(b.units)
    return bool(shared) and all(sorted(a.test_ids[u]) == sorted(b.test_ids[u]) for u in shared)


def compare(runs: list[RunSummary], pairs: list[tuple[str, str]], metrics: tuple[str, ...] = ("UA", "WA"),
            n_boot: int = 10_000) -> tuple[str, list[PairedResult]]:
    """Markdown: the runs side by side, then A − B for each pair on the units both finished."""
    by_label = {r.label: r for r in runs}
    if len(by_label) != len(runs):
        raise ValueError("two runs share a label; name them label=path")
    for a, b in pairs:
        for x in (a, b):
            if x not in by_label:
                raise ValueError(f"--paired {a} {b}: no run labelled {x!r} (labels: {', '.join(by_label)})")
    base = runs[0]
    lines = ["# emoboost compare", ""]
    corpora = sorted({r.corpus for r in runs})
    lines.append(f"- **corpus**: {', '.join(corpora)}" + (" (**different corpora**)" if len(corpora) > 1 else ""))
    odd = [r.label for r in runs[1:] if not same_folds(base, r)]
    lines.append(f"- **identical folds**: {'yes' if not odd else 'NO for ' + ', '.join(odd) + ' (not paired with ' + base.label + ')'}")
    lines += ["- WA/UA/macro-F1: mean ± std over (fold, seed) units; pooled: over each seed's test utterances, "
              "mean over seeds; recomputed from each run's fold files.", "",
              "| run | method | upstream | units | WA % | UA % | macro-F1 % | pooled WA % | pooled UA % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cells = [f"{r.metrics[m][0]:.2f} ± {r.metrics[m][1]:.2f}" for m in ("WA", "UA", "macro_F1")]
        lines.append(f"| {r.label} | {r.method} | {r.upstream} | {len(r.units)} | {' | '.join(cells)} | "
                     f"{r.pooled['WA']:.2f} | {r.pooled['UA']:.2f} |")
    results = []
    if pairs:
        lines += ["", "Paired differences A − B per (fold, seed) on the units both runs finished, percentage points; "
                  f"95 % CI = percentile bootstrap of the mean ({n_boot:,} resamples); wins = units where A > B.", "",
                  "| A | B | metric | units | A | B | A − B | 95 % CI | A wins |", "|---|---|---|---|---|---|---|---|---|"]
        for a, b in pairs:
            ra, rb = by_label[a], by_label[b]
            if not same_folds(ra, rb):
                raise ValueError(f"{ra.path} and {rb.path} did not test the same utterances per (fold, seed): "
                                 f"they cannot be paired (other corpus, protocol or skipped files?)")
            for m in metrics:
                res = paired(ra.path, rb.path, m, a, b, n_boot=n_boot, common_only=True)
                results.append(res)
                lines.append(res.table_row())
    return "\n".join(lines) + "\n", results
