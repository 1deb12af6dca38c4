"""Pretrained checkpoints load as upstreams and give the training model's features exactly."""

import json

import numpy as np
import pytest
import torch

from emoboost.pretrain.train import PretrainConfig, export_upstream
from emoboost.upstreams.local import build_model, is_local_upstream, load_local_upstream


def _export(tmp_path, model_type):
    mc = ({"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32, "dropout": 0.0}
          if model_type == "mockingjay" else
          {"hidden_size": 16, "num_blocks": 2, "kernel_size": 9, "mask_size": 3, "vq_codebook_sizes": [4, 4]})
    cfg = PretrainConfig(model=model_type, model_config=mc, feature={"n_mels": 20})
    torch.manual_seed(0)
    model = build_model(model_type, mc, cfg.feature)
    model.frontend.mean.fill_(-5.0)  # non-default normalisation stats must travel with the weights
    model.frontend.std.fill_(2.0)
    model.eval()
    return export_upstream(tmp_path / model_type, model, cfg, {}), model


@pytest.mark.parametrize("model_type", ["mockingjay", "npc"])
def test_save_load_gives_identical_features(tmp_path, model_type):
    d, model = _export(tmp_path, model_type)
    assert is_local_upstream(d)
    up = load_local_upstream(d)
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(12000)).astype(np.float32)
    feats = up.extract(wav)
    with torch.no_grad():
        ref, lens = model.hidden_states(torch.from_numpy(wav)[None], torch.tensor([12000]))
    assert feats.shape == (up.num_layers, int(lens[0]), up.hidden_size)
    np.testing.assert_array_equal(feats, torch.stack(ref)[:, 0].numpy())
    assert up.num_frames(12000) == feats.shape[1]
    assert up.frame_rate == pytest.approx(100 / 3 if model_type == "mockingjay" else 100.0)
    # batched forward: [L, B, T, D] and per-clip frame lengths
    layers, flens = up(torch.from_numpy(np.stack([wav, wav])), torch.tensor([12000, 6000]))
    assert layers.shape[:2] == (up.num_layers, 2) and flens[1] < flens[0]


def test_fingerprint_follows_weights_and_config(tmp_path):
    d, _ = _export(tmp_path, "npc")
    fp = load_local_upstream(d).fingerprint()
    assert load_local_upstream(d).fingerprint() == fp
    from safetensors.torch import load_file, save_file

    w = load_file(str(d / "model.safetensors"))
    w["postnet.bias"] = w["postnet.bias"] + 1e-3
    save_file(w, str(d / "model.safetensors"))
    assert load_local_upstream(d).fingerprint() != fp


def test_bad_directories_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="emoboost_upstream.json"):
        load_local_upstream(tmp_path)
    d, _ = _export(tmp_path, "npc")
    meta = json.loads((d / "emoboost_upstream.json").read_text())
    meta["model_config"]["hidden_size"] = 32
    (d / "emoboost_upstream.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match"):
        load_local_upstream(d)
    (d / "emoboost_upstream.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_local_upstream(d)


def test_build_upstream_routes_pretrained_directories_here(tmp_path):
    from emoboost.upstreams import build_upstream
    from emoboost.upstreams.local import LocalPretrainedUpstream

    d, _ = _export(tmp_path, "mockingjay")
    up = build_upstream(str(d))
    assert isinstance(up, LocalPretrainedUpstream) and up.num_layers == 3 and up.hidden_size == 16


@pytest.mark.parametrize("model_type", ["mockingjay", "npc"])
def test_max_layer_gives_the_full_models_first_hidden_states(tmp_path, model_type):
    d, _ = _export(tmp_path, model_type)
    full = load_local_upstream(d)
    rng = np.random.default_rng(1)
    x = torch.from_numpy((0.1 * rng.standard_normal((2, 12000))).astype(np.float32))
    lens = torch.tensor([12000, 7000])
    with torch.no_grad():
        ref, ref_lens = full(x, lens)
    assert full.layers_out == full.num_layers == 3
    for k in range(full.num_layers):
        up = load_local_upstream(d, max_layer=k)
        assert (up.num_layers, up.layers_out) == (3, k + 1)
        calls = []  # which NPC sub-networks actually run (hooks would take Mockingjay's layers off
        for name, mod in up.model.named_children():  # torch's fused path, so count those instead)
            if name in ("blocks", "masked"):
                for i, m in enumerate(mod):
                    m.register_forward_hook(lambda *a, tag=f"{name}{i}", seen=calls: seen.append(tag))
        with torch.no_grad():
            out, out_lens = up(x, lens)
        np.testing.assert_array_equal(out.numpy(), ref[: k + 1].numpy())
        assert out_lens.tolist() == ref_lens.tolist()
        if model_type == "mockingjay":
            assert len(up.model.layers) == k
        elif k < 2:  # NPC: block outputs only; the masked convs belong to the last state
            assert calls == [f"blocks{i}" for i in range(k + 1)]
        else:
            assert sorted(calls) == sorted([f"blocks{i}" for i in range(2)] + [f"masked{i}" for i in range(2)])
        assert up.fingerprint() == full.fingerprint()
    with pytest.raises(ValueError, match="max_layer must be"):
        load_local_upstream(d, max_layer=3)


def test_fingerprint_is_the_weight_files_hash(tmp_path):
    from emoboost.upstreams.identity import weights_hash

    d, _ = _export(tmp_path, "mockingjay")
    up = load_local_upstream(d)
    assert up.config_dict()["weights"] == weights_hash(d)
    assert up.name == "mockingjay-mockingjay" and up.fingerprint().startswith("mockingjay-mockingjay-")


def test_weight_names_are_the_checkpoint_format():
    """Saved ``model.safetensors`` files are loaded strictly by these names: moving or refactoring the
    networks must keep every attribute path (a rename would orphan every pretrained run)."""
    mj = build_model("mockingjay", {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
                     {"n_mels": 20})
    layer = ["linear1.bias", "linear1.weight", "linear2.bias", "linear2.weight", "norm1.bias", "norm1.weight",
             "norm2.bias", "norm2.weight", "self_attn.in_proj_bias", "self_attn.in_proj_weight",
             "self_attn.out_proj.bias", "self_attn.out_proj.weight"]
    assert sorted(mj.state_dict()) == sorted(
        ["frontend.mean", "frontend.std", "in_norm.bias", "in_norm.weight", "in_proj.bias", "in_proj.weight"]
        + [f"head.{i}.{p}" for i in (0, 2, 3) for p in ("bias", "weight")] + [f"layers.0.{k}" for k in layer])
    npc = build_model("npc", {"hidden_size": 16, "num_blocks": 2, "kernel_size": 9, "mask_size": 3,
                              "vq_codebook_sizes": [4, 4]}, {"n_mels": 20})
    block = ["conv.bias", "conv.weight", "linear.bias", "linear.weight", "norm1.norm.bias", "norm1.norm.weight",
             "norm2.norm.bias", "norm2.norm.weight"]
    assert sorted(npc.state_dict()) == sorted(
        ["frontend.mean", "frontend.std", "postnet.bias", "postnet.weight"]
        + [f"blocks.{i}.{k}" for i in range(2) for k in block]
        + [f"masked.{i}.{p}" for i in range(2) for p in ("bias", "weight")]
        + [f"vq.{i}.{k}" for i in range(2) for k in ("codebook.weight", "logits.bias", "logits.weight")])
    with pytest.raises(ValueError, match="unknown pretraining model"):
        build_model("wav2vec2")
