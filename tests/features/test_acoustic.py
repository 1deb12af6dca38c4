"""Acoustic features: frame counts, values against a direct computation, keys."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft

from emoboost.audio import Segmenting
from emoboost.features.acoustic import (
    acoustic_key,
    feature_params,
    log_spectrogram,
    logmel,
    mfcc,
    segment_features,
)

SR = 16000


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.5 * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SR) / k for k in range(1, 8))
    return (0.2 * x * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_three_seconds_give_exactly_300_frames():
    x = _speechlike(3.0)
    assert mfcc(x).shape == (300, 40)
    assert log_spectrogram(x).shape == (300, 200)
    assert logmel(x).shape == (300, 80)
    assert logmel(x, n_mels=64).shape == (300, 64)
    for n in (16050, 16090, 100):  # round(len / hop)
        assert mfcc(x[:n]).shape[0] == log_spectrogram(x[:n]).shape[0] == max(1, round(n / 160))


def test_mfcc_matches_direct_htk_computation():
    """Frame t is centred on sample 160 t: pre-emphasis, 400-sample Hamming, 512-FFT, HTK mel, ln, DCT-II."""
    x = _speechlike(1.0, seed=3)
    ours = mfcc(x)
    y = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    fb = librosa.filters.mel(sr=SR, n_fft=512, n_mels=40, htk=True, norm=None)
    win = np.pad(np.hamming(401)[:-1], (56, 56))  # periodic Hamming, centred in the 512 FFT frame
    for t in (10, 57, 98):
        frame = y[160 * t - 256 : 160 * t + 256] * win
        power = np.abs(np.fft.rfft(frame)) ** 2
        ref = scipy.fft.dct(np.log(np.maximum(fb @ power, 1e-10)), type=2, norm="ortho")[:40]
        np.testing.assert_allclose(ours[t], ref, rtol=1e-3, atol=1e-3)


def test_log_spectrogram_normalised_gain_invariant_and_band_limited():
    x = _speechlike(3.0)
    s = log_spectrogram(x)
    assert abs(s.mean()) < 1e-4 and abs(s.std() - 1) < 1e-3
    np.testing.assert_allclose(log_spectrogram(4 * x), s, atol=1e-3)  # loudness removed
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    assert np.bincount(log_spectrogram(tone).argmax(1)).argmax() == 50  # 20 Hz bins: 1 kHz -> bin 50
    raw = log_spectrogram(x, normalize=False)
    assert not np.allclose(raw, s)


def test_segment_features_shapes():
    x = _speechlike(7.0)
    seg = Segmenting(3.0)
    assert segment_features(x, seg, "mfcc").shape == (3, 300, 40)
    assert segment_features(x, seg, "spec").shape == (3, 300, 200)
    assert segment_features(x, seg, "logmel", n_mels=64).shape == (3, 300, 64)
    short = segment_features(x[:8000], seg, "mfcc")
    assert short.shape == (1, 300, 40)  # zero-padded to the segment length
    np.testing.assert_allclose(short[0, :45], mfcc(x[:8000])[:45], atol=1e-3)
    with pytest.raises(ValueError, match="unknown acoustic feature"):
        segment_features(x, seg, "chroma")
    with pytest.raises(TypeError, match="unknown parameter"):
        segment_features(x, seg, "mfcc", n_mfc=20)


def test_keys_include_every_parameter():
    seg = Segmenting(3.0)
    k = acoustic_key("mfcc", seg)
    assert k == acoustic_key("mfcc", seg, n_mfcc=40, sr=16000)  # defaults are part of the key
    others = {acoustic_key("mfcc", seg, n_mfcc=20), acoustic_key("mfcc", seg, preemphasis=0.0),
              acoustic_key("mfcc", Segmenting(2.0)), acoustic_key("logmel", seg), acoustic_key("spec", seg)}
    assert k not in others and len(others) == 5
    assert acoustic_key("log_spectrogram", seg) == acoustic_key("spec", seg)
    assert set(feature_params("spec")) >= {"win_ms", "hop_ms", "n_fft", "n_bins", "normalize", "eps"}
