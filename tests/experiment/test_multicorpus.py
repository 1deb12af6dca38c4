"""Benchmarks over several corpora: --corpora (one table, mean column), --cross-corpus, and the corpus
protocols through benchmark and run (--train/--test, --leave-one-corpus-out), on two tiny corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders import tiny_casia, tiny_corpus, tiny_wav2vec2
from emoboost.cli import main

METHODS = ["l1=logreg:layer=1", "l2=logreg:layer=2"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data root holding emodb/ and casia/, a tiny encoder, a shared feature cache)."""
    root = tmp_path_factory.mktemp("data")
    tiny_corpus(root / "emodb")  # 4 speakers x anger/sadness/neutral (+ one broken file)
    tiny_casia(root / "casia")  # 3 speakers x angry/sad/neutral/surprise
    up = tiny_wav2vec2(tmp_path_factory.mktemp("up") / "w2v2")
    return root, up, tmp_path_factory.mktemp("cache")


@pytest.fixture
def bench(setup, monkeypatch):
    root, up, cache = setup
    monkeypatch.setenv("EMOBOOST_DATA", str(root))  # every corpus from its default place

    def run(*argv: str, methods=METHODS) -> int:
        return main(["benchmark", *argv, "--upstreams", str(up), "--cache-dir", str(cache), "--no-progress",
                     "--no-save-models", "--store", "pooled", "--methods", *methods])
    return run


def _json(p):
    return json.loads(p.read_text())


def test_corpora_one_table_each_corpus_its_own_protocol(bench, tmp_path, capsys):
    out = tmp_path / "multi"
    assert bench("--corpora", "emodb", "casia", "--out", str(out)) == 0
    res = _json(out / "benchmark.json")
    assert res["corpora"] == ["emodb", "casia"] and res["identical_folds"] == {"emodb": True, "casia": True}
    # each corpus ran in its own sub-folder exactly as `--corpus X` would: own labels, own default protocol
    for corpus, n_folds, classes in (("emodb", 4, "3 (anger, neutral, sadness)"),
                                     ("casia", 3, "4 (angry, neutral, sad, surprise)")):
        sub = _json(out / corpus / "benchmark.json")
        assert [r["entry"] for r in sub["rows"]] == [f"{m.split('=')[0]} @ {r['upstream']}" for m, r in
                                                     zip(METHODS, sub["rows"])]
        assert sub["rows"][0]["protocol"]["classes"] == classes
        assert "leave-one-speaker-out" in sub["rows"][0]["protocol"]["protocol"]
        assert len(_json(Path(sub["rows"][0]["run_dir"]) / "folds.json")) == n_folds
    for row in res["rows"]:
        ua = [row["corpora"][c]["UA"]["mean"] for c in ("emodb", "casia")]
        pooled = [row["corpora"][c]["pooled_UA"] for c in ("emodb", "casia")]
        assert row["mean_UA"] == pytest.approx(sum(ua) / 2) and row["mean_pooled_UA"] == pytest.approx(sum(pooled) / 2)
        assert row["corpora"]["emodb"]["run_dir"].startswith(str(out / "emodb"))
    md = (out / "benchmark.md").read_text()
    assert "| method | upstream | emodb UA | emodb pooled UA | casia UA | casia pooled UA | mean UA | mean pooled UA |" in md
    r = res["rows"][0]
    assert f"| l1 | {r['upstream']} | " in md and f"| {100 * r['mean_UA']:.2f} | {100 * r['mean_pooled_UA']:.2f} |" in md
    # the emodb cell is the single-corpus benchmark: the same folds and numbers as `--corpus emodb`
    single = tmp_path / "single"
    assert bench("--corpus", "emodb", "--out", str(single)) == 0
    one = _json(single / "benchmark.json")["rows"]
    assert [x["UA"] for x in one] == [x["UA"] for x in _json(out / "emodb" / "benchmark.json")["rows"]]
    capsys.readouterr()


def test_corpora_with_classes_uses_common_names(bench, tmp_path):
    out = tmp_path / "multi"
    assert bench("--corpora", "emodb", "casia", "--classes", "anger", "sadness", "--out", str(out),
                 methods=METHODS[:1]) == 0
    casia = _json(out / "casia" / "benchmark.json")["rows"][0]["protocol"]
    assert casia["classes"] == "2 (anger, sadness)"
    assert casia["classes left out"] == "casia: neutral (9), surprise (9)"
    assert "casia: angry→anger, sad→sadness" in casia["label map"]


def test_cross_corpus_matrix(bench, tmp_path, capsys):
    out = tmp_path / "cross"
    assert bench("--cross-corpus", "emodb", "casia", "--out", str(out)) == 0
    cells = sorted(str(p.relative_to(out)) for p in out.glob("*/*") if (p / "benchmark.json").is_file())
    assert cells == ["casia/from-emodb", "casia/in-corpus", "emodb/from-casia", "emodb/in-corpus"]
    res = _json(out / "benchmark.json")
    assert res["merge"]["classes"] == ["anger", "neutral", "sadness"]  # shared; casia's surprise left out
    assert res["merge"]["left out"] == {"emodb": {}, "casia": {"surprise": 9}}
    for d, test, train in (("emodb/from-casia", "emodb", "casia"), ("casia/from-emodb", "casia", "emodb")):
        run_dir = next(p for p in (out / d).iterdir() if p.is_dir() and p.name.startswith("l1"))
        (fold,) = _json(run_dir / "folds.json")
        assert fold["test_groups"] == [test] and fold["train_corpora"] == [train]
        assert all(i.startswith(f"{test}/") for i in fold["test_ids"]) and fold["valid_by"] == "speakers"
        assert fold["n_valid"] > 0  # validation: a held-out speaker of the training corpus
        manifest = [json.loads(line) for line in (run_dir / "manifest.jsonl").read_text().splitlines()]
        train_ids = {u["id"] for u in manifest} - set(fold["test_ids"])
        assert train_ids and all(i.startswith(f"{train}/") for i in train_ids)
        assert {u["label"] for u in manifest} == {"anger", "neutral", "sadness"}
        summary = _json(run_dir / "summary.json")["protocol"]
        assert summary["classes left out"] == "casia: surprise (9)"
        assert f"trained on {train}, tested on {test}" in summary["protocol"]
    in_corpus = _json(next((out / "casia" / "in-corpus").glob("l1*")) / "summary.json")["protocol"]
    assert in_corpus["classes"] == "3 (anger, neutral, sadness)" and "leave-one-speaker-out" in in_corpus["protocol"]
    md = (out / "benchmark.md").read_text()
    assert "| method | upstream | test corpus | in-corpus UA | in-corpus pooled UA | trained on emodb | trained on casia |" in md
    row = next(r for r in res["rows"] if r["test"] == "casia" and r["entry"].startswith("l1"))
    assert set(row["cross_UA"]) == {"emodb"}
    assert f"| casia | {100 * row['in_corpus_UA']['mean']:.2f} ± " in md
    assert f"| — | {100 * row['cross_UA']['emodb']:.2f} |" not in md  # emodb column comes first for casia
    assert f"| {100 * row['cross_UA']['emodb']:.2f} | — |" in md
    capsys.readouterr()


def test_train_test_and_leave_one_corpus_out_tables(bench, tmp_path, capsys):
    out = tmp_path / "loco"
    assert bench("--leave-one-corpus-out", "emodb", "casia", "--out", str(out), methods=METHODS[:1]) == 0
    md = (out / "benchmark.md").read_text()
    assert "2-fold leave-one-corpus-out (emodb, casia)" in md and "UA % per test corpus" in md
    assert "| method | upstream | emodb | casia |" in md
    assert "- **classes left out**: casia: surprise (9)" in md
    out = tmp_path / "tt"
    assert bench("--train", "casia", "--test", "emodb", "--out", str(out), methods=METHODS[:1]) == 0
    md = (out / "benchmark.md").read_text()
    assert "cross-corpus: trained on casia, tested on emodb (1 fold)" in md
    capsys.readouterr()


def test_run_takes_the_same_flags(setup, monkeypatch, tmp_path, capsys):
    root, up, cache = setup
    monkeypatch.setenv("EMOBOOST_DATA", str(root))
    rc = main(["run", "--train", "emodb", "--test", "casia", "--method", "logreg", "-p", "layer=1", "--upstream",
               str(up), "--cache-dir", str(cache), "--out", str(tmp_path / "r"), "--no-progress", "--store", "pooled"])
    assert rc == 0
    corpora = _json(tmp_path / "r" / "corpora.json")
    assert corpora["classes"] == ["anger", "neutral", "sadness"] and corpora["left out"]["casia"] == {"surprise": 9}
    assert "- **corpus**: emodb → casia" in capsys.readouterr().out


@pytest.mark.parametrize("argv, error", [
    (["--corpora", "emodb", "casia", "--corpus", "emodb"], "--corpus cannot go with it"),
    (["--corpora", "emodb"], "--corpora needs at least 2 corpora"),
    (["--cross-corpus", "emodb", "casia", "--protocol", "loso"], "--protocol cannot go with it"),
    (["--train", "emodb"], "--train and --test go together"),
    (["--train", "emodb", "--test", "emodb"], "corpus emodb named twice"),
    (["--train", "emodb", "--test", "casia", "--protocol", "loso"], "--protocol loso does not apply"),
    (["--corpus", "emodb", "--label-map", "m.yaml"], "--label-map maps the labels of several corpora"),
    (["--train", "emodb", "--test", "casia", "--classes", "anger", "surprise"], "emodb has no 'surprise'"),
])
def test_refusals_are_one_line_before_anything_runs(bench, tmp_path, capsys, argv, error):
    out = tmp_path / "b"
    assert bench(*argv, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert error in err and len(err.splitlines()) == 1
    assert not any(out.rglob("*.json"))


def test_train_after_cross_corpus_cv_learns_from_the_training_corpora_only(setup, monkeypatch, tmp_path, capsys):
    root, up, cache = setup
    monkeypatch.setenv("EMOBOOST_DATA", str(root))
    out = tmp_path / "model"
    rc = main(["train", "--train", "casia", "--test", "emodb", "--method", "logreg", "-p", "layer=1", "--upstream",
               str(up), "--cache-dir", str(cache), "--out", str(out), "--no-progress", "--store", "pooled"])
    assert rc == 0
    bundle = _json(out / "bundle.json")
    assert bundle["training"]["corpora"] == ["casia"]
    assert bundle["training"]["utterances"] == 27 and bundle["training"]["speakers"] == 3  # casia's shared classes
    assert "trained on casia, tested on emodb" in bundle["cv"]["protocol"]
    capsys.readouterr()
