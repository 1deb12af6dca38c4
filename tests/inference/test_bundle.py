"""One schema for every model on disk: kinds, old layouts, checks before any weights load, backend choice."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from builders import pitch_tone, pooled_ensemble
from emoboost.inference.bundle import read_bundle
from emoboost.inference.engine import Engine


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return pooled_ensemble(tmp_path_factory.mktemp("bundle"))[0]


def test_kinds_of_a_run_directory_and_its_fold_model(run):
    b = read_bundle(run)
    assert b.kind == "ensemble" and b.classes == ["high", "low"] and len(b.models) == 2 and b.onnx_dir is None
    assert b.exports_to() == []  # an ensemble: train one final model and export that
    fold = read_bundle(run / "models" / "m0")  # a fold model inside the run: the run's bundle describes it
    assert fold.kind == "model" and fold.models == [run / "models" / "m0"] and fold.fingerprint == b.fingerprint
    wav = pitch_tone(1.5, 300.0)
    one = Engine.load(run / "models" / "m0").posteriors(wav)
    both = Engine.load(run).posteriors(wav)
    other = Engine.load(run / "models" / "m1").posteriors(wav)
    np.testing.assert_allclose(both, (one + other) / 2, atol=1e-12)  # the ensemble is the mean of its folds


def test_old_run_directories_keep_loading(run, tmp_path):
    """A bundle written before segment_encoding / encoder_window existed: the defaults of that time apply."""
    old = tmp_path / "old"
    shutil.copytree(run, old)
    d = json.loads((old / "bundle.json").read_text())
    for k in ("segment_encoding", "encoder_window", "segment_hop"):
        d.pop(k, None)
    (old / "bundle.json").write_text(json.dumps(d))
    b = read_bundle(old)
    assert (b.segment_encoding, b.encoder_window, b.segment_hop) == ("segment", 30.0, None)
    p = Engine.load(old).predict_wav(pitch_tone(4.0, 250.0), timeline=True)
    assert p.label in ("high", "low") and len(p.timeline) == 2  # segment encoding: two 3 s segments encoded apart


def test_the_encoder_runs_only_to_the_deepest_layer_the_models_read(run, tmp_path):
    """A layer=auto run's bundle lists every hidden state (the method before fitting); its fold models read only
    their committees'. The engine cuts the encoder at the deepest layer the loaded models read, and answers
    as before."""
    auto = tmp_path / "auto"
    shutil.copytree(run, auto)
    d = json.loads((auto / "bundle.json").read_text())
    d["upstream"]["layers"] = [0, 1, 2]
    (auto / "bundle.json").write_text(json.dumps(d))
    wav = pitch_tone(1.5, 300.0)
    cut, full = Engine.load(auto), Engine.load(run)
    assert cut.backend.upstream.layers_out == 2 == full.backend.upstream.layers_out  # hidden states 0 and 1 only
    np.testing.assert_allclose(cut.posteriors(wav), full.posteriors(wav), atol=1e-12)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(classes=["a"]), "'classes' must list at least 2 distinct"),
    (lambda d: d.update(classes=["a", "a"]), "'classes' must list at least 2 distinct"),
    (lambda d: d.update(classes="ab"), "'classes' must list"),
    (lambda d: d.pop("features"), "'features' must list"),
    (lambda d: d["upstream"].pop("spec"), "no upstream spec"),
    (lambda d: d.update(models=[]), "the run saved no models"),
    (lambda d: d.update(segment_length="x"), "broken run bundle"),
])
def test_a_broken_bundle_is_one_line_before_any_weights_load(run, tmp_path, monkeypatch, edit, message):
    import emoboost.methods.base as base

    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    d = json.loads((bad / "bundle.json").read_text())
    edit(d)
    (bad / "bundle.json").write_text(json.dumps(d))
    monkeypatch.setattr(base.Method, "load", classmethod(lambda *a, **k: pytest.fail("weights were read")))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        Engine.load(bad)


def test_classes_that_do_not_match_the_models_are_refused(run, tmp_path):
    bad = tmp_path / "swapped"
    shutil.copytree(run, bad)
    d = json.loads((bad / "bundle.json").read_text())
    d["classes"] = ["low", "high"]  # reordered: every answer would carry the other name
    (bad / "bundle.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="are not the bundle's"):
        Engine.load(bad)


def test_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory or model"):
        read_bundle(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not a run directory or model bundle"):
        read_bundle(tmp_path)


def test_backend_choice(run):
    b = read_bundle(run)
    assert b.choose_backend("auto") == "torch"  # no ONNX form beside a run directory
    with pytest.raises(ValueError, match="no ONNX form beside this model"):
        b.choose_backend("onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        b.choose_backend("tensorflow")
