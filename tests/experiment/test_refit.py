"""Final model: settings from the folds, one model on all speakers, a self-contained bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from builders import cv_run, save_tiny_whisper, tiny_corpus
from emoboost.cli import main
from emoboost.experiment.refit import median_epochs, modal_values, read_run, select_settings, train_final
from emoboost.inference.engine import Engine

CODE = {"W": "anger", "T": "sadness", "N": "neutral"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("final")
    corpus = tiny_corpus(tmp / "emodb")
    up = save_tiny_whisper(tmp / "tiny-whisper")
    run = cv_run(corpus, up, tmp / "run", tmp / "cache", "logreg", {"layer": 2, "Cs": [0.1, 1.0]})
    return {"tmp": tmp, "corpus": corpus, "upstream": up, "run": run, "cache": tmp / "cache",
            "bundle": tmp / "final", "info": train_final(run, tmp / "final", progress=False)}


# ---- choosing the settings ----------------------------------------------------------------------

def test_median_epochs_rounds_half_up_and_ignores_missing():
    assert median_epochs([3, 5, 4, None, 8]) == 5  # median of 3,4,5,8 = 4.5
    assert median_epochs([7, 2, 9]) == 7
    assert median_epochs([1, 1, 2, 2]) == 2
    assert median_epochs([0]) == 1  # never zero epochs
    with pytest.raises(ValueError, match="best epoch"):
        median_epochs([None, None])


def test_modal_values_lists_ties():
    assert modal_values([0.1, 1.0, 1.0, 0.01, None]) == [1.0]
    assert modal_values([0.1, 1.0, 1.0, 0.1]) == [0.1, 1.0]
    with pytest.raises(ValueError):
        modal_values([None])


def test_select_settings_from_crafted_folds():
    infos = [{"best_epoch": e} for e in (12, 30, 9, 14, 40)]
    s = select_settings("linear", {"layer": 3, "max_epochs": 100, "refit": True}, infos, [{}] * 5)
    assert s.params == {"layer": 3, "max_epochs": 14, "refit": False} and s.per_fold == [12, 30, 9, 14, 40]
    # logreg: C from the saved model states, else from the fold report's describe() entry
    infos = [{"method": {"logreg C (inner CV on training speakers)": c}} for c in (0.1, 1.0, 0.1, 1.0, 0.01)]
    states = [{"C": 1.0}, {}, {}, {}, {}]  # fold 0's saved model says 1.0, overriding its report's 0.1
    s = select_settings("logreg", {"layer": 3}, infos, states)
    assert s.per_fold == [1.0, 1.0, 0.1, 1.0, 0.01]
    assert s.params["Cs"] == [1.0] and s.chosen == {"C": 1.0}
    tie = select_settings("logreg", {"layer": 3}, infos[1:4], [{}] * 3)  # 1.0, 0.1, 1.0 -> 1.0
    assert tie.params["Cs"] == [1.0]
    tie = select_settings("logreg", {"layer": 3}, infos[:2], [{}, {}])  # 0.1 vs 1.0: inner CV on all speakers decides
    assert tie.params["Cs"] == [0.1, 1.0] and "tied" in tie.rule
    assert s.rule == "the C the folds' inner CV chose most often"
    two = [{"method": {"logreg C (no inner CV: one training speaker, the first of Cs)": 0.01}}] * 2
    s = select_settings("logreg", {"layer": 3, "Cs": [0.01, 1.0]}, two, [{}, {}])  # a 2-speaker corpus: nothing was chosen
    assert s.chosen == {"C": 0.01} and "inner CV chose" not in s.rule
    assert s.rule == "the folds' C (no inner CV: one training speaker, the first of Cs)"
    # layer=auto: its inner CV reruns on all speakers; the folds' layers are listed
    states = [{"layers": lay, "C": None, "committee": [{"layers": lay, "C": 0.1}]} for lay in ([3], [2, 3, 4])]
    auto = select_settings("logreg", {"layer": "auto"}, [{}, {}], states)
    assert auto.params == {"layer": "auto"} and auto.chosen == {} and auto.per_fold == ["3", "2,3,4"]
    assert "rerun on all speakers" in auto.rule
    lin = select_settings("linear", {}, [{"best_epoch": e} for e in (5, 9)], states)  # the default layer: auto
    assert lin.params == {"max_epochs": 7, "refit": False} and "rerun on all speakers" in lin.rule
    # a run from before layer=auto was the default (no layer given, fixed layers in every fold) keeps them
    old = select_settings("logreg", {}, [{}, {}], [{"layers": [6], "C": 0.1}, {"layers": [6], "C": 1.0}])
    assert old.params["layer"] == [6] and old.params["Cs"] == [0.1, 1.0]
    svm = select_settings("svm", {"features": "egemaps"}, [{}], [{"best_params": {"C": 10.0, "gamma": 0.01}}])
    assert svm.params == {"features": "egemaps"} and svm.per_fold == [{"C": 10.0, "gamma": 0.01}]


# ---- the bundle -----------------------------------------------------------------------------

def test_bundle_contents(setup):
    b, run = setup["bundle"], setup["run"]
    for f in ("model.safetensors", "method.json", "bundle.json"):
        assert (b / f).is_file(), f
    bundle = json.loads((b / "bundle.json").read_text())
    run_bundle = json.loads((run / "bundle.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert bundle["kind"] == "final" and bundle["classes"] == ["anger", "neutral", "sadness"]
    assert bundle["label_map"] == {"0": "anger", "1": "neutral", "2": "sadness"}
    assert bundle["upstream"]["fingerprint"] == run_bundle["upstream"]["fingerprint"]
    assert bundle["upstream"]["layers"] == [2] and bundle["features"] == ["ssl"]
    assert bundle["segment_encoding"] == "utterance" and bundle["segment_length"] == 3.0
    assert bundle["cv"]["UA"] == summary["summary"]["UA"] and bundle["cv"]["WA"] == summary["summary"]["WA"]
    assert bundle["cv"]["pooled"] == summary["summary"]["pooled"]
    assert "leave-one-speaker-out" in bundle["cv"]["protocol"]
    folds_c = [json.loads((run / "models" / f"fold{i:02d}_seed0" / "method.json").read_text())["state"]["C"]
               for i in range(4)]
    sel = bundle["selection"]
    assert sel["per_fold"] == folds_c and sel["chosen"]["C"] in folds_c
    assert json.loads((b / "method.json").read_text())["state"]["C"] == sel["chosen"]["C"]
    # every usable clip of every speaker trained it (the garbage file is reported, not used)
    assert bundle["training"]["utterances"] == 36 and bundle["training"]["speakers"] == 4
    assert bundle["training"]["class_counts"] == {"anger": 12, "neutral": 12, "sadness": 12}
    head = bundle["head"]
    assert head["layers"] == [2] and np.asarray(head["weight"]).shape == (3, 32)


def test_predictor_loads_the_final_model_and_labels_training_clips(setup):
    pred = Engine.load(setup["bundle"])
    assert pred.kind == "final" and pred.ensemble_size == 1
    assert pred.backend.name == "onnx" and (setup["bundle"] / "onnx" / "preprocessing.json").is_file()  # train wrote it
    ens = Engine.load(setup["run"])
    assert ens.kind == "ensemble" and ens.ensemble_size == 4
    wavs = sorted((setup["corpus"] / "wav").glob("*a.wav"))
    wavs = [w for w in wavs if w.name != "10b02Wa.wav"][::2]
    right = [pred.predict_file(w).label == CODE[w.name[5]] for w in wavs]
    assert np.mean(right) >= 0.8, right  # tones are separable: the model must fit its own training data


def test_head_gives_the_models_posteriors(setup):
    """The bundle's head, applied to the clip's frame means, reproduces the loaded PyTorch-side model."""
    from emoboost.audio import load_audio
    from emoboost.features.encode import encode_clip
    from emoboost.features.store import StoreSpec
    from emoboost.inference.export import head_posteriors, load_head
    from emoboost.methods import UtteranceSet

    head, up = load_head(setup["bundle"])
    pred = Engine.load(setup["bundle"], backend="torch")
    for name in ("08a02Ta.wav", "03b01Wa.wav"):
        frames, _ = encode_clip(pred.backend.upstream, load_audio(setup["corpus"] / "wav" / name), StoreSpec())
        want = pred.backend.models[0].predict_proba(UtteranceSet(["x"], features={"ssl": [frames]}))
        np.testing.assert_allclose(head_posteriors(head, frames[head["layers"]]), want[0], atol=1e-6)
    assert up["fingerprint"] == pred.bundle.fingerprint


def test_from_run_cli_encodes_nothing_and_matches(setup, capsys):
    cache = setup["cache"]
    before = sorted(p.name for p in cache.rglob("*") if p.is_file())
    out = setup["tmp"] / "final-cli"
    assert main(["train", "--from-run", str(setup["run"]), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained on all 4 speakers" in printed and "UA" in printed and "ONNX form: yes" in printed
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == before  # the store was only read
    a = json.loads((out / "bundle.json").read_text())
    b = json.loads((setup["bundle"] / "bundle.json").read_text())
    assert a["head"] == b["head"]  # deterministic: same data, same settings


def test_cli_train_runs_cv_then_final(setup, capsys):
    out = setup["tmp"] / "final-full"
    rc = main(["train", "--corpus", "emodb", "--data-root", str(setup["corpus"]), "--upstream",
               str(setup["upstream"]), "--method", "logreg", "-p", "layer=2", "-p", "Cs=[1.0]",
               "--cache-dir", str(setup["cache"]), "--out", str(out), "--no-progress"])
    assert rc == 0
    assert (out / "cv" / "summary.json").is_file() and (out / "cv" / "models").is_dir()
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["cv"]["run"] == str((out / "cv").resolve()) and bundle["selection"]["chosen"] == {"C": 1.0}
    assert Engine.load(out).kind == "final"


def test_refusals(setup, tmp_path, capsys):
    assert main(["train", "--from-run", str(setup["run"]), "--method", "linear", "--out", str(tmp_path / "x")]) == 2
    assert "drop --method" in capsys.readouterr().err
    with pytest.raises(ValueError, match="final-model bundle, not a cross-validation run"):
        read_run(setup["bundle"])
    with pytest.raises(FileNotFoundError, match="not a finished run directory"):
        read_run(tmp_path)
    with pytest.raises(ValueError, match="must not be written into the run directory"):
        train_final(setup["run"], setup["run"], progress=False)
    with pytest.raises(ValueError, match="holds a run directory"):
        train_final(setup["run"], _copy_run(setup["run"], tmp_path / "other-run"), progress=False)
    # a killed run (a fold result missing) is refused until it is finished
    broken = _copy_run(setup["run"], tmp_path / "broken")
    (broken / "folds" / "fold02_seed0.json").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        read_run(broken)
    # a final bundle without its weights is refused by name
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "bundle.json").write_text((setup["bundle"] / "bundle.json").read_text())
    with pytest.raises(FileNotFoundError, match="without method.json"):
        Engine.load(partial)


def _copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def test_trained_method_final_uses_the_median_best_epoch(setup, monkeypatch):
    run = cv_run(setup["corpus"], setup["upstream"], setup["tmp"] / "run-linear", setup["cache"], "linear",
                 {"layer": 2, "max_epochs": 8, "patience": 3, "lr": 0.01})
    best = [json.loads(p.read_text())["info"]["best_epoch"] for p in sorted((run / "folds").glob("fold*.json"))]
    import emoboost.methods.trainer as trainer

    epochs_run = []
    real_fit = trainer.TorchSegmentMethod.fit

    def spy(self, train, valid=None, seed=0):
        res = real_fit(self, train, valid, seed)
        epochs_run.append((len(self.history_), valid is None))
        return res
    monkeypatch.setattr(trainer.TorchSegmentMethod, "fit", spy)
    bundle = train_final(run, setup["tmp"] / "final-linear", progress=False)
    assert bundle["selection"]["chosen"]["max_epochs"] == median_epochs(best)
    assert epochs_run == [(median_epochs(best), True)]  # no validation, exactly that many epochs
    assert bundle["method_params"]["refit"] is False and "head" in bundle


def test_train_writes_only_into_a_model_folder(setup, tmp_path, capsys):
    """A Hugging Face model folder is never overwritten; a folder `train` wrote may be re-trained."""
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "whisper"}')
    (hf / "model.safetensors").write_bytes(b"\x01" * 16384)
    before = {p.name: p.read_bytes() for p in hf.iterdir()}
    rc = main(["train", "--from-run", str(setup["run"]), "--out", str(hf), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"{hf}: not empty and not written by `emoboost train`" in err
    rc = main(["train", "--corpus", "emodb", "--data-root", str(setup["corpus"]), "--upstream", str(setup["upstream"]),
               "--method", "logreg", "-p", "layer=2", "-p", "Cs=[1.0]", "--cache-dir", str(setup["cache"]),
               "--out", str(hf), "--no-progress"])
    assert rc == 2 and "not written by `emoboost train`" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in hf.iterdir()} == before  # no cv/ either: refused before the CV
    again = tmp_path / "again"
    first = train_final(setup["run"], again, progress=False)
    assert train_final(setup["run"], again, progress=False)["selection"] == first["selection"]  # re-training


def test_layer_auto_model_records_its_layers_predicts_and_exports(setup, tmp_path, capsys):
    """The default logreg (layer=auto): CV report lists each fold's layers; the final bundle, predict and the
    ONNX export all use the layers the folds chose."""
    from emoboost.audio import load_audio

    run = cv_run(setup["corpus"], setup["upstream"], setup["tmp"] / "run-auto", setup["cache"], "logreg", {})
    folds = [json.loads((run / "models" / f"fold{i:02d}_seed0" / "method.json").read_text())["state"] for i in range(4)]
    assert all(s["layers"] and len(s["layer_scores"]) == 6 and len(s["committee"]) == 3 for s in folds)  # 6 runs
    summary = (run / "summary.md").read_text()
    texts = {",".join(map(str, s["layers"])) for s in folds}
    line = next(x for x in summary.splitlines() if "layers (layer=auto" in x)
    assert ("per fold: 0: " in line) == (len(texts) > 1) and all(t in line for t in texts)
    out = tmp_path / "final-auto"
    bundle = train_final(run, out, progress=False)
    chosen = bundle["selection"]["chosen"]["layer"]
    assert bundle["selection"]["per_fold"] == [",".join(map(str, s["layers"])) for s in folds]
    assert len(bundle["selection"]["chosen"]["committee"]) == 3
    assert bundle["upstream"]["layers"] == chosen == bundle["head"]["layers"]
    pred = Engine.load(out, backend="torch")
    assert pred.backend.models[0].layers_ == chosen
    wav = load_audio(setup["corpus"] / "wav" / "08a02Ta.wav")
    assert main(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    np.testing.assert_allclose(Engine.load(tmp_path / "onnx").posteriors(wav), pred.posteriors(wav), atol=1e-4)
    np.testing.assert_allclose(Engine.load(out).posteriors(wav), pred.posteriors(wav), atol=1e-4)  # train's ONNX form


def test_a_final_model_that_answers_nan_is_refused(setup, tmp_path, monkeypatch):
    """A diverged final fit (NaN weights) is not written; the bundle folder is left as it was (absent)."""
    from emoboost.methods.logreg import LogRegProbe as LogReg

    monkeypatch.setattr(LogReg, "predict_proba", lambda self, data: np.full((len(data), len(self.classes)), np.nan))
    out = tmp_path / "nan-final"
    with pytest.raises(ValueError, match=r"^the final logreg model gives non-finite probabilities on its own training "
                                         r"utterances \(its training diverged: NaN loss or weights\); nothing was written"):
        train_final(setup["run"], out, progress=False)
    assert not out.exists()


def test_an_onnx_form_with_nan_mel_filters_is_not_written(setup, tmp_path, monkeypatch, capsys):
    """NaN in the exported mel filterbank: train keeps the torch model, says why there is no ONNX form,
    and leaves none behind; `emoboost export` refuses in one line and keeps nothing."""
    from emoboost.inference import export

    real = export._write_encoder

    def nan_filters(upstream, layers, classes, out, opset):
        pre = real(upstream, layers, classes, out, opset)
        filters = np.load(out / "mel_filters.npy")
        filters[3, 5] = np.nan
        np.save(out / "mel_filters.npy", filters)
        return pre

    monkeypatch.setattr(export, "_write_encoder", nan_filters)
    out = tmp_path / "final"
    assert main(["train", "--from-run", str(setup["run"]), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"ONNX form: no ({out / 'onnx' / 'mel_filters.npy'}: the mel filterbank holds non-finite values; " \
           "the export was not kept)" in printed
    assert not (out / "onnx").exists() and Engine.load(out).backend.name == "torch"
    assert main(["export", str(setup["bundle"]), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the mel filterbank holds non-finite values" in err
    assert not (tmp_path / "x").exists()
