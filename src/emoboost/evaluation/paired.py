"""Paired comparison of two runs on identical folds: per-(fold, seed) differences, a bootstrap CI, wins.

Two methods tested on the same folds with the same seeds give one difference per (fold, seed); those
differences, not the two fold-mean ± std columns, say whether A beats B (folds differ far more from
each other than the methods do). The 95 % interval resamples the (fold, seed) differences with
replacement (percentile bootstrap of their mean), so it reflects how much the verdict depends on
which speakers happened to be in the folds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

METRICS = ("UA", "WA", "macro_F1")


@dataclass
class PairedResult:
    """A − B for one metric, in percentage points."""

    a: str
    b: str
    metric: str
    units: int  # (fold, seed) pairs
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    wins: int  # units where A > B
    ties: int
    losses: int
    n_boot: int
    common: bool = False  # scored on the utterances both runs scored (one run's protocol left some out)

    def to_dict(self) -> dict:
        return asdict(self)

    def table_row(self) -> str:
        """One row of the Markdown table ``| A | B | metric | units | A | B | A − B | 95 % CI | A wins |``."""
        return (f"| {self.a} | {self.b} | {self.metric} | {self.units} | {self.mean_a:.2f} | {self.mean_b:.2f} | "
                f"{self.mean_diff:+.2f} | [{self.ci_low:+.2f}, {self.ci_high:+.2f}] | {self.wins}/{self.units} |")

    def line(self) -> str:
        sig = "excludes 0" if self.ci_low > 0 or self.ci_high < 0 else "includes 0"
        return (f"{self.a} − {self.b}, {self.metric}: {self.mean_diff:+.2f} pp "
                f"[95 % CI {self.ci_low:+.2f}, {self.ci_high:+.2f}; {sig}], A wins {self.wins}/{self.units} "
                f"(ties {self.ties})" + ("; on the utterances both scored" if self.common else ""))


def bootstrap_ci(diffs: np.ndarray, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampled with replacement)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no paired differences to bootstrap")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(int(n_boot), d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def fold_metrics(run_dir: str | Path, metric: str) -> dict[tuple[int, int], float]:
    """{(fold, seed): metric in %} from a run directory's ``folds/*.json``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    folds = Path(run_dir) / "folds"
    files = sorted(folds.glob("fold*_seed*.json"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no finished folds (folds/fold*_seed*.json)")
    out = {}
    for f in files:
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
            out[(int(d["fold"]), int(d["seed"]))] = 100.0 * float(d["metrics"][metric])
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{f}: unreadable fold result ({e!r})") from e
    return out


def _predictions(run_dir: str | Path) -> dict[tuple[int, int], dict[str, tuple[int, int]]]:
    """{(fold, seed): {utterance id: (true, predicted class)}} of a run's finished folds."""
    out = {}
    for f in sorted((Path(run_dir) / "folds").glob("fold*_seed*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        none = [None] * len(d["test_ids"])  # labels are read only when the runs scored different utterances
        out[(int(d["fold"]), int(d["seed"]))] = dict(zip(d["test_ids"], zip(d.get("y_true", none),
                                                                             d.get("y_pred", none))))
    return out


def _on(pred: dict[str, tuple[int, int]], ids: set[str], metric: str) -> float:
    """``metric`` in % of one unit's predictions, on the utterances ``ids`` only."""
    from emoboost.evaluation.metrics import all_metrics

    y = np.array([pred[i] for i in sorted(ids)])
    return 100.0 * all_metrics(y[:, 0], y[:, 1])[metric]


def paired(run_a: str | Path, run_b: str | Path, metric: str = "UA", a: str = "A", b: str = "B",
           n_boot: int = 10_000, seed: int = 0, common_only: bool = False) -> PairedResult:
    """A − B per (fold, seed) present in both runs, on the same utterances: where one run scored a subset of
    the other's (an ``adapt=enrol:K`` run does not score its enrolment clips), both on that subset.

    Both runs must have finished the same (fold, seed) units, unless ``common_only`` (runs still in
    progress: the units both finished are paired, and ``units`` says how many).
    """
    ma, mb = fold_metrics(run_a, metric), fold_metrics(run_b, metric)
    units = sorted(set(ma) & set(mb))
    if not units:
        raise ValueError(f"{run_a} and {run_b} share no (fold, seed): nothing to pair")
    if set(ma) != set(mb) and not common_only:
        only = sorted(set(ma) ^ set(mb))
        raise ValueError(f"{run_a} and {run_b} have different (fold, seed) sets (unmatched: {only}); "
                         f"finish both runs first")
    pa, pb = _predictions(run_a), _predictions(run_b)
    differ = [u for u in units if set(pa[u]) != set(pb[u])]
    bad = [u for u in differ if not (set(pa[u]) <= set(pb[u]) or set(pb[u]) <= set(pa[u]))]
    if bad:
        raise ValueError(f"{run_a} and {run_b} tested different utterances in (fold, seed) {bad[:3]}: not paired")
    for u in differ:  # one protocol scores fewer (enrolment clips are not scored): both on the common ones
        common = set(pa[u]) & set(pb[u])
        ma[u], mb[u] = _on(pa[u], common, metric), _on(pb[u], common, metric)
    da = np.array([ma[u] for u in units])
    db = np.array([mb[u] for u in units])
    diffs = da - db
    lo, hi = bootstrap_ci(diffs, n_boot, seed)
    return PairedResult(a, b, metric, len(units), float(da.mean()), float(db.mean()), float(diffs.mean()), lo, hi,
                        int((diffs > 0).sum()), int((diffs == 0).sum()), int((diffs < 0).sum()), int(n_boot),
                      bool(differ))
