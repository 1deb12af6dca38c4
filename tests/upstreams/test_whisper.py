"""Whisper encoder on own frames: tiny random checkpoint (always) and whisper-base from ../shared.

Measured on EmoDB clips (3 s of 08b03Tc, 16a05Tb; 1.9 s of 03a01Fa), own-frames vs the full
30 s padded transformers encoder, mean per-frame cosine over the covered frames:
L0 0.9998-1.0000 (identical except the last frame), L1 0.996-0.997, L2 0.989-0.993,
L3 0.983-0.984, L4 0.964-0.973, L5 0.951-0.962, L6 0.905-0.922 (a few frames, e.g. Whisper's
high-norm "sink" frames, differ much more). Thresholds below leave ~1-5 points of margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoboost.audio import load_audio
from emoboost.upstreams import build_upstream
from emoboost.upstreams.whisper import WhisperEncoderUpstream

MIN_MEAN_COS = [0.999, 0.98, 0.97, 0.96, 0.93, 0.92, 0.85]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ---- tiny random checkpoint: runs everywhere ---------------------------------------------------

def test_tiny_shapes_and_batch_padding(tiny_whisper):
    up = build_upstream(str(tiny_whisper()))
    assert isinstance(up, WhisperEncoderUpstream)
    assert (up.num_layers, up.hidden_size, up.frame_rate) == (3, 32, 50.0)
    rng = np.random.default_rng(0)
    a = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    b = (0.1 * rng.standard_normal(9920)).astype(np.float32)
    x = torch.zeros(2, 16000)
    x[0], x[1, :9920] = torch.from_numpy(a), torch.from_numpy(b)
    with torch.inference_mode():
        layers, lens = up(x, torch.tensor([16000, 9920]))
    assert layers.shape == (3, 2, 50, 32) and lens.tolist() == [50, 31]
    assert lens.tolist() == [up.num_frames(16000), up.num_frames(9920)]
    # padding is masked out of convs and attention: each clip matches its solo run
    np.testing.assert_allclose(layers[:, 0].numpy(), up.extract(a), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layers[:, 1, :31].numpy(), up.extract(b), rtol=1e-4, atol=1e-4)


def test_tiny_last_layer_is_layer_normed(tiny_whisper):
    up = build_upstream(str(tiny_whisper()))
    out = up.extract(np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1)
    enc = up.encoder
    with torch.inference_mode():
        y = enc.layers[-1](torch.from_numpy(out[-2])[None], None)
        expected = enc.layer_norm(y[0] if isinstance(y, tuple) else y)
    assert not np.allclose(out[-1], out[-2], atol=1e-2)
    np.testing.assert_allclose(out[-1], expected[0].numpy(), rtol=1e-4, atol=1e-4)


def test_too_long_and_too_short(tiny_whisper):
    up = build_upstream(str(tiny_whisper()))
    with pytest.raises(ValueError, match="too long"):
        up.extract(np.zeros(16000 * 31, dtype=np.float32))
    with pytest.raises(ValueError, match="shorter than one Whisper frame"):
        up.extract(np.zeros(100, dtype=np.float32))


def test_fingerprint_tracks_weights(tiny_whisper):
    a = build_upstream(str(tiny_whisper("w", seed=0)))
    assert build_upstream(str(a.source)).fingerprint() == a.fingerprint()
    b = build_upstream(str(tiny_whisper("w2", seed=1)), name="w")
    assert a.name == b.name == "w" and a.fingerprint() != b.fingerprint()
    assert a.config_dict()["config"]["d_model"] == 32


def _clips(seed=0):
    rng = np.random.default_rng(seed)
    x = torch.zeros(2, 16000)
    x[0] = torch.from_numpy((0.1 * rng.standard_normal(16000)).astype(np.float32))
    x[1, :9920] = torch.from_numpy((0.1 * rng.standard_normal(9920)).astype(np.float32))
    return x, torch.tensor([16000, 9920])


def test_tiny_max_layer_gives_the_full_runs_first_layers(tiny_whisper):
    d = str(tiny_whisper())
    full = build_upstream(d)
    x, lens = _clips()
    with torch.inference_mode():
        ref, ref_lens = full(x, lens)
    for k in range(full.num_layers):
        up = build_upstream(d, max_layer=k)
        assert (up.num_layers, up.max_layer, up.layers_out) == (3, k, k + 1)
        assert len(up.encoder.layers) == k  # deeper layers are not even built
        with torch.inference_mode():
            out, out_lens = up(x, lens)
        assert out.shape == (k + 1, *ref.shape[1:]) and out_lens.tolist() == ref_lens.tolist()
        # hidden state k: no layer_norm unless k is the last layer, exactly as in the full run
        np.testing.assert_array_equal(out.numpy(), ref[: k + 1].numpy())
    assert full.layers_out == full.num_layers == 3 and full.max_layer is None


def test_tiny_bad_max_layer(tiny_whisper):
    d = str(tiny_whisper())
    for bad in (-1, 3, 1.5, True):
        with pytest.raises(ValueError, match=r"max_layer must be an integer in 0\.\.2"):
            build_upstream(d, max_layer=bad)


def test_encoder_only_loader_equals_transformers_from_pretrained(tiny_whisper):
    """Same tensors as ``WhisperModel.from_pretrained(dir).encoder`` (the previous loader), no decoder."""
    from transformers import WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from emoboost.upstreams.hf import quiet_transformers

    d = tiny_whisper()
    with quiet_transformers():
        ref = WhisperModel.from_pretrained(d, dtype=torch.float32).encoder.eval()
    up = build_upstream(str(d))
    assert type(up.encoder) is WhisperEncoder and not any("decoder" in n for n, _ in up.named_modules())
    ours, theirs = up.encoder.state_dict(), ref.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert ours[k].dtype == torch.float32 and torch.equal(ours[k], theirs[k]), k
    x, lens = _clips(1)
    with torch.inference_mode():
        layers, _ = up(x[:1], lens[:1])
        mel = torch.from_numpy(up.log_mel(x[0].numpy()))[None]
        h = torch.nn.functional.gelu(ref.conv2(torch.nn.functional.gelu(ref.conv1(mel)))).permute(0, 2, 1)
        h = h + ref.embed_positions.weight[: h.shape[1]]
        for layer in ref.layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
        np.testing.assert_allclose(layers[-1, 0].numpy(), ref.layer_norm(h)[0].numpy(), rtol=0, atol=1e-6)


def test_loader_reads_full_seq2seq_checkpoints_and_fp16(tmp_path):
    """Hub checkpoints are WhisperForConditionalGeneration (``model.encoder.*`` + decoder); shared ones fp16."""
    from safetensors.torch import load_file, save_file
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from emoboost.upstreams.whisper import load_encoder

    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        vocab_size=100, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2, decoder_start_token_id=3, begin_suppress_tokens=None,
                        suppress_tokens=None)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.save_pretrained(tmp_path / "s2s")
    enc, full_cfg = load_encoder(tmp_path / "s2s")
    assert full_cfg.encoder_layers == 2
    for k, v in model.model.encoder.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v), k
    half = tmp_path / "fp16"
    half.mkdir()
    (half / "config.json").write_text((tmp_path / "s2s" / "config.json").read_text())
    sd = {k: v.half() for k, v in load_file(str(tmp_path / "s2s" / "model.safetensors")).items()
          if k.startswith("model.encoder.")}
    save_file(sd, str(half / "model.safetensors"))
    enc16, _ = load_encoder(half, max_layer=1)
    assert len(enc16.layers) == 1 and enc16.conv1.weight.dtype == torch.float32
    assert torch.equal(enc16.conv1.weight, model.model.encoder.conv1.weight.half().float())
    del sd["model.encoder.layers.0.fc1.weight"]
    save_file(sd, str(half / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: not a Whisper encoder checkpoint .*layers.0.fc1.weight"):
        load_encoder(half)


# ---- whisper-base from ../shared ---------------------------------------------------------------

@pytest.fixture(scope="module")
def whisper_base(shared_dir):
    d = shared_dir / "weights" / "whisper-base-encoder"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"whisper-base encoder weights not found at {d}")
    return WhisperEncoderUpstream(d)


@pytest.fixture(scope="module")
def speech(shared_dir):
    return load_audio(shared_dir / "data" / "emodb" / "wav" / "08b03Tc.wav")[:48000]


@pytest.mark.shared
def test_whisper_base_shapes(whisper_base, speech):
    out = whisper_base.extract(speech)
    assert out.shape == (7, 150, 512)
    assert np.isfinite(out).all()
    assert whisper_base.num_frames(48000) == 150


@pytest.mark.shared
def test_own_frames_match_padded_30s_encoder(whisper_base, speech):
    up = whisper_base
    full = up.feature_extractor(speech, sampling_rate=16000, return_tensors="pt")["input_features"]
    assert full.shape[-1] == 3000
    mel = up.log_mel(speech)
    np.testing.assert_allclose(mel, full[0, :, :300].numpy(), atol=1e-5)  # identical log-mel
    ours = up.extract(speech)
    with torch.inference_mode():
        ref = up.encoder(full, output_hidden_states=True)
    hidden = [h[0, :150].numpy() for h in ref.hidden_states]
    hidden[-1] = ref.last_hidden_state[0, :150].numpy()
    assert len(hidden) == 7
    # embeddings output: the same except the last frame (whose conv sees padding frames in the 30 s run)
    np.testing.assert_allclose(ours[0, :-1], hidden[0][:-1], atol=1e-3)
    for i, (a, b) in enumerate(zip(ours, hidden)):
        assert _cos(a, b).mean() >= MIN_MEAN_COS[i], f"layer {i}: mean cosine {_cos(a, b).mean():.4f}"
    assert np.corrcoef(ours[1].ravel(), hidden[1].ravel())[0, 1] > 0.97


@pytest.mark.shared
def test_whisper_base_batch_of_segments(whisper_base, speech):
    x = torch.from_numpy(np.stack([speech, speech[::-1].copy()]))
    with torch.inference_mode():
        layers, lens = whisper_base(x, torch.tensor([48000, 48000]))
    assert layers.shape == (7, 2, 150, 512) and lens.tolist() == [150, 150]
    np.testing.assert_allclose(layers[:, 0].numpy(), whisper_base.extract(speech), rtol=1e-3, atol=1e-3)


@pytest.mark.shared
def test_whisper_base_max_layer_3(whisper_base, speech):
    cut = WhisperEncoderUpstream(whisper_base.directory, max_layer=3)
    assert (cut.num_layers, cut.layers_out, len(cut.encoder.layers)) == (7, 4, 3)
    x = torch.from_numpy(np.stack([speech, speech[::-1].copy()]))
    with torch.inference_mode():
        full, _ = whisper_base(x, torch.tensor([48000, 48000]))
        ours, _ = cut(x, torch.tensor([48000, 48000]))
    assert ours.shape == (4, 2, 150, 512)
    np.testing.assert_array_equal(ours.numpy(), full[:4].numpy())
    assert cut.fingerprint() == whisper_base.fingerprint()
