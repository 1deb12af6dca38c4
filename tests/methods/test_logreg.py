import numpy as np
import pytest
from test_linear import synthetic

from emoboost.methods import Method, get_method


def test_logreg_learns_roundtrips_and_matches_sklearn(tmp_path):
    data = synthetic(n_utt=90)
    train, test = data.subset(range(60)), data.subset(range(60, 90))
    m = get_method("logreg")(["a", "b", "c"], layer=1).fit(train, seed=0)
    assert m.C_ in (0.01, 0.1, 1.0) and len(m.cv_scores_) == 3
    assert (m.predict(test) == test.y).mean() >= 0.9
    # our closed-form segment posteriors equal sklearn's
    x, _ = m._pooled(test)
    assert np.allclose(m._seg_proba(m._standardise(x)), m.clf_.predict_proba(m._standardise(x)), atol=1e-8)
    m.save(tmp_path / "lr")
    assert np.allclose(Method.load(tmp_path / "lr").predict_proba(test), m.predict_proba(test))


def test_inner_cv_groups_are_training_speakers_only(monkeypatch):
    data = synthetic(n_utt=60)
    train = data.subset(range(40))
    seen = []
    import emoboost.methods.logreg as mod

    real = mod.GroupKFold.split

    def spy(self, X, y, groups):
        seen.append(set(groups))
        return real(self, X, y, groups)
    monkeypatch.setattr(mod.GroupKFold, "split", spy)
    get_method("logreg")(["a", "b", "c"], layer=1).fit(train)
    assert seen and seen[0] == set(train.groups)


def test_binary_and_weighted_rejected():
    data = synthetic(n_utt=40, n_classes=2)
    m = get_method("logreg")(["a", "b"], layer=1, Cs=[1.0]).fit(data.subset(range(30)))
    assert (m.predict(data.subset(range(30, 40))) == data.y[30:40]).mean() >= 0.9
    with pytest.raises(ValueError, match="one layer or a list"):
        get_method("logreg")(["a", "b"], layer="weighted").fit(data)


def test_layer_list_concatenates():
    data = synthetic(n_utt=60)
    m = get_method("logreg")(["a", "b", "c"], layer="0,1", Cs=[1.0]).fit(data.subset(range(40)))
    assert m.coef_.shape == (3, 32)
    assert (m.predict(data.subset(range(40, 60))) == data.y[40:60]).mean() >= 0.9
