import warnings

import numpy as np
import pytest

from emoboost.features import functionals as fmod
from emoboost.features.functionals import SIZES, feature_names, functionals


def tone(freq: float = 220.0, seconds: float = 1.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("kind,size", [("egemaps", 88), ("compare", 6373), ("mfcc_stats", 320)])
def test_sizes_finite_and_named(kind, size):
    v = functionals(tone(), kind)
    assert v.shape == (size,) == (SIZES[kind],)
    assert v.dtype == np.float32 and np.all(np.isfinite(v))
    assert np.abs(v).max() > 0  # not an all-zero placeholder
    assert len(feature_names(kind)) == size


def test_egemaps_pitch_of_a_tone():
    # eGeMAPS' F0 is in semitones from 27.5 Hz: 220 Hz -> 12*log2(8) = 36, 440 Hz -> 48.
    names = feature_names("egemaps")
    i = names.index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert functionals(tone(220.0), "egemaps")[i] == pytest.approx(36.0, abs=1.0)
    assert functionals(tone(440.0), "egemaps")[i] == pytest.approx(48.0, abs=1.0)


def test_mfcc_stats_layout():
    v = functionals(tone(seconds=0.5), "mfcc_stats").reshape(4, 80)  # mean, std, min, max x (40 MFCC + 40 delta)
    mean, std, lo, hi = v
    assert np.all(lo <= mean + 1e-4) and np.all(mean <= hi + 1e-4) and np.all(std >= 0)
    names = feature_names("mfcc_stats")
    assert names[0] == "mfcc0_mean" and names[40] == "delta_mfcc0_mean" and names[-1] == "delta_mfcc39_max"
    # Different signals give different vectors.
    assert not np.allclose(v.ravel(), functionals(tone(880.0, seconds=0.5), "mfcc_stats"))


@pytest.mark.parametrize("kind", ["egemaps", "compare", "mfcc_stats"])
def test_very_short_signal_is_padded_not_nan(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Segment too short" warning leaks out
        v = functionals(tone(seconds=0.02), kind)  # 320 samples: openSMILE alone would return all NaN
    assert v.shape == (SIZES[kind],) and np.all(np.isfinite(v))


def test_silence_is_finite():
    v = functionals(np.zeros(16000, np.float32), "egemaps")
    assert np.all(np.isfinite(v))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="empty"):
        functionals(np.zeros(0, np.float32), "egemaps")
    x = tone()
    x[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        functionals(x, "mfcc_stats")
    with pytest.raises(ValueError, match="1-D"):
        functionals(np.zeros((2, 1600), np.float32), "egemaps")
    with pytest.raises(ValueError, match="unknown functionals kind"):
        functionals(tone(), "gemaps")


def test_smile_built_once_per_kind():
    functionals(tone(), "egemaps")
    a = fmod._smile("egemaps")
    functionals(tone(330.0), "egemaps")
    assert fmod._smile("egemaps") is a
    assert fmod._smile("compare") is not a
