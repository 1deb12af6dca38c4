"""emoboost benchmark: several methods on identical folds, one table."""

from __future__ import annotations

import json

import pytest

from builders import EMO_FREQ, emodb_tone, tiny_wav2vec2
from emoboost.cli import main
from emoboost.experiment.benchmark import parse_method_spec


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("emodb")
    (root / "wav").mkdir()
    k = 0
    for spk in ("03", "08", "09"):
        for emo, f in EMO_FREQ.items():
            for text in ("a01", "a02"):
                k += 1
                emodb_tone(root / "wav" / f"{spk}{text}{emo}a.wav", f, 1.0 + (k % 2), k)
    return root


def test_parse_method_spec():
    assert parse_method_spec("linear") == ("linear", "linear", {})
    assert parse_method_spec("msemoboost:guidance=mfcc,attention=false") == (
        "msemoboost:guidance=mfcc,attention=false", "msemoboost", {"guidance": "mfcc", "attention": False})
    assert parse_method_spec("base=linear:layer=2")[0] == "base"
    assert parse_method_spec("c=ssl_cnn:pool=[2,2],head=global")[2] == {"pool": [2, 2], "head": "global"}
    with pytest.raises(ValueError):
        parse_method_spec("linear:layer")


def test_benchmark_same_folds_across_methods(corpus, tmp_path, capsys):
    up = tiny_wav2vec2(tmp_path / "up")
    out = tmp_path / "bench"
    rc = main(["benchmark", "--corpus", "emodb", "--data-root", str(corpus), "--upstreams", str(up),
               "--methods", "linear:layer=1", "linear:layer=weighted", "msemoboost:guidance=mfcc,lstm_hidden=8",
               "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
               "--paired", "linear:layer=1", "linear:layer=weighted"])
    assert rc == 0
    res = json.loads((out / "benchmark.json").read_text())
    assert res["identical_folds"] is True
    assert len(res["rows"]) == 3
    folds = [json.loads((p / "folds.json").read_text()) for p in sorted(out.iterdir()) if p.is_dir()]
    assert all([f["test_ids"] for f in x] == [f["test_ids"] for f in folds[0]] for x in folds)
    md = (out / "benchmark.md").read_text()
    assert "identical folds across entries**: yes" in md and "| WA % | UA % |" in md
    assert [p["metric"] for p in res["paired"]] == ["UA", "WA"] and res["paired"][0]["units"] == 2
    assert "Paired differences A − B" in md and "95 % CI" in md
    seg_line = next(line for line in md.splitlines() if line.startswith("- **segmenting**"))
    assert "msemoboost:guidance=mfcc,lstm_hidden=8 @" in seg_line  # pooled and windowed entries: one per entry


def test_paired_label_typo_fails_before_running(corpus, tmp_path, capsys):
    rc = main(["benchmark", "--corpus", "emodb", "--data-root", str(corpus), "--methods", "svm:features=egemaps",
               "--out", str(tmp_path / "b"), "--paired", "svm:features=egemaps", "linaer"])
    assert rc != 0 and "--paired 'linaer': no matching entries" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_benchmark_writes_only_into_its_own_folder(corpus, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "benchmark.md").write_text("my table")
    rc = main(["benchmark", "--corpus", "emodb", "--data-root", str(corpus), "--methods", "svm:features=egemaps",
               "--quick", "--out", str(mine), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"{mine}: not empty and not written by `emoboost benchmark`" in err
    assert [p.name for p in mine.iterdir()] == ["benchmark.md"] and (mine / "benchmark.md").read_text() == "my table"
