"""Intensity ranking on a tiny synthetic corpus: strong > normal > neutral is learned and held out."""

import numpy as np
import pytest

from emoboost.pretrain.intensity import (
    IntensityConfig,
    IntensityModel,
    activity,
    compute_llds,
    moving_average,
    window_features,
)
from emoboost.pretrain.ranking import RankItem, evaluate_ranking, ordered_pairs, train_intensity_model

SR = 16000


def _voice(seconds: float, f0: float, amp: float, tilt: float, seed: int) -> np.ndarray:
    """Harmonic 'voice' with pauses; higher effort = louder, higher pitch, flatter spectrum."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * ph) * k ** (-tilt) for k in range(1, 12))
    env = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(float)
    return (amp * env * x / 4 + 0.0003 * rng.standard_normal(len(t))).astype(np.float32)


LEVELS = {  # (label, intensity): (f0 offset, amplitude, spectral tilt)
    ("neutral", "normal"): (0, 0.05, 2.0),
    ("angry", "normal"): (40, 0.12, 1.4),
    ("angry", "strong"): (80, 0.3, 0.9),
}


@pytest.fixture(scope="module")
def items() -> list[RankItem]:
    out = []
    for spk in range(5):
        base = 110 + 25 * spk
        for (label, inten), (df0, amp, tilt) in LEVELS.items():
            for rep in range(2):
                seed = spk * 100 + rep * 10 + len(label) + len(inten)
                jitter = np.random.default_rng(seed).uniform(0.85, 1.15)
                wav = _voice(1.2, base + df0, amp * jitter, tilt, seed)
                t, x, n = compute_llds(wav)
                out.append(RankItem(f"s{spk}-{label}-{inten}-{rep}", f"s{spk}", label, inten, t, x, n))
    return out


def test_pairs_follow_the_order(items):
    cfg = IntensityConfig()
    pairs = ordered_pairs(items, cfg)
    kinds = {k for _, _, k in pairs}
    assert kinds == {"strong>normal", "normal>neutral", "strong>neutral"}
    for i, j, _ in pairs:
        assert items[i].speaker == items[j].speaker
    # 5 speakers x (2x2 strong>normal + 2x2 normal>neutral + 2x2 strong>neutral)
    assert len(pairs) == 5 * 12


def test_ranking_generalises_to_held_out_speakers(items, tmp_path):
    train = [it for it in items if it.speaker not in ("s3", "s4")]
    test = [it for it in items if it.speaker in ("s3", "s4")]
    cfg = IntensityConfig(C=0.1)
    model = train_intensity_model(train, cfg)
    rep = evaluate_ranking(model, test)
    assert rep["within"]["all"] >= 0.9, rep["within"]
    assert rep["within"]["n_all"] == 24
    # frame intensity: [0, 1], on the hop grid, higher for the strong version
    wav_s = _voice(1.5, 180, 0.3, 0.9, 1)
    wav_n = _voice(1.5, 100, 0.05, 2.0, 2)
    t, v = model.frame_intensity(wav_s)
    assert v.min() >= 0 and v.max() <= 1 and len(t) == len(v)
    np.testing.assert_allclose(np.diff(t), cfg.hop, atol=1e-9)
    assert v.mean() > model.frame_intensity(wav_n)[1].mean() + 0.2
    # a file that turns strong half-way gets higher intensity in the second half
    t2, v2 = model.frame_intensity(np.concatenate([wav_n, wav_s]))
    assert v2[t2 > 2.0].mean() > v2[t2 < 1.0].mean() + 0.2
    # save/load round trip (json + safetensors) gives identical curves and fingerprint
    model.save(tmp_path / "m")
    again = IntensityModel.load(tmp_path / "m")
    np.testing.assert_array_equal(again.frame_intensity(wav_s)[1], v)
    assert again.fingerprint() == model.fingerprint()
    assert not list((tmp_path / "m").glob("*.pkl"))


def test_window_features_match_direct_computation(items):
    it = next(i for i in items if i.intensity == "strong")
    grid, f, names = window_features(it.times, it.llds, it.names, window=0.3, hop=0.1)
    assert f.shape == (len(grid), 52) and names[-2:] == ["voiced_fraction", "active_fraction"]
    act = activity(it.llds, it.names)
    assert 0.2 < act.mean() < 0.95  # the synthetic voice pauses
    loud = it.names.index("Loudness_sma3")
    f0 = it.names.index("F0semitoneFrom27.5Hz_sma3nz")
    half = int(round(0.3 / 0.01 / 2))
    checked = 0
    for k in range(len(grid)):
        c = np.clip(np.searchsorted(it.times, grid[k]), 0, len(it.times) - 1)
        sl = slice(max(0, c - half), c + half)
        seg, a = it.llds[sl], act[sl]
        assert f[k, -1] == pytest.approx(a.mean())
        if not a.any():
            assert np.all(f[k, :-1] == 0)
            continue
        checked += 1
        assert f[k, names.index("Loudness_sma3_mean")] == pytest.approx(seg[a, loud].mean())
        assert f[k, names.index("Loudness_sma3_std")] == pytest.approx(seg[a, loud].std(), abs=1e-6)
        voiced = a & (seg[:, f0] > 0)
        assert f[k, -2] == pytest.approx(voiced.sum() / a.sum())
        if voiced.any():
            assert f[k, names.index("F0semitoneFrom27.5Hz_sma3nz_vmean")] == pytest.approx(seg[voiced, f0].mean())
    assert checked >= 5


def test_moving_average_and_errors(tmp_path):
    np.testing.assert_allclose(moving_average(np.array([0, 0, 3, 0, 0.0]), 3), [0, 1, 1, 1, 0])
    with pytest.raises(FileNotFoundError, match="not a saved intensity model"):
        IntensityModel.load(tmp_path)
    with pytest.raises(ValueError, match="no ordered pairs"):
        train_intensity_model([RankItem("a", "s", "angry", "strong", np.arange(10) * 0.01,
                                        np.ones((10, 25)), ["Loudness_sma3"] + [f"x{i}" for i in range(23)] + ["F0semitone_nz"])])
