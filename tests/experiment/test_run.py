"""End to end: synthetic EmoDB-named corpus + tiny local wav2vec2 -> run -> report -> resume -> predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import EMO_FREQ, emodb_tone, tiny_wav2vec2
from emoboost import protocols
from emoboost.cli import main
from emoboost.experiment import run as runner
from emoboost.experiment.run import ExperimentConfig, run_experiment
from emoboost.inference.predict import Predictor


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("emodb")
    wav = root / "wav"
    wav.mkdir()
    k = 0
    for spk in ("03", "08", "09", "10"):
        for emo, f in EMO_FREQ.items():
            for text in ("a01", "a02", "b01"):
                k += 1
                emodb_tone(wav / f"{spk}{text}{emo}a.wav", f * (1 + 0.01 * int(spk[1])), 1.0 + (k % 3) * 1.2, k)
    (wav / "10b02Wa.wav").write_bytes(b"RIFF\x00\x00garbage that is not audio")
    return root


@pytest.fixture(scope="module")
def upstream_dir(tmp_path_factory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("up") / "tiny-w2v2")


def _cfg(corpus, upstream_dir, out, cache, **kw) -> ExperimentConfig:
    base = dict(corpus="emodb", data_root=str(corpus), upstream=str(upstream_dir), method="linear",
                method_params={"layer": "weighted", "max_epochs": 60, "lr": 0.01, "patience": 60}, out_dir=str(out), cache_dir=str(cache),
                progress=False)
    base.update(kw)
    return ExperimentConfig(**base)


@pytest.fixture(scope="module")
def finished_run(corpus, upstream_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = _cfg(corpus, upstream_dir, tmp / "out", tmp / "cache", tsne=True, plots=True)
    return cfg, run_experiment(cfg)


def test_run_writes_full_report(finished_run):
    cfg, rep = finished_run
    out = Path(cfg.out_dir)
    for f in ("config.json", "summary.json", "summary.md", "confusion.png", "tsne.png", "skipped.json",
              "timings.json", "bundle.json", "folds.json", "manifest.jsonl"):
        assert (out / f).exists(), f
    assert len(rep["per_fold"]) == 4  # leave-one-speaker-out over 4 speakers
    skipped = json.loads((out / "skipped.json").read_text())
    assert any("10b02Wa.wav" in s["path"] for s in skipped)
    md = (out / "summary.md").read_text()
    assert "leave-one-speaker-out" in md and "speaker-independent" in md
    folds = json.loads((out / "folds.json").read_text())
    spk_of = {i: i[:2] for f in folds for i in f["test_ids"]}
    for f in folds:
        assert len({spk_of[i] for i in f["test_ids"]}) == 1
    # tones separate the classes: even a tiny random encoder + linear probe must beat chance clearly
    assert rep["summary"]["UA"]["mean"] > 0.55  # chance = 0.33
    assert len(list((out / "models").iterdir())) == 4


def test_resume_skips_finished_folds(finished_run, corpus, upstream_dir, monkeypatch):
    cfg, rep = finished_run
    calls = []
    orig = runner.get_method

    def spy(name):
        klass = orig(name)

        class Spy(klass):
            def fit(self, *a, **k):
                calls.append(1)
                return super().fit(*a, **k)
        return Spy
    monkeypatch.setattr(runner, "get_method", spy)
    rep2 = run_experiment(cfg)
    assert calls == []
    assert rep2["summary"]["UA"] == rep["summary"]["UA"]


def test_changed_config_refused(finished_run):
    cfg, _ = finished_run
    d = dict(cfg.__dict__, seeds=[1, 2])
    with pytest.raises(ValueError, match="different config"):
        run_experiment(ExperimentConfig(**d))


def test_folds_on_other_features_are_not_resumed(finished_run, tmp_path):
    import shutil

    cfg, _ = finished_run
    out = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, out)
    f = sorted((out / "folds").glob("fold*_seed*.json"))[1]
    d = json.loads(f.read_text())
    assert d["info"]["features"]  # each fold records the features it was computed on
    d["info"]["features"] = "tiny-w2v2-0000000000000000"  # as if the weights behind the path had changed
    f.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=f"{f.name}: this fold was computed on features tiny-w2v2-0000"):
        run_experiment(ExperimentConfig(**dict(cfg.__dict__, out_dir=str(out))))


def test_more_seeds_extend_a_finished_run(finished_run, tmp_path, monkeypatch):
    import shutil

    cfg, rep = finished_run
    out = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, out)
    calls: list[int] = []
    orig = runner.get_method

    def spy(name):
        klass = orig(name)

        class Spy(klass):
            def fit(self, *a, seed=0, **k):
                calls.append(seed)
                return super().fit(*a, seed=seed, **k)
        return Spy
    monkeypatch.setattr(runner, "get_method", spy)
    rep2 = run_experiment(ExperimentConfig(**dict(cfg.__dict__, out_dir=str(out), seeds=[0, 1])))
    assert calls == [1] * len(rep["per_fold"])  # seed 0's folds are reused, only seed 1 is fitted
    assert len(rep2["per_fold"]) == 2 * len(rep["per_fold"])


def test_leaky_fold_refused(corpus, upstream_dir, tmp_path, monkeypatch):
    real = protocols.make_folds

    def leaky(manifest, *a, **k):
        f = real(manifest, *a, **k)[0]
        return [protocols.Fold(0, np.concatenate([f.train, f.test[:1]]), f.valid, f.test, f.test_groups)]
    monkeypatch.setattr(runner, "make_folds", leaky)
    with pytest.raises(protocols.LeakageError):
        run_experiment(_cfg(corpus, upstream_dir, tmp_path / "o", tmp_path / "c"))


def test_predict_run_dir_with_timeline(finished_run, tmp_path, monkeypatch):
    cfg, _ = finished_run
    wav = tmp_path / "long.wav"
    emodb_tone(wav, EMO_FREQ["T"], 7.0, 99)
    pred = Predictor.load(cfg.out_dir)
    assert len(pred.models) == 4
    p = pred.predict_file(wav, timeline=True)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-3
    assert [t["start"] for t in p.timeline] == [0.0, 3.0, 6.0]
    assert p.timeline[-1]["end"] == pytest.approx(7.0)
    # with an encoder window shorter than the file, the file is read in 3 blocks: streaming them from disk
    # gives what the loaded waveform gives (no sample lost or read twice at a block edge), and the answer
    # is not the one-window answer (the blocks really were encoded apart)
    from emoboost.audio import load_audio

    monkeypatch.setitem(pred.bundle, "encoder_window", 3.0)
    streamed = pred.predict_stream(wav, timeline=True)
    loaded = pred.predict_wav(load_audio(wav), str(wav), timeline=True)
    assert streamed.probabilities == pytest.approx(loaded.probabilities, abs=1e-5)
    assert [t["start"] for t in streamed.timeline] == [t["start"] for t in loaded.timeline] == [0.0, 3.0, 6.0]
    assert streamed.probabilities != pytest.approx(p.probabilities, abs=1e-6)


def test_predict_cli_json_csv_and_bad_file(finished_run, tmp_path, capsys):
    cfg, _ = finished_run
    wav = tmp_path / "x.wav"
    emodb_tone(wav, EMO_FREQ["W"], 2.0, 5)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    rc = main(["predict", cfg.out_dir, str(wav), str(bad), "--format", "json"])
    cap = capsys.readouterr()
    assert rc == 1  # one file failed
    assert "bad.wav" in cap.err and "empty" in cap.err
    rows = json.loads(cap.out)
    assert rows[0]["label"] in {"anger", "sadness", "neutral"}
    rc = main(["predict", cfg.out_dir, str(wav), "--format", "csv", "--timeline"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("path,start,end,label") and len(lines) == 2


def test_cli_run_quick(corpus, upstream_dir, tmp_path, capsys):
    rc = main(["run", "--corpus", "emodb", "--data-root", str(corpus), "--upstream", str(upstream_dir),
               "--method", "linear", "--quick", "--out", str(tmp_path / "q"), "--cache-dir", str(tmp_path / "c"),
               "--no-progress", "-p", "layer=1"])
    assert rc == 0
    assert "first 2 folds only" in capsys.readouterr().out


def test_two_speaker_corpus_runs_loso_with_utterance_validation(corpus, upstream_dir, tmp_path):
    """With one training speaker per fold, early stopping uses that speaker's utterances; the report says so."""
    two = tmp_path / "emodb2" / "wav"
    two.mkdir(parents=True)
    for f in (corpus / "wav").glob("*.wav"):
        if f.name[:2] in ("03", "08"):
            (two / f.name).write_bytes(f.read_bytes())
    cfg = _cfg(two.parent, upstream_dir, tmp_path / "out", tmp_path / "cache", tsne=False,
               method_params={"layer": 1, "max_epochs": 5})
    rep = run_experiment(cfg)
    assert len(rep["per_fold"]) == 2
    folds = json.loads((tmp_path / "out" / "folds.json").read_text())
    assert all(f["valid_by"] == "utterances" and f["n_valid"] > 0 for f in folds)
    assert "training speakers' utterances" in (tmp_path / "out" / "summary.md").read_text()


def test_fold_errors_are_raised_before_any_extraction(corpus, upstream_dir, tmp_path, monkeypatch):
    import emoboost.features.extract as extract

    monkeypatch.setattr(extract, "extract_to_store", lambda *a, **k: pytest.fail("extraction started"))
    cfg = _cfg(corpus, upstream_dir, tmp_path / "out", tmp_path / "cache", protocol="group-kfold", n_folds=9)
    with pytest.raises(ValueError):
        run_experiment(cfg)
    assert not (tmp_path / "out" / "config.json").exists()  # a run that never started does not lock --out


def test_logreg_run_reads_only_pooled_statistics(corpus, upstream_dir, tmp_path, monkeypatch):
    from emoboost.features.views import StoreSource

    monkeypatch.setattr(StoreSource, "frames", lambda *a, **k: pytest.fail("a pooled method read frames"))
    cfg = _cfg(corpus, upstream_dir, tmp_path / "out", tmp_path / "cache", method="logreg", tsne=False,
               method_params={"layer": "1,2", "Cs": [1.0]})
    rep = run_experiment(cfg)
    assert rep["summary"]["UA"]["mean"] > 0.5
    assert not list((tmp_path / "cache").rglob("*.npy"))  # store=auto keeps statistics only for pooled methods


def test_warm_pooled_run_never_imports_torch(corpus, upstream_dir, tmp_path):
    """A logreg run on a filled store loads neither torch nor transformers (their import is most of
    a cached run's start-up); the numbers equal the first run's."""
    import subprocess
    import sys

    cfg = _cfg(corpus, upstream_dir, tmp_path / "first", tmp_path / "cache", method="logreg", tsne=False,
               method_params={"layer": 1, "Cs": [1.0]})
    first = run_experiment(cfg)["summary"]["UA"]["mean"]
    code = (
        "import json, sys\n"
        "from emoboost.experiment.run import ExperimentConfig, run_experiment\n"
        f"cfg = ExperimentConfig(**{dict(cfg.__dict__, out_dir=str(tmp_path / 'warm'))!r})\n"
        "ua = run_experiment(cfg)['summary']['UA']['mean']\n"
        "print(json.dumps({'ua': ua, 'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["ua"] == pytest.approx(first)


def test_missing_device_fails_before_any_extraction(corpus, upstream_dir, tmp_path, monkeypatch):

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _cfg(corpus, upstream_dir, tmp_path / "out", tmp_path / "cache", device="cuda")
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        run_experiment(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))
