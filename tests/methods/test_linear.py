import numpy as np
import pytest

from emoboost.methods import Method, UtteranceSet, get_method


def synthetic(n_utt=60, L=3, T=10, D=16, n_classes=3, seed=0, informative_layer=1):
    """Class is encoded (weakly) in one layer's mean; other layers are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_utt) % n_classes
    centers = rng.standard_normal((n_classes, D)) * 3
    feats = []
    for i in range(n_utt):
        s = 1 + i % 2
        x = rng.standard_normal((s, L, T, D)).astype(np.float32)
        x[:, informative_layer] += centers[y[i]][None, None]
        feats.append(x.astype(np.float16))
    return UtteranceSet([f"u{i}" for i in range(n_utt)], y, np.array([f"s{i % 6}" for i in range(n_utt)]),
                        {"ssl": feats})


@pytest.mark.parametrize("layer", [1, "weighted"])
def test_linear_learns_and_roundtrips(tmp_path, layer):
    data = synthetic()
    train, valid, test = data.subset(range(0, 40)), data.subset(range(40, 50)), data.subset(range(50, 60))
    m = get_method("linear")(["a", "b", "c"], layer=layer, max_epochs=30)
    m.fit(train, valid, seed=0)
    acc = (m.predict(test) == test.y).mean()
    assert acc >= 0.9
    p = m.predict_proba(test)
    assert p.shape == (10, 3) and np.allclose(p.sum(1), 1)
    segs = m.predict_segments(test)
    assert [len(s) for s in segs] == [1 + i % 2 for i in range(50, 60)]
    m.save(tmp_path / "m")
    m2 = Method.load(tmp_path / "m")
    assert np.allclose(m2.predict_proba(test), p)


def test_noise_layer_is_not_learnable():
    # The test can fail: on a pure-noise layer the probe must be near chance.
    data = synthetic(n_utt=90)
    m = get_method("linear")(["a", "b", "c"], layer=0, max_epochs=20)
    m.fit(data.subset(range(60)), data.subset(range(60, 70)), seed=0)
    test = data.subset(range(70, 90))
    assert (m.predict(test) == test.y).mean() < 0.7


def test_seeded_reruns_identical():
    data = synthetic()
    a = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=5).fit(data.subset(range(40)), seed=3)
    b = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=5).fit(data.subset(range(40)), seed=3)
    test = data.subset(range(40, 60))
    assert np.array_equal(a.predict_proba(test), b.predict_proba(test))


def test_bad_layer_rejected():
    data = synthetic()
    with pytest.raises(ValueError, match="out of range"):
        get_method("linear")(["a", "b", "c"], layer=7).fit(data.subset(range(10)))


def test_refit_retrains_on_train_plus_valid_for_chosen_epochs():
    data = synthetic()
    m = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=12, patience=3, refit=True)
    m.fit(data.subset(range(40)), data.subset(range(40, 50)), seed=0)
    assert len(m.history_) == m.best_epoch_  # the final model trained exactly the chosen number of epochs
    assert len(m.selection_history_) >= m.best_epoch_
    assert "valid_UA" in m.selection_history_[0] and "valid_UA" not in m.history_[0]
    test = data.subset(range(50, 60))
    assert (m.predict(test) == test.y).mean() >= 0.8
