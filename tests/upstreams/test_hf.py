"""HFUpstream on tiny random wav2vec2 / HuBERT / WavLM checkpoints saved locally."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emoboost.upstreams import build_upstream
from emoboost.upstreams.hf import HFUpstream

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _wavs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1)
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_shapes_lengths_and_layers(tiny_ssl, model_type, norm, no_network):
    up = build_upstream(str(tiny_ssl(model_type, feat_extract_norm=norm)))
    assert isinstance(up, HFUpstream) and up.model_type == model_type
    assert up.num_layers == 3 and up.hidden_size == 32
    assert up.frame_rate == pytest.approx(16000 / 80)
    assert up.use_attention_mask == (norm == "layer")
    x, lens = _wavs([16000, 9000])
    with torch.inference_mode():
        layers, flens = up(x, lens)
    expected = up.model._get_feat_extract_output_lengths(lens)
    assert layers.shape == (3, 2, int(expected[0]), 32)
    assert flens.tolist() == expected.tolist() == [up.num_frames(16000), up.num_frames(9000)]
    assert torch.isfinite(layers).all()
    # Same numbers as the model itself on the single clip (all hidden states, in order).
    first = x[:1]
    if up.normalize:  # large-style checkpoints see each utterance standardised
        first = (first - first.mean()) / torch.sqrt(first.var(unbiased=False) + 1e-7)
    with torch.inference_mode():
        ref = up.model(first, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(layers[:, 0].numpy(), torch.stack(ref)[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    if norm == "layer":  # with an attention mask the padded clip matches its solo run
        solo = up.extract(x[1, :9000].numpy())
        np.testing.assert_allclose(layers[:, 1, : int(flens[1])].numpy(), solo, rtol=1e-3, atol=1e-4)


def test_normalisation_choice(tiny_ssl):
    plain = HFUpstream(tiny_ssl("wav2vec2", name="g", feat_extract_norm="group"))
    assert plain.normalize is False  # fairseq base convention
    layer = HFUpstream(tiny_ssl("wav2vec2", name="l", feat_extract_norm="layer"))
    assert layer.normalize is True  # large-lv60 convention
    from_file = HFUpstream(tiny_ssl("hubert", name="p", preprocessor={"do_normalize": True}))
    assert from_file.normalize is True
    forced = HFUpstream(tiny_ssl("hubert", name="f", preprocessor={"do_normalize": True}), normalize=False)
    assert forced.normalize is False
    assert from_file.fingerprint() != HFUpstream(from_file.source, normalize=False).fingerprint()


def test_normalised_input_is_gain_invariant(tiny_ssl):
    up = HFUpstream(tiny_ssl("wav2vec2", feat_extract_norm="layer"), normalize=True)
    x, lens = _wavs([8000, 6000], seed=1)
    with torch.inference_mode():
        a, _ = up(x, lens)
        b, _ = up(x * 7.0, lens)
        # padding content is ignored: garbage after the length must not change anything
        noisy = x.clone()
        noisy[1, 6000:] = 5.0
        c, _ = up(noisy, lens)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-3, atol=1e-4)
    raw = HFUpstream(up.source, normalize=False)
    with torch.inference_mode():
        d, _ = raw(x, lens)
    assert not np.allclose(a.numpy(), d.numpy(), atol=1e-3)


def test_fingerprint_follows_weights_not_location(tiny_ssl, tmp_path):
    src = tiny_ssl("wavlm", name="enc")
    fp = build_upstream(str(src)).fingerprint()
    assert build_upstream(str(src)).fingerprint() == fp
    moved = tmp_path / "elsewhere" / "enc"
    shutil.copytree(src, moved)
    assert build_upstream(str(moved)).fingerprint() == fp
    cfg = build_upstream(str(src)).config_dict()
    assert cfg["model_type"] == "wavlm" and cfg["config"]["hidden_size"] == 32 and len(cfg["weights"]) == 16
    assert str(tmp_path) not in json.dumps(cfg)
    # change one weight -> new fingerprint
    changed = tmp_path / "changed" / "enc"
    shutil.copytree(src, changed)
    sd = load_file(str(changed / "model.safetensors"))
    k = next(k for k in sd if k.endswith("weight") and sd[k].numel() > 1)
    sd[k] = sd[k].clone()
    sd[k].view(-1)[0] += 0.5
    save_file(sd, str(changed / "model.safetensors"), metadata={"format": "pt"})
    assert build_upstream(str(changed)).fingerprint() != fp


def test_local_dir_loads_with_hub_offline(tiny_ssl):
    """In a fresh process with HF_HUB_OFFLINE=1 (read at import time), a local dir loads and runs."""
    d = tiny_ssl("hubert")
    code = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from emoboost.upstreams import build_upstream
        up = build_upstream({str(d)!r})
        layers, lens = up(torch.zeros(1, 4000), torch.tensor([4000]))
        print(tuple(layers.shape), int(lens[0]))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "(3, 1, 49, 32) 49"


def test_not_an_ssl_checkpoint(tiny_whisper):
    with pytest.raises(ValueError, match="whisper"):
        HFUpstream(tiny_whisper())


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_max_layer_gives_the_full_models_first_hidden_states(tiny_ssl, model_type, norm):
    """Cut models build only layers 1..k; hidden state k is unchanged (stable-layer-norm models too)."""
    d = str(tiny_ssl(model_type, feat_extract_norm=norm))
    full = build_upstream(d)
    x, lens = _wavs([16000, 9000], seed=2)
    with torch.inference_mode():
        ref, ref_lens = full(x, lens)
    for k in range(full.num_layers):
        up = build_upstream(d, max_layer=k)
        assert (up.num_layers, up.layers_out) == (3, k + 1) and len(up.model.encoder.layers) == k
        with torch.inference_mode():
            out, out_lens = up(x, lens)
        assert out_lens.tolist() == ref_lens.tolist()
        np.testing.assert_allclose(out.numpy(), ref[: k + 1].numpy(), rtol=0, atol=1e-6)
        assert up.fingerprint() == full.fingerprint()
    with pytest.raises(ValueError, match="max_layer must be"):
        build_upstream(d, max_layer=3)


def test_no_pretraining_heads_are_built(tiny_ssl, tmp_path):
    """A Wav2Vec2ForPreTraining checkpoint (quantizer, project_q, project_hid) loads as the bare model."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    cfg = Wav2Vec2Config.from_pretrained(tiny_ssl("wav2vec2"), codevector_dim=16, proj_codevector_dim=16)
    torch.manual_seed(0)
    Wav2Vec2ForPreTraining(cfg).save_pretrained(tmp_path / "pt")
    up = build_upstream(str(tmp_path / "pt"))
    names = {n.split(".")[0] for n, _ in up.model.named_parameters()}
    assert type(up.model).__name__ == "Wav2Vec2Model" and not names & {"quantizer", "project_q", "project_hid"}
    assert up.extract(np.zeros(4000, dtype=np.float32)).shape == (3, 49, 32)
