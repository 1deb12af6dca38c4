"""emoboost.load: final bundle, run ensemble and ONNX export behind one predict / predict_many."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import emoboost
from builders import cv_run, save_tiny_whisper, tiny_corpus
from emoboost.audio import AudioError
from emoboost.experiment.refit import train_final
from emoboost.inference.engine import Engine, Prediction


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    corpus = tiny_corpus(tmp / "emodb")
    up = save_tiny_whisper(tmp / "tiny-whisper")
    run = cv_run(corpus, up, tmp / "run", tmp / "cache", "logreg", {"layer": 2, "Cs": [1.0]})
    train_final(run, tmp / "final", progress=False)
    return {"tmp": tmp, "wav": corpus / "wav", "run": run, "final": tmp / "final"}


def clip(path, sr: int, seconds: float = 1.3, seed: int = 0, channels: int = 1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.4 * np.sin(2 * np.pi * 420.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t))
    x = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
    sf.write(str(path), x.astype(np.float32), sr, subtype="FLOAT")
    return x.astype(np.float32)


def test_import_stays_light():
    code = "import emoboost, sys; print('torch' in sys.modules, 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == \
        ["False", "False"]


def test_load_final_equals_predictor(models):
    m = emoboost.load(models["final"])
    ref = Engine.load(models["final"])
    assert m.kind == "final" and m.classes == ["anger", "neutral", "sadness"] and "kind=final" in repr(m)
    for name in ("03a01Wa.wav", "09b01Ta.wav", "10a02Na.wav"):
        got = m.predict(models["wav"] / name)
        assert isinstance(got, Prediction)
        assert got.to_dict() == ref.predict_file(models["wav"] / name).to_dict()
    assert m.bundle["kind"] == "final"


def test_load_run_is_the_ensemble(models):
    m = emoboost.load(models["run"])
    assert m.kind == "ensemble" and m.engine.ensemble_size == 4 and "4 models" in repr(m)
    w = models["wav"] / "08a02Ta.wav"
    assert m.predict(w).to_dict() == Engine.load(models["run"]).predict_file(w).to_dict()


def test_arrays_are_resampled_like_files(models, tmp_path):
    m = emoboost.load(models["final"])
    x = clip(tmp_path / "44k.wav", 44100)
    from_file = m.predict(tmp_path / "44k.wav").to_dict()
    from_array = m.predict(x, sample_rate=44100).to_dict()
    assert from_array.pop("path") == "<array>"
    from_file.pop("path")
    assert from_array == from_file  # soxr HQ in both: the same samples reach the model
    stereo = clip(tmp_path / "st.wav", 22050, channels=2)
    pcm = (stereo * 32767).astype(np.int16)  # [T, 2] int16, as scipy / soundfile return them
    a, b = m.predict(pcm, sample_rate=22050), m.predict(tmp_path / "st.wav")
    assert a.label == b.label
    assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in m.classes) < 1e-3
    assert m.predict(pcm.T.copy(), sample_rate=22050).label == a.label  # [channels, T] too


def test_bad_calls_are_one_clear_error(models, tmp_path):
    m = emoboost.load(models["final"])
    with pytest.raises(ValueError, match="needs sample_rate"):
        m.predict(np.zeros(16000, np.float32))
    with pytest.raises(ValueError, match="sample_rate is for waveform arrays"):
        m.predict(models["wav"] / "03a01Wa.wav", sample_rate=16000)
    with pytest.raises(AudioError, match="numeric waveform"):
        m.predict(np.array(["a", "b"]), sample_rate=16000)
    with pytest.raises(AudioError, match="NaN"):
        m.predict(np.full(16000, np.nan, np.float32), sample_rate=16000)
    with pytest.raises(AudioError, match="too short"):
        m.predict(np.zeros(100, np.float32) + 0.1, sample_rate=16000)
    with pytest.raises(FileNotFoundError):
        emoboost.load(tmp_path / "nothing-here")


def test_predict_many_equals_predict_and_reports_bad_files(models, tmp_path, caplog):
    m = emoboost.load(models["final"])
    files = [models["wav"] / n for n in ("03a01Wa.wav", "08b01Na.wav", "10b02Wa.wav", "09a02Ta.wav")]
    x = clip(tmp_path / "x.wav", 8000)
    got = m.predict_many(files, batch_size=2, skip_errors=True)
    assert got[2] is None and "10b02Wa.wav" in caplog.text  # not audio: reported, not fatal
    for f, p in zip(files, got):
        if p is not None:
            assert p.to_dict() == m.predict(f).to_dict()
    with pytest.raises(AudioError, match="10b02Wa.wav"):
        m.predict_many(files, batch_size=3)
    arrays = m.predict_many([x, x[:8000]], sample_rate=8000)
    assert [p.to_dict() for p in arrays] == [m.predict(x, sample_rate=8000).to_dict(),
                                             m.predict(x[:8000], sample_rate=8000).to_dict()]
    with pytest.raises(ValueError, match="batch_size"):
        m.predict_many(files, batch_size=0)


def test_onnx_export_of_the_final_bundle(models, tmp_path):
    """The final bundle's head exports to ONNX; emoboost.load runs the export with the same answers."""
    pytest.importorskip("onnxruntime")
    import argparse

    from emoboost.cli.export import add_args
    from emoboost.cli.export import main as export_main
    from emoboost.inference.bundle import is_onnx_export
    from emoboost.inference.export import load_head

    head, _ = load_head(models["final"])

    args = add_args(argparse.ArgumentParser()).parse_args([str(models["final"]), "--out", str(tmp_path / "onnx")])
    assert export_main(args) == 0 and is_onnx_export(tmp_path / "onnx")
    onnx, torch_model = emoboost.load(tmp_path / "onnx"), emoboost.load(models["final"])
    assert onnx.kind == "onnx" and onnx.classes == torch_model.classes == head["classes"]
    for name in ("03a01Wa.wav", "09b01Ta.wav"):
        a, b = onnx.predict(models["wav"] / name), torch_model.predict(models["wav"] / name)
        assert a.label == b.label
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in head["classes"]) < 1e-4
    x = clip(tmp_path / "x.wav", 16000)
    assert onnx.predict(x, sample_rate=16000).label == torch_model.predict(x, sample_rate=16000).label
    assert [p.label for p in onnx.predict_many([models["wav"] / "03a01Wa.wav"])] == \
        [torch_model.predict(models["wav"] / "03a01Wa.wav").label]
