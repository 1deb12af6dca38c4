"""End to end: synthetic EmoDB-named corpus + tiny local wav2vec2 -> run -> report -> resume -> predict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import EMO_FREQ, emodb_tone, tiny_corpus, tiny_wav2vec2
from emoboost import protocols
from emoboost.cli import main
from emoboost.experiment import run as runner
from emoboost.experiment.run import ExperimentConfig, run_experiment
from emoboost.inference.engine import Engine


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tiny_corpus(tmp_path_factory.mktemp("emodb"), seconds=1.0, step=1.2)


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
    calls = _fit_counter(monkeypatch)
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
    d["info"]["provenance"]["features"] = "tiny-w2v2-0000000000000000"  # as if the weights behind the path had changed
    f.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=f"{f.name}: .*encoder fingerprint tiny-w2v2-0000000000000000 -> tiny-w2v2-"):
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
    pred = Engine.load(cfg.out_dir)
    assert pred.ensemble_size == 4
    p = pred.predict_file(wav, timeline=True)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-3
    assert [t["start"] for t in p.timeline] == [0.0, 3.0, 6.0]
    assert p.timeline[-1]["end"] == pytest.approx(7.0)
    # with an encoder window shorter than the file, the file is read in 3 blocks: streaming them from disk
    # gives what the loaded waveform gives (no sample lost or read twice at a block edge), and the answer
    # is not the one-window answer (the blocks really were encoded apart)
    from emoboost.audio import load_audio
    from emoboost.inference.backend_torch import TorchBackend
    from emoboost.inference.bundle import read_bundle

    b = read_bundle(cfg.out_dir)
    b.encoder_window = 3.0
    short = Engine(TorchBackend.load(b), b)
    streamed = short.predict_stream(wav, timeline=True)
    loaded = short.predict_wav(load_audio(wav), str(wav), timeline=True)
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
    assert not list((tmp_path / "cache").glob("sslframes*"))  # store=auto keeps statistics only for pooled methods


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


# ---- run directories: provenance, one writer, ownership --------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared-cache")


def _logreg(corpus, upstream_dir, out, cache, layer=1, **kw) -> ExperimentConfig:
    return _cfg(corpus, upstream_dir, out, cache, method="logreg", method_params={"layer": layer, "Cs": [1.0]},
                tsne=False, **kw)


def _fit_counter(monkeypatch) -> list[int]:
    calls: list[int] = []
    orig = runner.get_method

    def spy(name):
        klass = orig(name)

        class Spy(klass):
            def fit(self, *a, **k):
                calls.append(1)
                return super().fit(*a, **k)
        return Spy
    monkeypatch.setattr(runner, "get_method", spy)
    return calls


GATED_RUN = """
import json, pathlib, sys, time
from emoboost.experiment import run as runner
cfg, started, gate = json.loads(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
orig = runner.get_method
def gated(name):
    klass = orig(name)
    class Gated(klass):
        def fit(self, *a, **k):
            started.write_text("fitting")
            while not gate.exists():
                time.sleep(0.05)
            return super().fit(*a, **k)
    return Gated
runner.get_method = gated
runner.run_experiment(runner.ExperimentConfig(**cfg))
"""


def test_two_processes_never_write_one_run_directory(corpus, upstream_dir, cache, tmp_path, capsys):
    """A second run into a run directory in use is refused in one line; a killed holder blocks nothing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    a = _logreg(corpus, upstream_dir, out, cache, layer=1)
    started, gate = tmp_path / "started", tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, "-c", GATED_RUN, json.dumps(dataclasses.asdict(a)), str(started),
                             str(gate)], stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not started.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() - t0 < 120, "the first run never reached its first fit"
            time.sleep(0.05)
        rc = main(["run", "--corpus", "emodb", "--data-root", str(corpus), "--upstream", str(upstream_dir),
                   "--method", "logreg", "-p", "layer=2", "-p", "Cs=[1.0]", "--out", str(out),
                   "--cache-dir", str(cache), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1
        assert f"{out}: another emoboost process (pid {proc.pid}) is writing this run directory" in err
        assert not list((out / "folds").glob("*.json")) if (out / "folds").is_dir() else True
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 while it holds the lock
        proc.wait()
    rep = run_experiment(a)  # the dead process's lock is gone with it; the same run starts again
    assert len(rep["per_fold"]) == 4
    b = _logreg(corpus, upstream_dir, out, cache, layer=2)
    with pytest.raises(ValueError, match=r"different configuration .*method_params\.layer 1 -> 2"):
        run_experiment(b)
    assert json.loads((out / "summary.json").read_text())["protocol"]["method"] == 'logreg {"Cs": [1.0], "layer": 1}'


def test_resume_refuses_folds_of_other_code(corpus, upstream_dir, cache, tmp_path, monkeypatch):
    """A run killed after 2 folds resumes only with the code and defaults that produced them."""
    from emoboost.methods.logreg import LogRegProbe
    from emoboost.methods.params import Param

    killed = _logreg(corpus, upstream_dir, tmp_path / "run", cache, max_folds=2)  # as if killed after 2 folds
    run_experiment(killed)
    full = dataclasses.replace(killed, max_folds=None)
    real = LogRegProbe.declared_params()
    with monkeypatch.context() as m:  # a default changed between the kill and the resume
        m.setattr(LogRegProbe, "_declared", {**real, "max_iter": Param(1000, real["max_iter"].rule)})
        with pytest.raises(ValueError, match=r"method parameter max_iter 2000 -> 1000"):
            run_experiment(full)
    with monkeypatch.context() as m:  # any source file of the package changed
        m.setattr(runner, "code_version", lambda: "0.1.0+src.edited")
        with pytest.raises(ValueError, match=r"code version 0\.1\.0\S* -> 0\.1\.0\+src\.edited"):
            run_experiment(full)
    calls = _fit_counter(monkeypatch)
    rep = run_experiment(full)  # the same code and settings: the finished folds are skipped
    assert calls == [1, 1] and len(rep["per_fold"]) == 4


def test_edited_labels_under_the_same_path_are_not_reused(corpus, upstream_dir, cache, tmp_path):
    from emoboost.data.corpora import scan_corpus

    csv = tmp_path / "labels.csv"
    scan_corpus("emodb", corpus)[0].write(csv)
    out = tmp_path / "run"
    cfg = _logreg(corpus, upstream_dir, out, cache, data_root=None, manifest=str(csv))
    run_experiment(cfg)
    kept = (out / "manifest.jsonl").read_text()
    swap = {"anger": "sadness", "sadness": "anger"}
    rows = csv.read_text().splitlines()
    head = rows[0].split(",").index("label")
    edited = [rows[0]] + [",".join(swap.get(v, v) if i == head else v for i, v in enumerate(r.split(",")))
                          for r in rows[1:]]
    csv.write_text("\n".join(edited) + "\n")
    with pytest.raises(ValueError, match=r"different configuration .*manifest content"):
        run_experiment(cfg)
    assert (out / "manifest.jsonl").read_text() == kept  # refused before anything is rewritten


def test_data_root_from_the_environment_is_part_of_a_run(corpus, upstream_dir, cache, tmp_path, monkeypatch):
    three = tmp_path / "three" / "emodb" / "wav"
    three.mkdir(parents=True)
    for f in (corpus / "wav").glob("*.wav"):
        if f.name[:2] != "10":
            (three / f.name).write_bytes(f.read_bytes())
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    (shared / "emodb").symlink_to(corpus)
    monkeypatch.setenv("EMOBOOST_SHARED", str(tmp_path / "shared"))
    monkeypatch.setenv("EMOBOOST_DATA", str(tmp_path / "three"))
    cfg = _logreg(corpus, upstream_dir, tmp_path / "run", cache, data_root=None)
    assert len(run_experiment(cfg)["per_fold"]) == 3
    monkeypatch.delenv("EMOBOOST_DATA")
    with pytest.raises(ValueError, match=r"data root \S*three\S* -> \S+; manifest content"):
        run_experiment(cfg)


def test_run_writes_only_into_its_own_folder(corpus, upstream_dir, cache, tmp_path, capsys):
    hf = tmp_path / "wav2vec2-model"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "wav2vec2"}')
    (hf / "model.safetensors").write_bytes(b"\x00" * 4096)
    before = {p.name: p.read_bytes() for p in hf.iterdir()}
    with pytest.raises(ValueError, match=f"{hf}: not empty and not written by `emoboost run`"):
        run_experiment(_logreg(corpus, upstream_dir, hf, cache))
    assert {p.name: p.read_bytes() for p in hf.iterdir()} == before
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "summary.md").write_text("my notes")
    rc = main(["run", "--corpus", "emodb", "--data-root", str(corpus), "--upstream", str(upstream_dir),
               "--method", "logreg", "-p", "Cs=[1.0]", "--out", str(mine), "--cache-dir", str(cache), "--no-progress"])
    assert rc == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert [p.name for p in mine.iterdir()] == ["summary.md"] and (mine / "summary.md").read_text() == "my notes"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(run_experiment(_logreg(corpus, upstream_dir, empty, cache))["per_fold"]) == 4  # an empty folder is fine


def test_duplicate_seeds_are_refused(corpus, upstream_dir, tmp_path, capsys):
    rc = main(["run", "--corpus", "emodb", "--data-root", str(corpus), "--upstream", str(upstream_dir),
               "--method", "logreg", "--seeds", "0", "1", "0", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "seeds 0 1 0: seed 0 is given twice" in err
    assert not (tmp_path / "o").exists()


def test_stale_temp_files_are_cleaned_on_the_next_start(finished_run, tmp_path):
    import shutil

    cfg, _ = finished_run
    out = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, out)
    stale = [out / ".summary.json.k2j3h4l5.tmp", out / "folds" / ".fold00_seed0.json.abcd_123.tmp",
             out / "models" / "fold00_seed0" / ".model.safetensors.tmp"]
    kept = [out / "keep.tmp", out / ".keep", out / "folds" / "notes.txt", out / "mine" / ".x.abcdefgh.tmp"]
    for p in stale + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    run_experiment(ExperimentConfig(**dict(cfg.__dict__, out_dir=str(out), tsne=False, plots=False)))
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)


def test_logreg_report_lists_the_folds_choices_of_C(corpus, upstream_dir, cache, tmp_path):
    """The C line lists every fold's choice; with one training speaker the inner CV is over its utterances, and it says so."""
    cfg = _cfg(corpus, upstream_dir, tmp_path / "four", cache, method="logreg", tsne=False,
               method_params={"layer": 1, "Cs": [0.01, 100.0]})
    rep = run_experiment(cfg)
    chosen = [json.loads(p.read_text())["info"]["method"]["logreg C (inner CV on training speakers)"]
              for p in sorted((tmp_path / "four" / "folds").glob("fold*.json"))]
    line = next(x for x in (tmp_path / "four" / "summary.md").read_text().splitlines() if "logreg C" in x)
    if len(set(chosen)) == 1:  # one value: every fold chose it
        assert line == f"- **logreg C (inner CV on training speakers)**: {chosen[0]}"
    else:
        assert line.endswith("per fold: " + "; ".join(f"{i}: {c}" for i, c in enumerate(chosen)))
    assert str(rep["protocol"]["logreg C (inner CV on training speakers)"]) == line.split("**: ")[1]
    two = tmp_path / "emodb2" / "wav"
    two.mkdir(parents=True)
    for f in (corpus / "wav").glob("*.wav"):
        if f.name[:2] in ("03", "08"):
            (two / f.name).write_bytes(f.read_bytes())
    run_experiment(dataclasses.replace(cfg, data_root=str(two.parent), out_dir=str(tmp_path / "two")))
    md = (tmp_path / "two" / "summary.md").read_text()
    assert "inner CV on training speakers" not in md  # one training speaker: its utterances, stratified
    assert "- **logreg C (inner CV: " in md and "stratified folds of the single training speaker's utterances" in md



def test_sweep_writes_only_into_its_own_folder(corpus, upstream_dir, cache, tmp_path, capsys):
    args = ["run", "--corpus", "emodb", "--data-root", str(corpus), "--upstream", str(upstream_dir), "--method",
            "logreg", "-p", "Cs=[1.0]", "--sweep", "layer=1,2", "--cache-dir", str(cache), "--no-progress"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sweep.md").write_text("my sweep")
    assert main([*args, "--out", str(mine)]) == 2
    assert f"{mine}: not empty and not written by `emoboost run --sweep`" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["sweep.md"] and (mine / "sweep.md").read_text() == "my sweep"
    assert main([*args, "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "layer=2" / "summary.json").is_file() and (tmp_path / "ok" / "sweep.md").is_file()


def test_manifest_paths_in_any_spelling_are_one_file_and_bad_rows_are_listed(corpus, upstream_dir, cache, tmp_path,
                                                                            monkeypatch):
    """``./x``, ``a/../b`` and ``a//b`` rows, a clip too short to use and a row without a path: the run
    finishes the good rows and lists the others (a skipped clip spelled unlike its normalised path ended
    the whole run with a KeyError naming its id)."""
    from emoboost.data.corpora import emodb

    monkeypatch.chdir(corpus)
    rows = [{**u.to_dict(), "path": str(Path(u.path).relative_to(corpus))} for u in emodb.scan(corpus)[0]]
    normal = [r["path"] for r in rows[:3]]  # wav/<name>.wav
    rows[0]["path"], rows[1]["path"], rows[2]["path"] = (f"./{normal[0]}", f"wav/../{normal[1]}",
                                                         normal[2].replace("/", "//"))
    emodb_tone(tmp_path / "short.wav", 300.0, 0.05, 99)  # not in the shared corpus fixture
    rows.append({**rows[3], "id": "short", "path": f"{tmp_path}/./short.wav"})
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows) + json.dumps({"id": "nopath"}) + "\n")
    cfg = _logreg(corpus, upstream_dir, tmp_path / "run", cache, manifest=str(man), protocol="loso")
    run_experiment(cfg)
    skipped = json.loads((tmp_path / "run" / "skipped.json").read_text())
    assert [(s["path"], s["problem"].split(":")[0]) for s in skipped] == [
        (f"{man}:{len(rows) + 1}", "manifest row 'nopath' lacks required field(s) ['path', 'speaker', 'label', 'duration', 'corpus']"),
        (str(tmp_path / "short.wav"), "too short")]
    used = [json.loads(x)["path"] for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert len(used) == len(rows) - 1 and used[:3] == normal


def test_a_fold_that_answers_nan_is_refused_by_name(corpus, upstream_dir, cache, tmp_path, monkeypatch):
    """A fold whose model answers NaN (diverged training) stops the run naming the fold; its result is
    not written (argmax of NaN is class 0: it would have entered the report as a prediction)."""
    orig = runner.get_method

    def diverging(name):
        klass = orig(name)

        class Diverged(klass):
            def predict_proba(self, data):
                p = super().predict_proba(data)
                p[len(p) // 2:] = np.nan
                return p
        return Diverged
    monkeypatch.setattr(runner, "get_method", diverging)
    cfg = _logreg(corpus, upstream_dir, tmp_path / "run", cache)
    with pytest.raises(ValueError, match=r"^fold 0 seed 0: the logreg model gives non-finite probabilities for \d+ of "
                                         r"\d+ test utterance\(s\) \(its training diverged"):
        run_experiment(cfg)
    assert not list((tmp_path / "run" / "folds").glob("*.json"))


def test_odd_audio_is_used_and_listed_in_warnings_json(corpus, upstream_dir, cache, tmp_path, monkeypatch):
    """A DC-offset clip and white noise inside a corpus: trained on as they are (labels and folds unchanged),
    listed in warnings.json; a warm rerun lists them again without decoding any audio."""
    import shutil

    import soundfile as sf

    from emoboost.features import cache as feature_cache

    root = tmp_path / "emodb"
    shutil.copytree(corpus, root)
    x, sr = sf.read(str(root / "wav" / "03a01Wa.wav"), dtype="float32")
    sf.write(str(root / "wav" / "03a01Wa.wav"), x + 0.3, sr)
    noise = 0.2 * np.random.default_rng(0).standard_normal(24000)
    sf.write(str(root / "wav" / "08a01Na.wav"), noise.astype(np.float32), 16000)
    first = run_experiment(_logreg(root, upstream_dir, tmp_path / "run", cache))
    got = json.loads((tmp_path / "run" / "warnings.json").read_text())
    assert [(Path(w["path"]).name, w["warning"].split(" (")[0]) for w in got] == [
        ("03a01Wa.wav", f"{root / 'wav' / '03a01Wa.wav'}: heavy DC offset"),
        ("08a01Na.wav", f"{root / 'wav' / '08a01Na.wav'}: no speech-like content")]
    used = {json.loads(x)["id"] for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()}
    skipped = json.loads((tmp_path / "run" / "skipped.json").read_text())
    assert {"03a01Wa", "08a01Na"} <= used and [s["path"] for s in skipped] == [str(root / "wav" / "10b02Wa.wav")]
    monkeypatch.setattr(feature_cache, "load_audio", lambda *a, **k: pytest.fail("audio decoded again"))
    again = run_experiment(_logreg(root, upstream_dir, tmp_path / "run2", cache))
    assert json.loads((tmp_path / "run2" / "warnings.json").read_text()) == got
    assert again["summary"]["UA"] == first["summary"]["UA"]


def test_a_scikit_learn_error_inside_a_fit_names_the_fold(corpus, upstream_dir, cache, tmp_path, monkeypatch):
    """An error raised inside scikit-learn (its own wording) says which fold, seed and method failed."""
    orig = runner.get_method

    def breaking(name):
        klass = orig(name)

        class Broken(klass):
            def fit(self, train, valid=None, seed=0):
                from sklearn.model_selection import GroupKFold

                list(GroupKFold(n_splits=99).split(np.zeros((len(train), 1)), train.y, train.groups))
        return Broken
    monkeypatch.setattr(runner, "get_method", breaking)
    with pytest.raises(ValueError, match=r"^fold 0 seed 0: logreg could not be fitted on this fold's training data "
                                         r"\(scikit-learn: Cannot have number of splits n_splits=99"):
        run_experiment(_logreg(corpus, upstream_dir, tmp_path / "run", cache))
    with pytest.raises(ValueError, match="^plain"):  # our own errors pass as they are
        with runner.library_errors("fold 0"):
            raise ValueError("plain")
