import hashlib
import json

import numpy as np
import pytest
import torch

from builders import guided_segments as utterances
from emoboost.methods import Method, UtteranceSet, get_method
from emoboost.methods.alexnet import AlexNet, feature_map_shape
from emoboost.methods.msemoboost import MSEmoBoost
from emoboost.methods.msemoboost_net import MSEmoBoostNet, SelfAttention

TINY = {"lstm_hidden": 4, "branch_dim": 8}
# (layers, frames per 3 s, dims): Whisper-base, wav2vec2-base, a small made-up encoder
ENCODERS = {"whisper-base": (7, 150, 512), "wav2vec2-base": (13, 149, 768), "small": (5, 50, 384)}


def rebuilt(data: UtteranceSet) -> UtteranceSet:
    """The set again, with its (edited) ``ssl_arrays`` as the SSL features."""
    out = UtteranceSet(data.ids, data.y, data.groups, {**data.features, "ssl": data.ssl_arrays})
    out.ssl_arrays = data.ssl_arrays
    return out


def built(data: UtteranceSet, **params) -> tuple[MSEmoBoost, dict[str, torch.Tensor]]:
    """Method with preprocessing fitted and module built on ``data``; returns one preprocessed batch."""
    m = MSEmoBoost(["a", "b", "c"], **{**TINY, **params})
    inputs, _ = m.segment_inputs(data)
    m.fit_preprocessing(inputs)
    m.input_shapes_ = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    m.module_ = m.build_module(m.input_shapes_)
    m.module_.eval()
    batch = {k: m.preprocess(k, torch.from_numpy(np.asarray(v, dtype=np.float32))) for k, v in inputs.items()}
    return m, batch


@pytest.mark.parametrize("seconds", [1, 2, 3])
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_shapes_follow_the_inputs(encoder, seconds):
    L, T3, D = ENCODERS[encoder]
    T = T3 * seconds // 3
    frames = 100 * seconds  # 10 ms hop
    data = utterances([1, 2], L, T, D, frames)
    m, batch = built(data, layer=-1)
    assert batch["ssl"].shape == (3, T, D)  # one layer picked in segment_inputs
    net = m.module_
    with torch.no_grad():
        assert net(**batch).shape == (3, 3)
        assert net.enhancement(**batch).shape == (3, 1, T)
        assert net.embed(**batch).shape == (3, D)
    _, h, w = feature_map_shape(frames, 200)
    assert net.spec_branch.head.tokens == h * w
    assert net.mfcc_branch.head.tokens == frames
    assert net.enhance.out_features == T
    proba = m.predict_proba(data)
    assert proba.shape == (2, 3) and np.allclose(proba.sum(1), 1)
    assert [p.shape for p in m.predict_segments(data)] == [(1, 3), (2, 3)]


def test_weighted_layer_sum_keeps_all_layers():
    data = utterances([2], 5, 16, 12, 100)
    m, batch = built(data, layer="weighted")
    assert batch["ssl"].shape == (2, 5, 16, 12)
    assert m.ssl_mean_.shape == (5, 1, 12)
    net = m.module_
    assert net.select.weights.shape == (5,)
    with torch.no_grad():
        assert net(**batch).shape == (2, 3) and net.enhancement(**batch).shape == (2, 1, 16)
    # the weighted sum is what the model pools: all weight on layer 3 == picking layer 3
    with torch.no_grad():
        net.select.weights.copy_(torch.tensor([-1e4, -1e4, -1e4, 0.0, -1e4]))
        picked = net.frames_of(batch["ssl"])
    assert torch.allclose(picked, batch["ssl"][:, 3])


def test_ssl_standardisation_uses_training_statistics():
    data = utterances([3, 2], 3, 10, 6, 100, seed=4)
    m, batch = built(data, layer=1, ssl_norm="frame")
    x = batch["ssl"].numpy()
    assert np.allclose(x.mean(axis=(0, 1)), 0, atol=1e-4) and np.allclose(x.std(axis=(0, 1)), 1, atol=1e-3)
    mf = batch["mfcc"].numpy()
    assert np.allclose(mf.mean(axis=(0, 1)), 0, atol=1e-4) and np.allclose(mf.std(axis=(0, 1)), 1, atol=1e-3)
    m, batch = built(data, layer=1, ssl_norm="pooled")
    pooled = batch["ssl"].numpy().mean(axis=1)
    assert np.allclose(pooled.mean(0), 0, atol=1e-4) and np.allclose(pooled.std(0), 1, atol=1e-3)
    assert torch.equal(built(data, ssl_norm="none")[1]["ssl"], torch.from_numpy(
        np.concatenate([a[:, -1] for a in data.ssl_arrays]).astype(np.float32)))


def test_attention_residual_is_wired():
    torch.manual_seed(0)
    att = SelfAttention(6)
    x = torch.randn(2, 5, 6, requires_grad=True)
    assert not torch.allclose(att(x), x)
    with torch.no_grad():
        att.v.weight.zero_()
        att.v.bias.zero_()
    out = att(x)
    assert torch.equal(out, x)  # only the skip connection is left
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # and the gradient flows through it


def test_attention_with_zero_values_equals_no_attention_in_the_model():
    data = utterances([2], 3, 20, 8, 100, seed=1)
    torch.manual_seed(0)
    m_att, batch = built(data)
    torch.manual_seed(0)
    m_off, _ = built(data, attention=False)
    att, off = m_att.module_, m_off.module_
    extra = {k for k in att.state_dict() if ".attention." in k}
    assert extra and set(att.state_dict()) - extra == set(off.state_dict())
    with torch.no_grad():
        assert not torch.allclose(att(**batch), off(**batch))
        for branch in (att.mfcc_branch, att.spec_branch):
            branch.head.attention.v.weight.zero_()
            branch.head.attention.v.bias.zero_()
    off.load_state_dict({k: v for k, v in att.state_dict().items() if k not in extra})
    with torch.no_grad():
        assert torch.allclose(att(**batch), off(**batch), atol=1e-6)


def _perturbed(batch, name):
    b = dict(batch)
    b[name] = batch[name] + torch.randn_like(batch[name])
    return b


def test_guidance_modes_change_the_computation():
    data = utterances([2, 1], 3, 20, 8, 100, seed=2)
    full = built(data, guidance="both")[1]  # the same standardised inputs for every mode
    needs = {"none": (), "mfcc": ("mfcc",), "spec": ("spec",), "both": ("mfcc", "spec")}
    outs, params = {}, {}
    for g in needs:
        torch.manual_seed(0)
        m, _ = built(data, guidance=g)
        net = m.module_
        assert m.requires == ("ssl", *needs[g])
        assert set(m.segment_inputs(data)[0]) == set(m.requires)
        torch.manual_seed(1)
        with torch.no_grad():
            outs[g] = net(**full)
            for name in ("mfcc", "spec"):  # does the output depend on this input?
                changed = not torch.allclose(net(**_perturbed(full, name)), outs[g])
                assert changed == (name in needs[g]), (g, name)
            assert not torch.allclose(net(**_perturbed(full, "ssl")), outs[g])
        params[g] = {k.split(".")[0] for k in net.state_dict()}
    assert params["none"] == {"out"}
    assert params["mfcc"] == {"mfcc_branch", "enhance", "out"}
    assert params["spec"] == {"spec_branch", "enhance", "out"}
    assert params["both"] == {"mfcc_branch", "spec_branch", "enhance", "out"}
    for a in outs:
        for b in outs:
            if a < b:
                assert not torch.allclose(outs[a], outs[b]), (a, b)


def test_no_guidance_is_mean_pooling_and_guided_enhancement_is_learned():
    data = utterances([2, 1], 3, 20, 8, 100, seed=3)
    m, batch = built(data, guidance="none")
    net = m.module_
    with torch.no_grad():
        enh = net.enhancement(**batch)
        assert torch.allclose(enh, torch.full((3, 1, 20), 1 / 20))
        assert torch.allclose(net(**batch), net.out(batch["ssl"].mean(dim=1)), atol=1e-6)
    m, batch = built(data, guidance="both")
    with torch.no_grad():
        enh = m.module_.enhancement(**batch)
    assert enh.shape == (3, 1, 20) and enh.std() > 0
    assert not torch.allclose(enh[0], enh[1])  # depends on the segment's own MFCC / spectrogram
    with torch.no_grad():  # the paper's X_enh is the linear layer's output itself, no offset
        m.module_.enhance.weight.zero_()
        m.module_.enhance.bias.zero_()
        assert torch.equal(m.module_.enhancement(**batch), torch.zeros(3, 1, 20))
    m, batch = built(data, guidance="both", enh_residual=True)
    with torch.no_grad():  # residual variant starts exactly at mean pooling
        assert torch.allclose(m.module_.enhancement(**batch), torch.full((3, 1, 20), 1 / 20))


def learnable(n_utt=36, L=2, T=12, D=8, frames=64, bins=64, seed=0) -> UtteranceSet:
    """Class = an offset of the SSL frames, one MFCC coefficient and one spectrogram band; 6 speakers x 3 classes.

    64 x 64 spectrograms (AlexNet's smallest input) keep the smoke test fast; sizes come from the inputs anyway.
    """
    y = np.arange(n_utt) % 3
    centers = np.random.default_rng(123).standard_normal((3, D)) * 2
    data = utterances([1 + (i % 7 == 0) for i in range(n_utt)], L, T, D, frames, bins, seed=seed, y=y,
                      speakers=[f"spk{(i // 3) % 6}" for i in range(n_utt)])
    for i, c in enumerate(y):
        data.ssl_arrays[i] = (0.2 * data.ssl_arrays[i] + centers[c]).astype(np.float16)
        data.features["mfcc"][i][..., c] += 20
        data.features["spec"][i][..., 20 * c : 20 * c + 20] += 2
    return rebuilt(data)


@pytest.fixture(scope="module")
def fitted():
    data = learnable()
    held_out = np.isin(data.groups, ["spk4", "spk5"])
    train, test = data.subset(np.flatnonzero(~held_out)), data.subset(np.flatnonzero(held_out))
    m = get_method("msemoboost")(["a", "b", "c"], **TINY, layer=0, lr=3e-3, max_epochs=10, batch_size=4)
    m.fit(train, seed=0)
    return m, train, test


def test_fit_predict_learns_a_learnable_class(fitted):
    m, train, test = fitted
    assert isinstance(m, MSEmoBoost)
    assert (m.predict(train) == train.y).mean() >= 0.9
    assert (m.predict(test) == test.y).mean() >= 0.8
    assert m.history_[-1]["train_loss"] < m.history_[0]["train_loss"]
    assert m.embed(test).shape == (len(test), 8)
    d = m.describe()
    assert d["alexnet_weights"] == "random init (no ImageNet weights)"
    assert d["parameters"]["total"] == m.num_parameters() > 0


def test_save_load_round_trip(fitted, tmp_path):
    m, _, test = fitted
    m.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "method.json").read_text())
    assert cfg["method"] == "msemoboost" and cfg["requires"] == ["ssl", "mfcc", "spec"]
    loaded = Method.load(tmp_path / "model")
    assert isinstance(loaded, MSEmoBoost)
    assert np.array_equal(loaded.predict_proba(test), m.predict_proba(test))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.predict_segments(test), m.predict_segments(test)))
    assert loaded.describe() == m.describe()


def test_alexnet_weights_file_is_used_reported_and_not_needed_after_saving(tmp_path):
    ref = AlexNet(features_only=True)  # torchvision-format keys, values unlike any initialisation
    state = {f"features.{k}": torch.randn_like(v) for k, v in ref.features.state_dict().items()}
    path = tmp_path / "alexnet-owt.pth"
    torch.save(state, path)
    data = learnable(n_utt=6)
    m = MSEmoBoost(["a", "b", "c"], **TINY, alexnet_weights=str(path), max_epochs=1, guidance="spec")
    m.fit(data, seed=0)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    d = m.describe()
    assert d["alexnet_sha256"] == digest and str(path) in d["alexnet_weights"]
    net = MSEmoBoost(["a", "b", "c"], **TINY, alexnet_weights=str(path), guidance="spec").build_module(m.input_shapes_)
    for k, v in state.items():
        assert torch.equal(net.spec_branch.alexnet.state_dict()[k], v)
    m.save(tmp_path / "model")
    path.unlink()  # the trained weights include AlexNet: loading must not read the file again
    loaded = Method.load(tmp_path / "model")
    assert np.array_equal(loaded.predict_proba(data), m.predict_proba(data))
    assert loaded.describe()["alexnet_sha256"] == digest


def test_frozen_alexnet_is_not_trained():
    data = learnable(n_utt=6)
    m = MSEmoBoost(["a", "b", "c"], **TINY, freeze_alexnet=True, max_epochs=2, guidance="spec")
    m.fit(data, seed=0)
    torch.manual_seed(0)  # fit seeds torch with its seed right before building the network
    seed_net = MSEmoBoost(["a", "b", "c"], **TINY, freeze_alexnet=True, guidance="spec").build_module(m.input_shapes_)
    for k, v in m.module_.spec_branch.alexnet.state_dict().items():
        assert torch.equal(v, seed_net.spec_branch.alexnet.state_dict()[k]), k
    assert not torch.equal(m.module_.spec_branch.head.proj.weight, seed_net.spec_branch.head.proj.weight)
    assert m.describe()["alexnet_frozen"] is True


def test_none_reproduces_the_linear_ssl_only_baseline():
    data = learnable(n_utt=36, L=3, T=10, D=6, frames=64, bins=64, seed=5)
    spk = data.groups
    train = data.subset(np.flatnonzero(spk != "spk5"))
    test = data.subset(np.flatnonzero(spk == "spk5"))
    common = {"layer": 1, "lr": 1e-2, "weight_decay": 1e-4, "dropout": 0.0, "max_epochs": 15, "batch_size": 8}
    lin = get_method("linear")(["a", "b", "c"], **common, pooling="segment").fit(train, seed=3)
    ms = get_method("msemoboost")(["a", "b", "c"], **common, guidance="none", ssl_norm="pooled").fit(train, seed=3)
    assert np.allclose(ms.predict_proba(test), lin.predict_proba(test), atol=1e-4)
    assert ms.num_parameters() == lin.num_parameters() == 6 * 3 + 3
    assert ms.describe()["alexnet_weights"] == "not used (no spectrogram branch)"


def test_bad_configuration_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="guidance"):
        MSEmoBoost(["a"], guidance="audio")
    with pytest.raises(ValueError, match="ssl_norm"):
        MSEmoBoost(["a"], ssl_norm="batch")
    with pytest.raises(ValueError, match="attention"):
        MSEmoBoost(["a"], attention="maybe")
    assert MSEmoBoost(["a"], attention="false").params["attention"] is False
    data = utterances([2, 1], 3, 10, 6, 100)
    with pytest.raises(ValueError, match="out of range"):
        MSEmoBoost(["a"], layer=3).segment_inputs(data)
    data.features["mfcc"][1] = data.features["mfcc"][1][:0]
    with pytest.raises(ValueError, match="utterance u1: mfcc .* S=1"):
        MSEmoBoost(["a"]).segment_inputs(data)
    MSEmoBoost(["a"], guidance="spec").segment_inputs(data)  # mfcc is not needed there
    m, batch = built(utterances([1], 3, 10, 6, 100))
    with pytest.raises(ValueError, match="10 SSL frames"):
        m.module_(batch["ssl"][:, :9], batch["mfcc"], batch["spec"])
    with pytest.raises(ValueError, match="too small"):
        built(utterances([1], 3, 10, 6, 40))
    with pytest.raises(ValueError, match="needs the 'spec' input"):
        MSEmoBoostNet((10, 6), 3, 0, guidance="spec", spec_shape=(100, 200))(batch["ssl"])


# -- frozen AlexNet: tokens computed once per segment -------------------------------------------------


def test_frozen_tokens_give_the_same_outputs_as_the_raw_spectrogram_forward():
    data = utterances([2, 1], 3, 20, 8, 100, seed=6)
    torch.manual_seed(0)
    raw_m, raw = built(data, freeze_alexnet=False)
    torch.manual_seed(0)
    tok_m, tok = built(data, freeze_alexnet=True)
    _, h, w = feature_map_shape(100, 200)
    assert tok_m.input_shapes_["spec"] == raw_m.input_shapes_["spec"] == (100, 200)  # built/saved for spectrograms
    assert tok["spec"].shape == (3, h * w, 256) and raw["spec"].shape == (3, 100, 200)
    raw_net, tok_net = raw_m.module_, tok_m.module_
    for k, v in raw_net.state_dict().items():  # same seed, same weights: freezing changes no initialisation
        assert torch.equal(v, tok_net.state_dict()[k]), k
    with torch.no_grad():
        expected = raw_net(**raw)
        assert (tok_net(**tok) - expected).abs().max() < 1e-5
        assert (tok_net(**raw) - expected).abs().max() < 1e-5  # the frozen net still takes raw spectrograms
        assert torch.allclose(tok["spec"], raw_net.spec_branch.tokens(raw["spec"]), atol=1e-5)
        assert not torch.allclose(tok_net(**_perturbed(tok, "spec")), expected)  # and the tokens matter
    with pytest.raises(ValueError, match="trainable AlexNet"):
        raw_net(raw["ssl"], raw["mfcc"], tok["spec"])
    with pytest.raises(ValueError, match="built for 100 x 200 spectrograms got \\(100, 180\\)"):
        tok_net(raw["ssl"], raw["mfcc"], raw["spec"][..., :180])


def test_frozen_tokens_follow_the_network_alexnet():
    data = utterances([1, 2], 3, 10, 6, 100, seed=7)
    m = MSEmoBoost(["a", "b", "c"], **TINY, freeze_alexnet=True, guidance="spec")
    spec = m.segment_inputs(data)[0]["spec"]
    with pytest.raises(RuntimeError, match="fit or load the model first"):
        spec[:1]
    torch.manual_seed(0)
    m.module_ = m.build_module({"ssl": (10, 6), "spec": (100, 200)})
    first = spec[np.arange(3)]
    assert np.array_equal(spec[[2]], first[[2]]) and spec.tokens() is spec.tokens()  # computed once, then sliced
    torch.manual_seed(1)
    m.module_ = m.build_module({"ssl": (10, 6), "spec": (100, 200)})  # a new fit = a new AlexNet
    assert not np.allclose(spec[np.arange(3)], first)


@pytest.fixture(scope="module")
def fitted_frozen():
    data = learnable(n_utt=18)
    held_out = data.groups == "spk5"
    train, test = data.subset(np.flatnonzero(~held_out)), data.subset(np.flatnonzero(held_out))
    seen = []  # segments AlexNet ran on during fit
    forward_mono = AlexNet.forward_mono

    def counting(self, x):
        seen.append(len(x))
        return forward_mono(self, x)

    params = {**TINY, "freeze_alexnet": True, "layer": 0, "max_epochs": 3, "batch_size": 4}
    m = MSEmoBoost(["a", "b", "c"], **params)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AlexNet, "forward_mono", counting)
        m.fit(train, seed=0)
    torch.manual_seed(0)  # fit seeds torch with its seed right before building the network
    seed_net = MSEmoBoost(["a", "b", "c"], **params).build_module(m.input_shapes_)
    return m, seed_net, sum(seen), train, test


def test_frozen_fit_runs_alexnet_once_per_segment_and_never_trains_it(fitted_frozen):
    m, seed_net, alexnet_segments, train, _ = fitted_frozen
    n_seg = sum(len(a) for a in train.features["spec"])
    assert alexnet_segments == n_seg  # 3 epochs, one AlexNet pass per training segment
    assert m.history_[-1]["train_loss"] < m.history_[0]["train_loss"]
    for k, v in seed_net.state_dict().items():
        if k.startswith("spec_branch.alexnet."):
            assert torch.equal(m.module_.state_dict()[k], v), k
    for k in ("spec_branch.head.proj.weight", "spec_branch.head.attention.v.weight",
              "mfcc_branch.lstm.weight_ih_l0"):  # (64 x 64 -> 1 token: q, k get no gradient)
        assert not torch.equal(m.module_.state_dict()[k], seed_net.state_dict()[k]), k
    d = m.describe()
    assert d["alexnet_frozen"] is True and "once per segment" in d["alexnet_features"]


def test_frozen_save_load_round_trip_predicts_from_raw_spectrograms(fitted_frozen, tmp_path):
    m, _, _, _, test = fitted_frozen
    m.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "method.json").read_text())
    assert cfg["state"]["input_shapes"]["spec"] == [64, 64]
    loaded = Method.load(tmp_path / "model")
    for k, v in m.module_.spec_branch.alexnet.state_dict().items():  # the frozen AlexNet is saved
        assert torch.equal(loaded.module_.spec_branch.alexnet.state_dict()[k], v), k
    proba = loaded.predict_proba(test)
    assert np.array_equal(proba, m.predict_proba(test))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.predict_segments(test), m.predict_segments(test)))
    assert loaded.describe() == m.describe()
    # the same posteriors as running the loaded network on the raw spectrograms, AlexNet included
    inputs, seg_utt = loaded.segment_inputs(test)
    raw = {k: loaded.preprocess(k, torch.from_numpy(np.concatenate(test.features[k]).astype(np.float32)))
           for k in ("mfcc", "spec")}
    with torch.no_grad():
        seg = torch.softmax(loaded.module_(torch.from_numpy(inputs["ssl"].astype(np.float32)).sub(loaded.ssl_mean_)
                                           .div(loaded.ssl_std_), **raw), -1).double().numpy()
    by_utt = np.stack([seg[seg_utt == i].mean(0) for i in range(len(test))])
    assert np.abs(by_utt - proba).max() < 1e-5


@pytest.mark.parametrize("enh", ["softmax", "bounded"])
def test_normalised_enhancement_starts_at_mean_pooling_and_stays_convex(enh):
    data = utterances([2, 1], 2, 12, 8, 64, bins=64)
    m, batch = built(data, guidance="both", layer=0, enh=enh)
    net = m.module_
    with torch.no_grad():
        w = net.enhancement(batch["ssl"], batch["mfcc"], batch["spec"])
        assert torch.allclose(w, torch.full_like(w, 1 / 12), atol=1e-7)  # zero-initialised f_enh: uniform 1/T'
        assert torch.allclose(net.embed(batch["ssl"], batch["mfcc"], batch["spec"]), batch["ssl"].mean(1), atol=1e-6)
        net.enhance.weight.normal_(0, 5.0)  # a trained-looking map: still weights >= 0 summing to 1
        w = net.enhancement(batch["ssl"], batch["mfcc"], batch["spec"])
        assert torch.all(w >= 0) and torch.allclose(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-6)
        if enh == "bounded":  # no frame outweighs another by more than exp(2 * bound)
            ratio = w.max(-1).values / w.min(-1).values
            assert torch.all(ratio <= np.exp(2 * 2.0) * (1 + 1e-5))
    assert m.describe()["enhancement"].startswith("softmax")


def test_enhancement_switches_are_checked():
    with pytest.raises(ValueError, match="enh must be one of"):
        MSEmoBoost(["a"], enh="sigmoid")
    data = utterances([1], 2, 12, 8, 64, bins=64)
    with pytest.raises(ValueError, match="enh_residual applies to enh='linear' only"):
        built(data, enh="softmax", enh_residual=True)


def padded_windows(seed: int = 0) -> UtteranceSet:
    """Two clips on their own frames (utterance encoding), 12-frame windows: the last window of each
    is mostly padding (valid 12, 12, 1 and 12, 5); MFCC/spectrogram padding set to a huge value."""
    from emoboost.audio import Segmenting
    from emoboost.features.views import ArraySource, SSLView

    rng = np.random.default_rng(seed)
    seg = Segmenting(0.24)  # 12 frames at 50 Hz
    frames = [rng.standard_normal((2, 25, 8)).astype(np.float32), rng.standard_normal((2, 17, 8)).astype(np.float32)]
    src = ArraySource(frames, [8000, 5440], frame_rate=50.0)
    src.segmenting = seg
    feats = {"mfcc": [], "spec": []}
    for n_seg, last in ((3, 1), (2, 5)):
        m = rng.standard_normal((n_seg, 64, 40)).astype(np.float32)
        m[-1, int(round(last / 12 * 64)):] = 1e6  # the padded tail of the last window
        feats["mfcc"].append(m)
        feats["spec"].append(rng.standard_normal((n_seg, 64, 64)).astype(np.float32))
    data = UtteranceSet(["u0", "u1"], np.array([0, 1]), np.array(["s0", "s1"]), feats, ssl=SSLView(src))
    data.frames = frames
    return data


def test_mask_padding_removes_padded_frames_from_weights_and_statistics():
    data = padded_windows()
    m, batch = built(data, guidance="none", layer=1, mask_padding=True)
    assert batch["valid"].tolist() == [12, 12, 1, 12, 5]
    real = np.concatenate([f[1] for f in data.frames]).astype(np.float64)  # every real frame once (hop = length)
    np.testing.assert_allclose(m.ssl_mean_.numpy().ravel(), real.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.ssl_std_.numpy().ravel(), real.std(0) + 1e-5, rtol=1e-4, atol=1e-5)
    guided, _ = built(data, guidance="mfcc", layer=1, mask_padding=True)
    assert float(guided.mfcc_mean_.abs().max()) < 10  # the 1e6 padding is not in the MFCC statistics
    unmasked, _ = built(data, guidance="mfcc", layer=1)
    assert float(unmasked.mfcc_mean_.abs().max()) > 1e3  # (without masking it is)
    with torch.no_grad():
        emb = m.module_.embed(batch["ssl"], valid=batch["valid"])
        for j, v in enumerate(batch["valid"].int().tolist()):  # mean over the window's real frames only
            assert torch.allclose(emb[j], batch["ssl"][j, :v].mean(0), atol=1e-5)


@pytest.mark.parametrize("enh", ["linear", "softmax", "bounded"])
def test_masked_padded_frames_cannot_change_the_output(enh):
    data = padded_windows(1)
    m, batch = built(data, guidance="both", layer=1, mask_padding=True, enh=enh)
    net = m.module_
    with torch.no_grad():
        net.enhance.weight.normal_(0, 1.0)  # non-trivial weights
        ref = net(**batch)
        ssl = batch["ssl"].clone()
        for j, v in enumerate(batch["valid"].int().tolist()):
            ssl[j, v:] = 1e3  # garbage in the padded frames
        assert torch.allclose(net(**{**batch, "ssl": ssl}), ref, atol=1e-4)
        w = net.enhancement(batch["ssl"], batch["mfcc"], batch["spec"], batch["valid"])
        assert float(w[2, 0, 1:].abs().max()) == 0.0  # window 2 has one real frame


@pytest.mark.parametrize("enh", ["linear", "softmax", "bounded"])
def test_a_window_with_no_real_frame_gives_finite_outputs(enh):
    """A clip a few ms over 3 s has a last window with 0 real frames; masking it entirely gave a
    NaN softmax, NaN losses and a model that predicts one class."""
    data = padded_windows(1)
    m, batch = built(data, guidance="both", layer=1, mask_padding=True, enh=enh)
    valid = batch["valid"].clone()
    valid[2] = 0
    with torch.no_grad():
        m.module_.enhance.weight.normal_(0, 1.0)
        out = m.module_(**{**batch, "valid": valid})
        w = m.module_.enhancement(batch["ssl"], batch["mfcc"], batch["spec"], valid)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert float(w[2, 0, 1:].abs().max()) == 0.0  # it keeps its first frame only


def test_guidance_weight_decay_gets_its_own_parameter_group():
    data = utterances([1, 2], 2, 12, 8, 64, bins=64)
    m, _ = built(data, guidance="both", layer=0, guidance_weight_decay=0.1)
    rest, guided = m.param_groups()
    assert guided["weight_decay"] == 0.1 and "weight_decay" not in rest
    n_guided = sum(q.numel() for q in guided["params"])
    expect = sum(q.numel() for n in ("mfcc_branch", "spec_branch", "enhance") for q in getattr(m.module_, n).parameters())
    assert n_guided == expect and n_guided + sum(q.numel() for q in rest["params"]) == m.num_parameters()
    plain, _ = built(data, guidance="both", layer=0)
    assert len(plain.param_groups()) == 1


def test_imagenet_input_prepares_spectrograms_like_the_parent_code():
    from emoboost.methods.alexnet import IMAGENET_MEAN, IMAGENET_STD, imagenet_image
    from emoboost.methods.msemoboost_net import SpecBranch

    spec = torch.randn(2, 300, 200) * 3 + 5
    img = imagenet_image(spec)
    assert img.shape == (2, 3, 224, 224)
    raw = img * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(raw[:, 0], raw[:, 2], atol=1e-6)  # one grey image in 3 channels
    assert float(raw.min()) >= -1e-6 and float(raw.max()) <= 1 + 1e-6  # min-max scaled before normalising
    branch = SpecBranch(300, 200, frozen=True, head={"out_dim": 8, "attention": True, "dropout": 0.0}, image="imagenet")
    assert branch.tokens(spec).shape == (2, 36, 256) and branch.head.tokens == 36
    with torch.no_grad():
        assert torch.allclose(branch(branch.tokens(spec)), branch(spec), atol=1e-6)  # precomputed tokens path
    with pytest.raises(ValueError, match="alexnet_input must be one of"):
        SpecBranch(300, 200, frozen=True, head={"out_dim": 8, "attention": True, "dropout": 0.0}, image="rgb")


def test_guidance_hidden_names_the_bilstm_size():
    m = MSEmoBoost(["a", "b"], guidance_hidden=16)
    assert m.params["lstm_hidden"] == 16 and "guidance_hidden" not in m.params
    with pytest.raises(ValueError, match="guidance_hidden=16 and lstm_hidden=32 name the same parameter"):
        MSEmoBoost(["a", "b"], guidance_hidden=16, lstm_hidden=32)
