import numpy as np
import pytest
import torch

from emoboost.methods import Method, UtteranceSet, get_method
from emoboost.methods.ssl_cnn import SSLCNN, SSLCNNModule, plan_pools

CLASSES = ["a", "b", "c"]


def random_set(n_utt: int, L: int, T: int, D: int, seed: int = 0, transform=None) -> UtteranceSet:
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((1 + i % 2, L, T, D)).astype(np.float16) for i in range(n_utt)]
    if transform is not None:
        feats = [transform(a) for a in feats]
    data = UtteranceSet([f"u{i}" for i in range(n_utt)], np.arange(n_utt) % 3,
                        np.array([f"s{i}" for i in range(n_utt)]), {"ssl": feats})
    data.ssl_arrays = feats
    return data


def learnable(n_utt=72, L=3, T=12, D=32, informative=1, seed=0) -> UtteranceSet:
    """Class = a square wave along D in one layer (period 2, 4 or 8); other layers are pure noise.

    A conv + global pooling detects such local patterns anywhere; a position-only cue would not do.
    """
    rng = np.random.default_rng(seed)
    d = np.arange(D)
    patterns = [np.where((d // half) % 2 == 0, 1.0, -1.0) for half in (1, 2, 4)]
    y = np.arange(n_utt) % 3
    feats = []
    for i in range(n_utt):
        x = rng.standard_normal((1 + i % 2, L, T, D)).astype(np.float32)
        x[:, informative] += 2.0 * patterns[y[i]][None, None, :]
        feats.append(x.astype(np.float16))
    return UtteranceSet([f"u{i}" for i in range(n_utt)], y, np.array([f"s{i % 6}" for i in range(n_utt)]),
                        {"ssl": feats})


def built(layer, L, T, D, **kw) -> tuple[SSLCNN, dict]:
    m = SSLCNN(CLASSES, layer=layer, **kw)
    inputs, seg_utt = m.segment_inputs(random_set(2, L, T, D))
    m.fit_preprocessing(inputs)
    m.input_shapes_ = {k: v.shape[1:] for k, v in inputs.items()}
    m.module_ = m.build_module(m.input_shapes_)
    return m, inputs


@pytest.mark.parametrize("L,T,D", [(7, 150, 512), (13, 149, 768), (5, 50, 384)])
@pytest.mark.parametrize("layer", [-1, 2, "weighted", "channels"])
def test_shapes_for_encoders(L, T, D, layer):
    m, inputs = built(layer, L, T, D, proj_dim=0, pool=[2, 4])  # convolve the raw dims
    c_expected = L if layer == "channels" else (L if layer == "weighted" else 1)
    assert inputs["fmap"].shape == (3, c_expected, T, D)  # 2 utterances with 1 + 2 segments
    from emoboost.features.views import WindowArray

    assert isinstance(inputs["fmap"], WindowArray)  # drawn lazily batch by batch, never the whole set
    x = m.preprocess("fmap", torch.from_numpy(inputs["fmap"].astype(np.float32)))
    m.module_.eval()
    with torch.no_grad():
        assert m.module_(fmap=x).shape == (3, 3)
        assert m.module_.embed(fmap=x).shape == (3, 64)  # default: global average pooling
    first_conv = m.module_.blocks[0][0]
    assert first_conv.in_channels == (L if layer == "channels" else 1)


def test_single_layer_picks_the_right_one():
    data = random_set(2, 4, 6, 8)
    m = SSLCNN(CLASSES, layer=2)
    fmap, _ = m.segment_inputs(data)
    np.testing.assert_array_equal(fmap["fmap"][:1, 0], data.ssl_arrays[0][:, 2])
    m = SSLCNN(CLASSES, layer=-1)
    fmap, _ = m.segment_inputs(data)
    np.testing.assert_array_equal(fmap["fmap"][:1, 0], data.ssl_arrays[0][:, 3])
    with pytest.raises(ValueError, match="out of range"):
        SSLCNN(CLASSES, layer=4).segment_inputs(data)


@pytest.mark.parametrize("T", [50, 100, 150])  # Whisper frames of 1, 2, 3 s segments
def test_segment_lengths(T):
    m, inputs = built(-1, 7, T, 512)
    with torch.no_grad():
        m.module_.eval()
        out = m.module_(fmap=m.preprocess("fmap", torch.from_numpy(inputs["fmap"].astype(np.float32))))
    assert out.shape == (3, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("head,dim", [("time", 16 * 2), ("global", 16)])
def test_heads(head, dim):
    mod = SSLCNNModule((1, 20, 32), 5, "single", [8, 16], 3, (2, 4), 0.0, head=head)
    x = torch.randn(4, 1, 20, 32)
    assert mod.embed(x).shape == (4, dim) and mod(x).shape == (4, 5)
    # The time head keeps dimension identity: permuting the feature axis changes its embedding.
    mod.eval()
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        moved = (mod.embed(x) - mod.embed(x[..., perm])).abs().max()
    assert moved > 1e-3
    with pytest.raises(ValueError, match="head must be"):
        SSLCNNModule((1, 20, 32), 5, "single", [8], 3, (2, 4), 0.0, head="flat")


@pytest.mark.parametrize("L,T,D", [(7, 150, 512), (13, 149, 768), (5, 50, 384)])
@pytest.mark.parametrize("layer", [-1, "weighted", "channels"])
def test_projection_stem_shapes(L, T, D, layer):
    m, inputs = built(layer, L, T, D, proj_dim=32, pool=[2, 2], head="time")
    assert m.module_.proj.weight.shape == (32, D)
    x = m.preprocess("fmap", torch.from_numpy(inputs["fmap"].astype(np.float32)))
    m.module_.eval()
    with torch.no_grad():
        assert m.module_(fmap=x).shape == (3, 3)
        assert m.module_.embed(fmap=x).shape == (3, 64 * (32 // 8))  # 3 blocks pool the 32 dims by 2


def test_pooling_shrinks_for_tiny_maps():
    assert plan_pools(150, 512, 3, (2, 4)) == [(2, 4)] * 3
    assert plan_pools(3, 5, 3, (2, 4)) == [(2, 4), (1, 1), (1, 1)]
    mod = SSLCNNModule((1, 3, 5), 4, "single", [4, 4, 4], 3, (2, 4), 0.0)
    assert mod(torch.randn(2, 1, 3, 5)).shape == (2, 4)


def test_standardisation_uses_training_statistics():
    data = random_set(5, 3, 7, 6, transform=lambda a: a * 4 + 10)
    m = SSLCNN(CLASSES, layer="channels")
    inputs, _ = m.segment_inputs(data)
    m.fit_preprocessing(inputs)
    x = inputs["fmap"].astype(np.float64)
    np.testing.assert_allclose(m.mean_[:, 0, :].numpy(), x.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(m.std_[:, 0, :].numpy(), x.std(axis=(0, 2)), rtol=1e-4)
    z = m.preprocess("fmap", torch.from_numpy(inputs["fmap"].astype(np.float32))).numpy()
    assert np.abs(z.mean(axis=(0, 2))).max() < 1e-3 and np.abs(z.std(axis=(0, 2)) - 1).max() < 1e-3


@pytest.mark.parametrize("layer", [1, "weighted", "channels"])
def test_learns_and_roundtrips(tmp_path, layer):
    data = learnable()
    train, valid, test = data.subset(range(0, 48)), data.subset(range(48, 60)), data.subset(range(60, 72))
    m = get_method("ssl_cnn")(CLASSES, layer=layer, channels=[8, 16], max_epochs=15, patience=15, lr=1e-2)
    m.fit(train, valid, seed=0)
    assert (m.predict(test) == test.y).mean() >= 0.9
    p = m.predict_proba(test)
    assert p.shape == (12, 3) and np.allclose(p.sum(1), 1)
    assert [len(s) for s in m.predict_segments(test)] == [1 + i % 2 for i in range(60, 72)]
    assert m.embed(test).shape == (12, 16)  # global pooling over the last block's 16 channels
    assert m.num_parameters() > 0
    m.save(tmp_path / "m")
    m2 = Method.load(tmp_path / "m")
    np.testing.assert_array_equal(m2.predict_proba(test), p)
    if layer == "weighted":
        w = m.describe()["layer_weights"]
        assert len(w) == 3 and np.isclose(sum(w), 1)


def test_noise_layer_is_not_learnable():
    # Can fail: trained on a pure-noise layer, held-out accuracy must stay near chance.
    data = learnable(n_utt=90)
    m = SSLCNN(CLASSES, layer=0, channels=[8, 16], max_epochs=10, lr=3e-3)
    m.fit(data.subset(range(60)), data.subset(range(60, 66)), seed=0)
    test = data.subset(range(66, 90))
    assert (m.predict(test) == test.y).mean() < 0.7


def test_seeded_reruns_identical_and_shape_mismatch_rejected():
    data = learnable(n_utt=36)
    kw = dict(layer=1, channels=[4, 8], max_epochs=3)
    a = SSLCNN(CLASSES, **kw).fit(data.subset(range(30)), seed=5)
    b = SSLCNN(CLASSES, **kw).fit(data.subset(range(30)), seed=5)
    np.testing.assert_array_equal(a.predict_proba(data.subset(range(30, 36))),
                                  b.predict_proba(data.subset(range(30, 36))))
    with pytest.raises(ValueError, match="dims"):
        a.predict_proba(random_set(2, 3, 12, 20))
    with pytest.raises(ValueError, match="hidden states"):
        a.predict_proba(random_set(2, 5, 12, 32))
