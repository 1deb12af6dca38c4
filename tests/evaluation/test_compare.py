"""``emoboost compare`` on constructed run directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emoboost.cli import main
from emoboost.evaluation.compare import compare, load_run, parse_run_arg
from emoboost.evaluation.metrics import all_metrics

Y = [0, 0, 1, 1, 2, 2]


def make_run(root: Path, preds: list[list[int]], corpus: str = "toy", seed: int = 0, shift_ids: bool = False) -> Path:
    """A run directory whose fold f tested utterances f_0..f_5 with labels Y and predictions preds[f]."""
    (root / "folds").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"corpus": corpus, "method": "toy", "method_params": {"k": 1},
                                                  "upstream": None}))
    for f, yp in enumerate(preds):
        ids = [f"{f}_{i + (1 if shift_ids else 0)}" for i in range(len(Y))]
        m = all_metrics(np.array(Y), np.array(yp))
        (root / "folds" / f"fold{f:02d}_seed{seed}.json").write_text(json.dumps(
            {"fold": f, "seed": seed, "test_ids": ids, "y_true": Y, "y_pred": yp, "metrics": m}))
    return root


GOOD = [[0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 2], [0, 0, 1, 1, 2, 0]]
BAD = [[0, 0, 0, 1, 2, 0], [0, 1, 0, 1, 2, 2], [1, 0, 1, 1, 2, 0]]


def ua(yp: list[int]) -> float:
    return 100 * all_metrics(np.array(Y), np.array(yp))["UA"]


def test_side_by_side_and_paired_numbers_follow_the_fold_files(tmp_path):
    a = load_run("good", make_run(tmp_path / "a", GOOD))
    b = load_run("bad", make_run(tmp_path / "b", BAD))
    assert a.metrics["UA"][0] == pytest.approx(np.mean([ua(p) for p in GOOD]))
    assert a.pooled["UA"] == pytest.approx(100 * all_metrics(np.array(Y * 3), np.array(sum(GOOD, [])))["UA"])
    md, res = compare([b, a], [("good", "bad")], ("UA",), n_boot=2000)
    diffs = [ua(g) - ua(x) for g, x in zip(GOOD, BAD)]
    assert res[0].units == 3 and res[0].mean_diff == pytest.approx(np.mean(diffs))
    assert res[0].wins == sum(d > 0 for d in diffs)
    assert "identical folds**: yes" in md and f"{np.mean(diffs):+.2f}" in md
    row = next(line for line in md.splitlines() if line.startswith("| good |"))
    wa = 100 * np.mean([all_metrics(np.array(Y), np.array(p))["WA"] for p in GOOD])
    assert row.split(" | ")[4].startswith(f"{wa:.2f}")  # the WA column holds WA


def test_a_run_in_progress_is_paired_on_the_units_both_finished(tmp_path):
    a = load_run("a", make_run(tmp_path / "a", GOOD))
    b = load_run("b", make_run(tmp_path / "b", BAD[:2]))
    md, res = compare([a, b], [("b", "a")], ("UA",), n_boot=500)
    assert len(b.units) == 2 and res[0].units == 2
    assert res[0].mean_diff == pytest.approx(np.mean([ua(x) - ua(g) for g, x in zip(GOOD[:2], BAD[:2])]))


def test_runs_on_other_utterances_are_shown_but_never_paired(tmp_path):
    a = load_run("a", make_run(tmp_path / "a", GOOD))
    c = load_run("c", make_run(tmp_path / "c", BAD, shift_ids=True))
    md, res = compare([a, c], [])
    assert "NO for c" in md and res == []
    with pytest.raises(ValueError, match="cannot be paired"):
        compare([a, c], [("c", "a")])
    with pytest.raises(ValueError, match="no run labelled 'x'"):
        compare([a, c], [("x", "a")])
    with pytest.raises(ValueError, match="share a label"):
        compare([a, load_run("a", tmp_path / "c")], [])


def test_labels_and_bad_directories(tmp_path):
    assert parse_run_arg("base=runs/x") == ("base", Path("runs/x"))
    assert parse_run_arg("runs/x") == ("x", Path("runs/x"))
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        load_run("m", tmp_path / "missing")
    (tmp_path / "empty" / "folds").mkdir(parents=True)
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no finished folds"):
        load_run("e", tmp_path / "empty")


def test_command_line_pairs_every_run_with_the_first_and_writes_files(tmp_path, capsys):
    a, b = make_run(tmp_path / "a", GOOD), make_run(tmp_path / "b", BAD)
    out = tmp_path / "cmp.md"
    assert main(["compare", f"base={a}", f"other={b}", "--metric", "UA", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| other | base | UA | 3 |" in printed and out.read_text() == printed
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert [r["label"] for r in numbers["runs"]] == ["base", "other"] and numbers["paired"][0]["a"] == "other"
    assert main(["compare", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such run directory" in err
