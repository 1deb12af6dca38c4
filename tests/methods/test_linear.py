import numpy as np
import pytest
import torch

from builders import clips, head_proba, lone_clips, synthetic
from emoboost.methods import Method, UtteranceSet, get_method


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
    from emoboost.features.views import ArraySource, SSLView

    src = ArraySource(shifted, [s.num_samples for s in (test.ssl.source.stats(int(i)) for i in test.ssl.idx)])
    test2 = UtteranceSet(test.ids, test.y, test.groups, ssl=SSLView(src))
    assert np.allclose(m.predict_proba(test2), p, atol=1e-4)
    plain = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=30).fit(train, seed=0)
    assert not np.allclose(plain.predict_proba(test2), plain.predict_proba(test), atol=1e-2)


@pytest.mark.parametrize("layer", [1, "weighted", "2,1", -1])
@pytest.mark.parametrize("speaker_norm", ["none", "speaker"])
def test_pooled_head_equals_predict_proba(tmp_path, layer, speaker_norm):
    data, frames = clips()
    m = get_method("linear")(["a", "b", "c"], layer=layer, speaker_norm=speaker_norm, max_epochs=15, lr=1e-2)
    m.fit(data.subset(range(40)), seed=0)
    test = lone_clips(frames[40:], data.y[40:])
    want = m.predict_proba(test)
    head = m.pooled_head()
    assert head["layers"] == {1: [1], "weighted": [0, 1, 2], "2,1": [2, 1], -1: [2]}[layer]
    assert head["weight"].shape == (3, 8 * len(head["layers"]))
    assert np.abs(head_proba(head, frames[40:]) - want).max() < 1e-6
    assert np.ptp(want, axis=0).max() > 0.05  # posteriors vary by clip: a constant head would not pass
    m.save(tmp_path / "m")
    again = Method.load(tmp_path / "m").pooled_head()
    assert again["layers"] == head["layers"] and np.allclose(again["weight"], head["weight"])


def test_weighted_head_folds_the_layer_weights():
    data, frames = clips()
    m = get_method("linear")(["a", "b", "c"], layer="weighted", max_epochs=30, lr=3e-2).fit(data, seed=0)
    w = torch.softmax(m.module_.weights.detach(), 0).numpy()
    assert w.max() - w.min() > 0.05  # the sum learned to prefer a layer, so folding is exercised
    head = m.pooled_head()
    blocks = head["weight"].reshape(3, 3, 8)  # [C, layer, D]
    assert np.allclose(blocks / w[None, :, None], m.module_.out.weight.detach().double().numpy()[:, None], atol=1e-6)


def test_no_head_for_segment_pooling_or_frame_stds():
    data = synthetic(n_utt=30)
    seg = get_method("linear")(["a", "b", "c"], layer=1, pooling="segment", max_epochs=2).fit(data, seed=0)
    ms = get_method("linear")(["a", "b", "c"], layer=1, stats="meanstd", max_epochs=2).fit(data, seed=0)
    assert seg.pooled_head() is None and ms.pooled_head() is None
    assert get_method("linear")(["a", "b", "c"]).pooled_head() is None  # not fitted


def test_training_segments_are_capped_per_utterance():
    from emoboost.methods.trainer import cap_per_utterance

    seg_utt = np.array([0] * 1000 + [1] * 3 + [2])
    keep = cap_per_utterance(seg_utt, 10)
    assert np.bincount(seg_utt[keep]).tolist() == [10, 3, 1]
    assert keep[0] == 0 and keep[9] == 999  # evenly spaced over the long utterance
    assert len(cap_per_utterance(seg_utt, None)) == len(seg_utt)


@pytest.mark.parametrize("select", ["ua", "loss"])
def test_early_stopping_selects_on_the_chosen_validation_score(select):
    data = synthetic(n_utt=60)
    train, valid = data.subset(range(45)), data.subset(range(45, 60))
    m = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=12, patience=12, lr=0.05, select=select)
    m.fit(train, valid)
    h = m.history_
    assert len(h) == 12 and all("valid_loss" in r and "valid_UA" in r for r in h)
    scores = [r["valid_UA"] if select == "ua" else -r["valid_loss"] for r in h]
    assert m.best_epoch_ == int(np.argmax(scores)) + 1  # first best epoch, by the chosen score
    with pytest.raises(ValueError, match="select must be one of"):
        get_method("linear")(["a", "b", "c"], layer=1, select="f1").fit(train, valid)


def test_device_is_a_runtime_option_checked_before_training(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = synthetic()
    m = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=3)
    assert m.device == "cpu" and "device" not in m.params  # never part of what the model is
    m.device = "cuda"
    with pytest.raises(ValueError, match="no CUDA device"):
        m.fit(data.subset(range(40)), seed=0)
    m.device = "auto"  # resolves to the CPU here; the weights and outputs stay plain CPU tensors / arrays
    m.fit(data.subset(range(40)), seed=0)
    assert {p.device.type for p in m.module_.parameters()} == {"cpu"}
    ref = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=3).fit(data.subset(range(40)), seed=0)
    assert np.array_equal(m.predict_proba(data.subset(range(40, 60))), ref.predict_proba(data.subset(range(40, 60))))


def test_layer_auto_is_the_default_and_roundtrips(tmp_path):
    from builders import speakers_by_class

    data = speakers_by_class(n_utt=120, L=4, informative=(2,))
    m = get_method("linear")(["a", "b", "c"], max_epochs=40, lr=3e-3)
    assert m.params["layer"] == "auto" and m.ssl_layers(4) == [0, 1, 2, 3]
    m.fit(data.subset(range(75)), data.subset(range(75, 90)), seed=0)
    test = data.subset(range(90, 120))
    assert 2 in m.layers_ and m.ssl_layers(4) == m.layers_ and m.input_shapes_["pooled"][0] == len(m.layers_)
    assert m.describe()["layers (layer=auto: inner CV on training speakers)"] == ",".join(map(str, m.layers_))
    assert (m.predict(test) == test.y).mean() >= 0.9
    m.save(tmp_path / "m")
    loaded = Method.load(tmp_path / "m")
    assert loaded.layers_ == m.layers_ and np.allclose(loaded.predict_proba(test), m.predict_proba(test))
    assert loaded.pooled_head()["layers"] == m.layers_
    with pytest.raises(ValueError, match="layer=auto"):
        get_method("linear")(["a", "b"], pooling="segment")
