"""Method base class: declared parameters only, and saved models that fail to load say which file and why."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from emoboost.methods import Method, UtteranceSet, get_method
from emoboost.methods.base import accepts_param
from emoboost.methods.params import Float, Param
from emoboost.methods.trainer import TorchSegmentMethod


class _Declared(Method):
    name = "declared"
    PARAMS: dict[str, Any] = {"alpha": Param(1.0, Float(0.0)), "layer": Param(-1, Float())}

    def fit(self, train, valid=None, seed=0):
        return self

    def predict_proba(self, data):
        return np.zeros((len(data), len(self.classes)))


class _Override(_Declared):
    name = "override"
    PARAMS: dict[str, Any] = {"alpha": 2.5}  # a new default, the base's rule


def test_a_method_only_takes_what_it_declares():
    m = _Declared(["a", "b"], alpha=2.0)
    assert m.params == {"alpha": 2.0, "layer": -1}                 # defaults merged in by the base class
    with pytest.raises(ValueError, match=r"declared: unknown parameter\(s\) 'lyaer' \(did you mean 'layer'\?\); "
                                         r"valid: alpha, layer"):
        _Declared(["a", "b"], lyaer=2)
    with pytest.raises(ValueError, match=r"'alpah', 'lyaer', 'zzz' \(did you mean 'alpha' for 'alpah', 'layer' for "
                                         r"'lyaer'\?\)"):
        _Declared(["a", "b"], lyaer=2, alpah=1, zzz=0)
    assert _Override(["a", "b"]).params == {"alpha": 2.5, "layer": -1}
    with pytest.raises(ValueError, match=r"override: alpha must be a finite number >= 0, got -1"):
        _Override(["a", "b"], alpha=-1)                           # the inherited rule still holds


def test_a_declaration_without_a_rule_or_with_a_bad_default_is_refused_when_the_class_is_made():
    with pytest.raises(TypeError, match="'beta' has a default but no rule"):
        type("_NoRule", (_Declared,), {"PARAMS": {"beta": 1}})
    with pytest.raises(TypeError, match="the default of 'alpha' breaks its own rule"):
        type("_BadDefault", (_Declared,), {"PARAMS": {"alpha": -3.0}})


@pytest.mark.parametrize("method,own", [
    ("svm", "speaker_norm"),
    ("msemoboost", "guidance"),
    ("ssl_cnn", "proj_dim"),
    ("spec_cnn", "arch"),
])
def test_unknown_parameter_is_refused_with_the_valid_ones(method, own):
    klass = get_method(method)
    m = klass(["a", "b"])                                          # every default is accepted
    known = set(klass.declared_params())
    assert own in known and set(m.params) == known
    if method != "svm":                                            # the shared training loop's parameters count
        assert set(TorchSegmentMethod.declared_params()) <= known
        assert klass(["a", "b"], lr=1e-4, batch_size=4).params["batch_size"] == 4
    with pytest.raises(ValueError, match=rf"{method}: unknown parameter\(s\) 'lyaer'.*valid: .*{own}") as e:
        klass(["a", "b"], lyaer=2)
    assert str(e.value).count("\n") == 0
    assert accepts_param(klass, own) and not accepts_param(klass, "lyaer")
    assert accepts_param(klass, "max_epochs") == (method != "svm")


# ---- loading saved models ----------------------------------------------------------------------------------

def _saved_svm(tmp_path):
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 8)
    groups = np.repeat([f"s{i}" for i in range(4)], 4)
    feats = [(rng.standard_normal(6) + 3 * c).astype(np.float32) for c in y]
    data = UtteranceSet([f"u{i}" for i in range(16)], y, groups, {"egemaps": feats})
    m = get_method("svm")(["a", "b"], C_grid=[1.0], gamma_grid=[1.0], inner_folds=2).fit(data)
    d = m.save(tmp_path / "model")
    assert np.allclose(Method.load(d).predict_proba(data), m.predict_proba(data))
    return d, data


def test_broken_method_json_names_the_file(tmp_path):
    d, _ = _saved_svm(tmp_path)
    cfg_path = d / "method.json"
    good = json.loads(cfg_path.read_text())
    cases = {
        '{"method": "svm", "classes": ["a", ': r"not valid JSON \(.* at line 1 column \d+\)",
        "[1, 2]": r"expected a JSON object, got list",
        json.dumps({k: v for k, v in good.items() if k != "classes"}): r"missing key\(s\) classes",
        json.dumps({**good, "method": "nosuch"}): r"broken method config: unknown method 'nosuch'",
        json.dumps({**good, "params": {**good["params"], "lyaer": 2}}): r"unknown parameter\(s\) 'lyaer'",
        json.dumps({**good, "params": {**good["params"], "features": "mfcc"}}): r"features must be one of",
        json.dumps({**good, "classes": "ab"}): r"'classes' must be a list",
    }
    for text, pattern in cases.items():
        cfg_path.write_text(text)
        with pytest.raises(ValueError, match=pattern) as e:
            Method.load(d)
        assert str(e.value).startswith(f"{cfg_path}: "), str(e.value)
    cfg_path.unlink()
    with pytest.raises(FileNotFoundError, match="method.json: method config does not exist"):
        Method.load(d)


def test_truncated_or_missing_weights_name_the_file(tmp_path):
    d, data = _saved_svm(tmp_path)
    weights = d / "model.safetensors"
    blob = weights.read_bytes()
    for cut in (len(blob) // 2, 7, 0):
        weights.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match=r"cannot load the model weights .*truncated, corrupt") as e:
            Method.load(d)
        assert str(e.value).startswith(f"{weights}: ") and "\n" not in str(e.value)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"model.safetensors: model weights missing"):
        Method.load(d)
