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
