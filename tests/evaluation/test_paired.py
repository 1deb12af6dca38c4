"""Paired differences and their bootstrap interval on constructed runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emoboost.evaluation.paired import bootstrap_ci, paired


def fake_run(root: Path, ua: list[float], ids: list[list[str]] | None = None, seed: int = 0) -> Path:
    (root / "folds").mkdir(parents=True)
    for f, u in enumerate(ua):
        test_ids = ids[f] if ids else [f"u{f}_{i}" for i in range(3)]
        (root / "folds" / f"fold{f:02d}_seed{seed}.json").write_text(json.dumps(
            {"fold": f, "seed": seed, "test_ids": test_ids, "metrics": {"UA": u, "WA": u / 2, "macro_F1": u}}))
    return root


def test_differences_wins_and_interval(tmp_path):
    a = fake_run(tmp_path / "a", [0.80, 0.90, 0.70, 0.85])
    b = fake_run(tmp_path / "b", [0.75, 0.80, 0.72, 0.85])
    r = paired(a, b, "UA", "A", "B", n_boot=4000)
    assert r.units == 4 and (r.wins, r.ties, r.losses) == (2, 1, 1)
    assert r.mean_diff == pytest.approx(np.mean([5.0, 10.0, -2.0, 0.0]))
    assert r.ci_low <= r.mean_diff <= r.ci_high
    assert r.ci_low >= -2.0 - 1e-9 and r.ci_high <= 10.0 + 1e-9  # a mean of resampled units stays within them
    assert "A − B, UA: +3.25 pp" in r.line() and "includes 0" in r.line()
    assert paired(a, b, "WA").mean_diff == pytest.approx(r.mean_diff / 2)


def test_a_consistent_gain_excludes_zero():
    lo, hi = bootstrap_ci(np.array([1.0, 1.5, 2.0, 1.2, 0.8, 1.7, 1.1, 1.4]), n_boot=5000)
    assert 0 < lo < 1.34 < hi < 2.0
    lo, hi = bootstrap_ci(np.array([3.0, 3.0, 3.0]))
    assert lo == hi == 3.0
    with pytest.raises(ValueError, match="no paired differences"):
        bootstrap_ci(np.array([]))


def test_unpaired_runs_are_refused(tmp_path):
    a = fake_run(tmp_path / "a", [0.8, 0.9])
    with pytest.raises(ValueError, match="different .fold, seed. sets"):
        paired(a, fake_run(tmp_path / "b", [0.8, 0.9, 0.7]))
    with pytest.raises(ValueError, match="tested different utterances"):
        paired(a, fake_run(tmp_path / "c", [0.8, 0.9], ids=[["x"], ["y"]]))
    with pytest.raises(FileNotFoundError, match="no finished folds"):
        paired(a, tmp_path)
    with pytest.raises(ValueError, match="metric must be one of"):
        paired(a, a, "F1")


def test_a_run_that_scored_fewer_utterances_is_paired_on_those(tmp_path):
    """An enrolment protocol does not score its enrolment clips: the plain run is scored on the same ones."""
    def run(root, preds):  # one fold: {id: (true, predicted)}
        (root / "folds").mkdir(parents=True)
        ids = sorted(preds)
        y, p = [preds[i][0] for i in ids], [preds[i][1] for i in ids]
        (root / "folds" / "fold00_seed0.json").write_text(json.dumps(
            {"fold": 0, "seed": 0, "test_ids": ids, "y_true": y, "y_pred": p,
             "metrics": {"UA": float(np.mean(np.array(y) == np.array(p))), "WA": 0.0, "macro_F1": 0.0}}))
        return root

    full = {"a": (0, 0), "b": (0, 1), "c": (1, 1), "d": (1, 0)}  # the enrolment clips a, d: one right, one wrong
    enrol = run(tmp_path / "enrol", {"b": (0, 0), "c": (1, 1)})
    plain = run(tmp_path / "plain", full)
    r = paired(enrol, plain, "UA", "enrol", "none")
    assert r.common and (r.mean_a, r.mean_b) == (100.0, 50.0)  # none on b and c only: 1 of 2 classes right
    assert "on the utterances both scored" in r.line()
    assert not paired(plain, plain).common
    with pytest.raises(ValueError, match="tested different utterances"):  # overlapping, neither inside the other
        paired(enrol, run(tmp_path / "other", {"c": (1, 1), "e": (0, 0)}))
