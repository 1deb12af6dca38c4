import numpy as np
import pytest

from builders import clips, head_proba, lone_clips, synthetic
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
    from sklearn.model_selection import GroupKFold

    real = GroupKFold.split

    def spy(self, X, y, groups):
        seen.append(set(groups))
        return real(self, X, y, groups)
    monkeypatch.setattr(GroupKFold, "split", spy)
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


@pytest.mark.parametrize("layer", [1, "2,1", -1])
@pytest.mark.parametrize("speaker_norm", ["none", "speaker"])
def test_pooled_head_equals_predict_proba(tmp_path, layer, speaker_norm):
    data, frames = clips()
    m = get_method("logreg")(["a", "b", "c"], layer=layer, speaker_norm=speaker_norm, Cs=[1.0])
    m.fit(data.subset(range(40)))
    test = lone_clips(frames[40:], data.y[40:])
    want = m.predict_proba(test)
    head = m.pooled_head()
    assert head["layers"] == {1: [1], "2,1": [2, 1], -1: [2]}[layer]
    assert np.abs(head_proba(head, frames[40:]) - want).max() < 1e-6
    assert np.ptp(want, axis=0).max() > 0.05  # posteriors vary by clip
    m.save(tmp_path / "lr")
    assert Method.load(tmp_path / "lr").pooled_head()["layers"] == head["layers"]


def test_speaker_norm_head_uses_the_fallback_statistics():
    """The head folds the training-set z-norm in: it differs from the plain model's standardisation."""
    data, _ = clips()
    a = get_method("logreg")(["a", "b", "c"], layer=1, speaker_norm="speaker", Cs=[1.0]).fit(data)
    sn = a.spk_
    head = a.pooled_head()
    assert np.allclose(head["mean"], sn.mean_.astype(np.float64) + sn.std_ * a.mean_)
    assert np.allclose(head["scale"], sn.std_.astype(np.float64) * a.scale_)


def test_no_head_for_segment_pooling():
    data = synthetic(n_utt=30)
    m = get_method("logreg")(["a", "b", "c"], layer=1, pooling="segment", Cs=[1.0]).fit(data)
    assert m.pooled_head() is None
    assert get_method("logreg")(["a", "b", "c"], layer=1, stats="meanstd", Cs=[1.0]).fit(data).pooled_head() is None


def test_a_saved_model_predicts_without_scikit_learn(tmp_path):
    """Loading and predicting a fitted probe imports no scikit-learn (cold `predict` start-up)."""
    import subprocess
    import sys

    data = synthetic(n_utt=30)
    m = get_method("logreg")(["a", "b", "c"], layer=1, Cs=[1.0]).fit(data)
    m.save(tmp_path / "lr")
    code = ("import sys\n"
            "from emoboost.methods import Method\n"
            f"Method.load({str(tmp_path / 'lr')!r})\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'sklearn'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_layer_auto_is_the_default_chooses_on_training_speakers_and_roundtrips(tmp_path):
    from builders import speakers_by_class

    data = speakers_by_class(n_utt=120, L=4, informative=(1,))
    train, test = data.subset(range(90)), data.subset(range(90, 120))
    m = get_method("logreg")(["a", "b", "c"])
    assert m.params["layer"] == "auto" and m.ssl_layers(4) == [0, 1, 2, 3]  # the store keeps every layer
    m.fit(train)
    assert len(m.committee_) == 3 and all(1 in lay for lay, _ in m.committee_)  # every member reads layer 1
    assert m.layers_ == sorted({v for lay, _ in m.committee_ for v in lay})  # the union of the members' runs
    assert m.ssl_layers(4) == m.layers_  # then only the chosen ones are read
    assert len(m.layer_scores_) == 9 and m.layer_scores_["0"] < 0.7 <= m.layer_scores_["1"]
    d = m.describe()
    assert d["layers (layer=auto: inner CV on training speakers)"] == ",".join(map(str, m.layers_))
    assert d["layer=auto committee"].count("(C=") == 3 and "logreg C (inner CV on training speakers)" not in d
    assert "speaker-grouped" in d["inner CV"] and d["layer=auto candidates"].startswith("9 runs")
    assert (m.predict(test) == test.y).mean() >= 0.9
    m.save(tmp_path / "auto")
    loaded = Method.load(tmp_path / "auto")
    assert loaded.layers_ == m.layers_ and loaded.pooled_head()["layers"] == m.layers_
    assert loaded.committee_ == m.committee_ and loaded.describe() == d
    assert np.allclose(loaded.predict_proba(test), m.predict_proba(test))


def test_layer_auto_committee_is_the_mean_logit_of_its_members():
    """The saved head is exactly the members' averaged logits (a normalised geometric mean of posteriors)."""
    from sklearn.linear_model import LogisticRegression

    from builders import speakers_by_class

    data = speakers_by_class(n_utt=90, L=4, informative=(1, 2))
    train, test = data.subset(range(60)), data.subset(range(60, 90))
    m = get_method("logreg")(["a", "b", "c"]).fit(train)
    x = train.ssl_view().pooled(list(range(4)))
    mu, sd = x.mean(0), x.std(0) + 1e-5
    xt = (test.ssl_view().pooled(list(range(4))) - mu) / sd
    logp = np.mean([LogisticRegression(C=c, max_iter=2000).fit(((x - mu) / sd)[:, lay].reshape(60, -1), train.y)
                    .predict_log_proba(xt[:, lay].reshape(30, -1)) for lay, c in m.committee_], axis=0)
    want = np.exp(logp - logp.max(1, keepdims=True))
    assert np.allclose(m.predict_proba(test), want / want.sum(1, keepdims=True), atol=1e-6)


def test_layer_auto_with_one_training_speaker_uses_stratified_inner_folds():
    from builders import speakers_by_class

    data = speakers_by_class(n_utt=60, L=3, informative=(2,))
    data.groups[:] = "only"
    m = get_method("logreg")(["a", "b", "c"]).fit(data)
    assert 2 in m.layers_ and "single training speaker" in m.describe()["inner CV"]
    fixed = get_method("logreg")(["a", "b", "c"], layer=2).fit(data)  # C is chosen too, no longer Cs[0] untried
    assert len(fixed.cv_scores_) == 3 and "single training speaker" in fixed.describe()["inner CV"]
    # the seed shuffles those folds, so a run's seeds must not share the fit; speaker-grouped folds ignore it
    assert not m.deterministic_fit and not fixed.deterministic_fit
    assert get_method("logreg")(["a", "b", "c"], layer=2).fit(speakers_by_class(n_utt=60, L=3)).deterministic_fit


def test_layer_auto_refuses_segment_pooling():
    with pytest.raises(ValueError, match="pooled statistics.*name the layer"):
        get_method("logreg")(["a", "b"], pooling="segment")
    assert get_method("logreg")(["a", "b"], pooling="segment", layer=3).needs_frames()


def test_fixed_layer_choice_of_c_is_the_grouped_inner_cv_it_always_was():
    """layer=3 and friends keep their numbers: C by GroupKFold over the training speakers, scored by UA."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    from builders import speakers_by_class
    from emoboost.evaluation.metrics import unweighted_accuracy

    data = speakers_by_class(n_utt=90, L=3, informative=(1,), D=16)
    m = get_method("logreg")(["a", "b", "c"], layer="1,2").fit(data)
    x = data.ssl_view().pooled([1, 2]).reshape(90, -1)
    xs = (x - x.mean(0)) / (x.std(0) + 1e-5)
    want = {}
    for c in (0.01, 0.1, 1.0):
        s = [unweighted_accuracy(data.y[va], LogisticRegression(C=c, max_iter=2000).fit(xs[tr], data.y[tr])
                                 .predict(xs[va])) for tr, va in GroupKFold(3).split(xs, data.y, data.groups)]
        want[c] = float(np.mean(s))
    assert m.cv_scores_ == pytest.approx(want) and m.layers_ == [1, 2]
