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


@pytest.mark.parametrize("layer,pooling", [(1, "utterance"), ("weighted", "utterance"), (1, "segment"),
                                           ("0,1", "utterance")])
def test_linear_learns_and_roundtrips(tmp_path, layer, pooling):
    data = synthetic()
    train, valid, test = data.subset(range(0, 40)), data.subset(range(40, 50)), data.subset(range(50, 60))
    m = get_method("linear")(["a", "b", "c"], layer=layer, pooling=pooling, max_epochs=60, lr=3e-3)
    m.fit(train, valid, seed=0)
    acc = (m.predict(test) == test.y).mean()
    assert acc >= 0.9
    p = m.predict_proba(test)
    assert p.shape == (10, 3) and np.allclose(p.sum(1), 1)
    segs = m.predict_segments(test)
    # segment pooling: one posterior per stored 10-frame segment; utterance pooling: one per utterance
    want = [1 + i % 2 for i in range(50, 60)] if pooling == "segment" else [1] * 10
    assert [len(s) for s in segs] == want
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


def test_segment_pooling_equals_old_per_segment_means():
    """pooling=segment on segment-encoded features reproduces the old per-segment mean inputs exactly."""
    data = synthetic(n_utt=12)
    m = get_method("linear")(["a", "b", "c"], layer=1, pooling="segment")
    inputs, seg_utt = m.segment_inputs(data)
    arrs = [data.ssl.source.raw_frames(i) for i in range(12)]  # [L, S*T, D]
    old = np.concatenate([a[1].reshape(-1, 10, a.shape[-1]).mean(axis=1, dtype=np.float64) for a in arrs])
    assert np.allclose(inputs["pooled"][:, 0], old, atol=1e-5)
    assert seg_utt.tolist() == [i for i in range(12) for _ in range(1 + i % 2)]


def test_utterance_pooling_uses_all_frames_of_the_clip():
    data = synthetic(n_utt=6)
    m = get_method("linear")(["a", "b", "c"], layer=[0, 1])
    inputs, seg_utt = m.segment_inputs(data)
    assert inputs["pooled"].shape == (6, 2, 16) and seg_utt.tolist() == list(range(6))
    f = data.ssl.source.raw_frames(3).astype(np.float64)
    assert np.allclose(inputs["pooled"][3], f[[0, 1]].mean(axis=1), atol=1e-4)


def test_speaker_norm_removes_a_speaker_offset():
    """A constant offset added to one test speaker's features changes nothing under speaker_norm."""
    data = synthetic(n_utt=90)
    train, test = data.subset(range(60)), data.subset(range(60, 90))
    m = get_method("linear")(["a", "b", "c"], layer=1, speaker_norm="speaker", max_epochs=30).fit(train, seed=0)
    p = m.predict_proba(test)
    frames = [test.ssl.source.raw_frames(int(i)).astype(np.float32) for i in test.ssl.idx]
    shifted = [f + 5.0 if test.groups[j] == test.groups[0] else f for j, f in enumerate(frames)]
    from emoboost.features.store import ArraySource, SSLView

    src = ArraySource(shifted, [s.num_samples for s in (test.ssl.source.stats(int(i)) for i in test.ssl.idx)])
    test2 = UtteranceSet(test.ids, test.y, test.groups, ssl=SSLView(src))
    assert np.allclose(m.predict_proba(test2), p, atol=1e-4)
    plain = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=30).fit(train, seed=0)
    assert not np.allclose(plain.predict_proba(test2), plain.predict_proba(test), atol=1e-2)
