"""Pretrained checkpoints load as upstreams and give the training model's features exactly."""

import json

import numpy as np
import pytest
import torch

from emoboost.pretrain import build_model
from emoboost.pretrain.train import PretrainConfig, export_upstream
from emoboost.upstreams.local import is_local_upstream, load_local_upstream


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
