"""Log-mel front end: librosa's log-mel, batch independence, normalisation modes, config checks."""

import librosa
import numpy as np
import pytest
import torch

from emoboost.upstreams.frontend import FeatureConfig, LogMel, frame_mask


def _wavs() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, 8000))).astype(np.float32)
    return torch.from_numpy(x), torch.tensor([8000, 5000])


def test_raw_equals_librosa_log_mel_with_zero_padding():
    cfg = FeatureConfig(n_mels=24)
    wavs, _ = _wavs()
    mel, flens = LogMel(cfg).raw(wavs[:1], torch.tensor([8000]))
    ref = librosa.feature.melspectrogram(y=wavs[0].numpy(), sr=cfg.sample_rate, n_fft=cfg.n_fft,
                                         hop_length=cfg.hop_length, win_length=cfg.win_length, center=True,
                                         pad_mode="constant", power=2.0, n_mels=cfg.n_mels, htk=False, norm="slaney")
    assert flens.tolist() == [1 + 8000 // 160] == [ref.shape[1]]
    np.testing.assert_allclose(mel[0].numpy(), np.log(ref.T + cfg.log_floor), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("normalize", ["global", "utterance", "none"])
def test_a_clip_alone_equals_the_clip_inside_a_padded_batch(normalize):
    fe = LogMel(FeatureConfig(n_mels=20, normalize=normalize))
    wavs, lengths = _wavs()
    wavs[1, 5000:] = 0.7  # garbage past the end of clip 1 must not leak in
    batch, flens = fe(wavs, lengths)
    alone, alone_lens = fe(wavs[1:, :5000], torch.tensor([5000]))
    assert flens.tolist() == [51, 32] and alone_lens.tolist() == [32]
    torch.testing.assert_close(batch[1, :32], alone[0], rtol=1e-5, atol=1e-5)
    assert torch.all(batch[1, 32:] == 0)


def test_normalisation_modes():
    wavs, lengths = _wavs()
    fe = LogMel(FeatureConfig(n_mels=20, normalize="global"))
    raw, flens = fe.raw(wavs, lengths)
    fe.set_stats([raw[0, :51], raw[1, :32]])
    out = fe.normalize(raw, flens)
    frames = torch.cat([out[0, :51], out[1, :32]])
    torch.testing.assert_close(frames.mean(0), torch.zeros(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(frames.std(0), torch.ones(20), atol=1e-3, rtol=0)
    assert set(dict(fe.state_dict())) == {"mean", "std"}  # the stats travel with the weights, nothing else
    utt = LogMel(FeatureConfig(n_mels=20, normalize="utterance"))
    u = utt.normalize(raw, flens)
    torch.testing.assert_close(u[1, :32].mean(0), torch.zeros(20), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="two frames"):
        fe.set_stats([raw[0, :1]])


def test_frame_mask_and_config_checks():
    assert frame_mask(torch.tensor([2, 0, 3]), 3).tolist() == [[True, True, False], [False] * 3, [True] * 3]
    assert FeatureConfig().frame_rate == 100.0
    assert FeatureConfig.from_dict(FeatureConfig(n_mels=40).to_dict()) == FeatureConfig(n_mels=40)
    with pytest.raises(ValueError, match="normalize"):
        FeatureConfig(normalize="cmvn")
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(win_length=600)
    with pytest.raises(ValueError, match="expected wavs"):
        LogMel(FeatureConfig(n_mels=20)).raw(torch.zeros(100), torch.tensor([100]))
