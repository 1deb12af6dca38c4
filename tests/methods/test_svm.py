import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from builders import functionals_set
from emoboost.methods import Method, UtteranceSet, get_method
from emoboost.methods import svm as svm_mod
from emoboost.methods.svm import FunctionalsSVM, _from_sklearn

CLASSES = ["a", "b", "c"]


def split_by_speaker(data, train_spk, valid_spk, test_spk):
    pick = lambda spk: np.flatnonzero(np.isin(data.groups, spk))  # noqa: E731
    return data.subset(pick(train_spk)), data.subset(pick(valid_spk)), data.subset(pick(test_spk))


def test_inner_cv_never_sees_test_speakers(monkeypatch):
    data = functionals_set()
    train, valid, test = split_by_speaker(data, ["spk0", "spk1", "spk2", "spk3"], ["spk4"], ["spk5"])
    seen = {"fit": [], "splits": []}

    class SpyGridSearchCV(svm_mod.GridSearchCV):
        def fit(self, X, y=None, **params):
            seen["fit"].append((np.array(X), np.array(params["groups"])))
            return super().fit(X, y, **params)

    class SpyGroupKFold(svm_mod.GroupKFold):
        def split(self, X, y=None, groups=None):
            for tr, te in super().split(X, y, groups):
                seen["splits"].append((np.asarray(groups)[tr], np.asarray(groups)[te]))
                yield tr, te

    monkeypatch.setattr(svm_mod, "GridSearchCV", SpyGridSearchCV)
    monkeypatch.setattr(svm_mod, "GroupKFold", SpyGroupKFold)
    m = FunctionalsSVM(CLASSES, features="egemaps", C_grid=[1.0, 10.0], gamma_grid=[0.1, 1.0], inner_folds=3)
    m.fit(train, valid, seed=0)

    (X, groups), = seen["fit"]
    assert set(groups) == {"spk0", "spk1", "spk2", "spk3", "spk4"}  # train + valid speakers, merged
    assert "spk5" not in set(groups) and len(X) == len(train) + len(valid)
    test_rows = np.stack(test.features["egemaps"]).astype(np.float64)
    assert not any(np.any(np.all(np.isclose(X, r), axis=1)) for r in test_rows)
    # Grid search (3 folds) + calibration (3 folds), every inner split speaker-disjoint.
    assert len(seen["splits"]) >= 6
    for tr_groups, te_groups in seen["splits"]:
        assert not set(tr_groups) & set(te_groups)
        assert "spk5" not in set(tr_groups) | set(te_groups)


def test_learns_and_roundtrips_exactly(tmp_path):
    data = functionals_set()
    train, valid, test = split_by_speaker(data, ["spk0", "spk1", "spk2", "spk3"], ["spk4"], ["spk5"])
    m = get_method("svm")(CLASSES, features="egemaps", inner_folds=3)
    assert m.requires == ("egemaps",)
    m.fit(train, valid, seed=0)
    p = m.predict_proba(test)
    assert p.shape == (len(test), 3) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == test.y).mean() >= 0.9
    assert m.describe()["C"] in [0.1, 1.0, 10.0, 100.0]
    assert m.num_parameters() > 0 and m.embed(test).shape == (len(test), 12)
    assert m.model_.calibration == "temperature"
    m.save(tmp_path / "svm")
    assert not list(tmp_path.glob("svm/*.pkl")) and (tmp_path / "svm" / "model.safetensors").is_file()
    m2 = Method.load(tmp_path / "svm")
    assert isinstance(m2, FunctionalsSVM) and m2.requires == ("egemaps",)
    np.testing.assert_array_equal(m2.predict_proba(test), p)
    segs = m2.predict_segments(test)
    assert len(segs) == len(test) and segs[0].shape == (1, 3)
    # predict streams utterance features as [1, F]; same posteriors as the runner's [F] vectors.
    one = UtteranceSet(test.ids[:1], test.y[:1], test.groups[:1], {"egemaps": [test.features["egemaps"][0][None]]})
    np.testing.assert_array_equal(m2.predict_proba(one), p[:1])
    bad = UtteranceSet(["x"], np.array([0]), np.array(["z"]), {"egemaps": [np.zeros((2, 12))]})
    with pytest.raises(ValueError, match="1-D utterance vector"):
        m2.predict_proba(bad)


def test_chance_on_shuffled_labels():
    # Can fail: with labels unrelated to the features the SVM must not look good on new speakers.
    data = functionals_set(n_spk=8, per_class=5)
    rng = np.random.default_rng(1)
    data.y = rng.permutation(data.y)
    train, valid, test = split_by_speaker(data, [f"spk{i}" for i in range(5)], ["spk5"], ["spk6", "spk7"])
    m = FunctionalsSVM(CLASSES, inner_folds=3, C_grid=[1.0], gamma_grid=[1.0]).fit(train, valid)
    assert (m.predict(test) == test.y).mean() < 0.6


@pytest.mark.parametrize("calibration", ["temperature", "sigmoid"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_numpy_model_matches_sklearn(n_classes, calibration):
    data = functionals_set(n_classes=n_classes, n_spk=4, F=7, seed=n_classes)
    x = np.stack(data.features["egemaps"]).astype(np.float64)
    pipe = Pipeline([("scale", StandardScaler()), ("svc", SVC(C=3.0, gamma=0.2, class_weight="balanced"))])
    splits = list(GroupKFold(n_splits=2).split(x, data.y, data.groups))
    cal = CalibratedClassifierCV(pipe, method=calibration, cv=splits, ensemble=False).fit(x, data.y)
    arrays = _from_sklearn(cal, np.zeros(x.shape[1]))
    fresh = x[::3] + 0.5  # points the SVM never saw
    ref_pipe = cal.calibrated_classifiers_[0].estimator
    np.testing.assert_allclose(arrays.decision_function(fresh), ref_pipe.decision_function(fresh), atol=1e-8)
    proba = arrays.predict_proba(fresh)
    np.testing.assert_allclose(proba, cal.predict_proba(fresh), atol=1e-8)
    if calibration == "temperature":  # monotone: the label is the SVM's own decision
        np.testing.assert_array_equal(proba.argmax(1), ref_pipe.predict(fresh))


def test_sigmoid_calibration_roundtrips(tmp_path):
    data = functionals_set()
    m = FunctionalsSVM(CLASSES, calibration="sigmoid", inner_folds=2, C_grid=[1.0], gamma_grid=[1.0])
    m.fit(data.subset(range(54)))
    m.save(tmp_path / "s")
    m2 = Method.load(tmp_path / "s")
    assert m2.model_.calibration == "sigmoid" and len(m2.model_.calib_b) == 3
    np.testing.assert_array_equal(m2.predict_proba(data.subset(range(54, 72))), m.predict_proba(data.subset(range(54, 72))))


def test_features_choice_and_nan_imputation():
    with pytest.raises(ValueError, match="features must be one of"):
        FunctionalsSVM(CLASSES, features="gemaps")
    with pytest.raises(ValueError, match="calibration must be"):
        FunctionalsSVM(CLASSES, calibration="isotonic")
    m = FunctionalsSVM(CLASSES, features="compare")
    assert m.requires == ("compare",)
    assert FunctionalsSVM(CLASSES).requires == ("egemaps",)  # computed from the parameters, never stored
    data = functionals_set(kind="mfcc_stats")
    data.features["mfcc_stats"][0] = data.features["mfcc_stats"][0].copy()
    data.features["mfcc_stats"][0][3] = np.nan
    m = FunctionalsSVM(CLASSES, features="mfcc_stats", inner_folds=2, C_grid=[1.0], gamma_grid=[1.0])
    m.fit(data.subset(range(54)), None)
    assert np.all(np.isfinite(m.predict_proba(data.subset(range(54, 72)))))
    with pytest.raises(ValueError, match="trained on 12"):
        m.predict_proba(UtteranceSet(["x"], np.array([0]), np.array(["z"]), {"mfcc_stats": [np.zeros(5)]}))


def test_class_missing_from_training_gets_zero_probability():
    data = functionals_set()
    keep = np.flatnonzero(data.y != 2)
    m = FunctionalsSVM(CLASSES, inner_folds=2, C_grid=[1.0], gamma_grid=[1.0]).fit(data.subset(keep))
    p = m.predict_proba(data.subset(range(6)))
    assert p.shape == (6, 3) and np.all(p[:, 2] == 0) and np.allclose(p.sum(1), 1)


def test_needs_two_training_speakers():
    data = functionals_set()
    one = data.subset(np.flatnonzero(data.groups == "spk0"))
    with pytest.raises(ValueError, match="2 training speakers"):
        FunctionalsSVM(CLASSES).fit(one)


def offset_set(seed=0) -> UtteranceSet:
    """Speakers whose voices shift every feature by a large offset and scale (the case speaker norm fixes)."""
    rng = np.random.default_rng(seed)
    data = functionals_set(n_spk=7, per_class=6, F=12, seed=seed)
    feats = []
    shift = {g: (rng.standard_normal(12) * 60, np.exp(rng.standard_normal(12) * 0.5)) for g in np.unique(data.groups)}
    for g, f in zip(data.groups, data.features["egemaps"]):
        off, sc = shift[g]
        feats.append((f * sc + off).astype(np.float32))
    return UtteranceSet(data.ids, data.y, data.groups, {"egemaps": feats})


def test_speaker_norm_uses_each_speakers_own_statistics(tmp_path):
    data = offset_set()
    spk = sorted(set(data.groups))
    train, valid, test = split_by_speaker(data, spk[:5], spk[5:6], spk[6:])
    kw = dict(C_grid=[1.0, 10.0], gamma_grid=[0.1, 1.0], inner_folds=3)
    plain = FunctionalsSVM(CLASSES, **kw).fit(train, valid)
    norm = FunctionalsSVM(CLASSES, speaker_norm="speaker", **kw).fit(train, valid)
    acc = lambda m, d: (m.predict(d) == d.y).mean()  # noqa: E731
    assert acc(norm, test) > acc(plain, test)
    assert acc(norm, test) >= 0.9
    assert "per-speaker" in norm.describe()["speaker_norm"] and plain.describe()["speaker_norm"] == "none"
    # A test speaker's own offset is removed: shifting all its utterances changes nothing.
    shifted = UtteranceSet(test.ids, test.y, test.groups, {"egemaps": [f + 500.0 for f in test.features["egemaps"]]})
    np.testing.assert_allclose(norm.predict_proba(shifted), norm.predict_proba(test), atol=1e-6)
    assert not np.allclose(plain.predict_proba(shifted), plain.predict_proba(test), atol=1e-3)
    # Fewer than min_speaker_utts utterances: pooled training statistics, and the reload is exact.
    one = test.subset([0])
    p_one = norm.predict_proba(one)
    assert not np.allclose(p_one, norm.predict_proba(test)[:1], atol=1e-6)
    norm.save(tmp_path / "m")
    m2 = Method.load(tmp_path / "m")
    np.testing.assert_array_equal(m2.predict_proba(test), norm.predict_proba(test))
    np.testing.assert_array_equal(m2.predict_proba(one), p_one)


def test_speaker_norm_rejects_unknown_mode():
    with pytest.raises(ValueError, match="speaker_norm"):
        FunctionalsSVM(CLASSES, speaker_norm="utterance")
