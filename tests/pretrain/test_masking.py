"""Masking statistics: ratio, span length, 80/10/10 corruption, EMS follows intensity, NPC weights."""

import numpy as np
import pytest
import torch

from emoboost.pretrain.masking import (
    MaskConfig,
    frame_loss_weights,
    mask_batch,
    sample_spans,
    spans_to_mask,
    start_probabilities,
)


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of consecutive True runs."""
    runs, n = [], 0
    for m in mask:
        if m:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs


def test_random_masking_ratio_and_span_length():
    cfg = MaskConfig(strategy="random")
    rng = np.random.default_rng(0)
    T, ratios, span_lens = 700, [], []
    for _ in range(200):
        starts = sample_spans(T, cfg, rng)
        mask = spans_to_mask(T, starts, cfg.span)
        ratios.append(mask.mean())
        assert len(starts) == round(0.15 * T / 7)
        assert np.all(np.diff(starts) >= cfg.span)  # never overlap
        span_lens.extend(_runs(mask))
    assert np.mean(ratios) == pytest.approx(0.15, abs=0.002)
    # adjacent spans may touch, so runs are multiples of 7
    assert all(n % 7 == 0 for n in span_lens) and np.median(span_lens) == 7


def test_corruption_is_80_10_10_and_loss_only_on_selected():
    cfg = MaskConfig(strategy="random")
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    B, T, F = 64, 140, 6
    x = torch.randn(B, T, F) + 5.0  # no frame is zero by chance
    lengths = torch.full((B,), T)
    lengths[0] = 70
    counts = np.zeros(4)
    for _ in range(10):
        mb = mask_batch(x, lengths, cfg, rng)
        a = mb.action
        counts += [int((a == k).sum()) for k in range(4)]
        assert torch.equal(mb.selected, a > 0)
        assert torch.all(mb.inputs[a == 1] == 0)
        assert torch.equal(mb.inputs[a == 0], x[a == 0])  # unselected frames untouched
        assert torch.equal(mb.inputs[a == 3], x[a == 3])
        assert not mb.selected[0, 70:].any()  # padding never selected
        # random replacement copies real frames of the same utterance
        b, t = torch.nonzero(a == 2)[0]
        assert any(torch.equal(mb.inputs[b, t], x[b, j]) for j in range(int(lengths[b])))
    sel = counts[1:].sum()
    assert counts[1] / sel == pytest.approx(0.8, abs=0.04)
    assert counts[2] / sel == pytest.approx(0.1, abs=0.03)
    assert counts[3] / sel == pytest.approx(0.1, abs=0.03)
    assert sel / (counts.sum()) == pytest.approx((63 * 0.15 * 140 + 0.15 * 70) / (64 * 140), abs=0.01)


def test_ems_start_distribution_formula():
    T, span, alpha = 50, 7, 0.6
    inten = np.linspace(0, 1, T)
    p = start_probabilities(T, span, alpha, inten)
    box = np.array([inten[s:s + span].mean() for s in range(T - span + 1)])
    np.testing.assert_allclose(p, alpha * box / box.sum() + (1 - alpha) / len(box))
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(start_probabilities(T, span, 0.0, inten), 1 / (T - span + 1))
    np.testing.assert_allclose(start_probabilities(T, span, 0.9, np.zeros(T)), 1 / (T - span + 1))


def test_ems_mask_positions_follow_intensity():
    T = 300
    t = np.arange(T)
    inten = (0.5 + 0.5 * np.sin(2 * np.pi * t / 100)).astype(np.float32)
    rng = np.random.default_rng(2)
    freq = {"random": np.zeros(T), "ems": np.zeros(T)}
    for strategy in freq:
        cfg = MaskConfig(strategy=strategy, alpha=0.8)
        for _ in range(400):
            freq[strategy] += spans_to_mask(T, sample_spans(T, cfg, rng, inten), cfg.span)
    corr_ems = np.corrcoef(freq["ems"], inten)[0, 1]
    corr_rand = np.corrcoef(freq["random"], inten)[0, 1]
    assert corr_ems > 0.8, corr_ems
    assert abs(corr_rand) < 0.3, corr_rand
    # same amount masked either way
    assert freq["ems"].sum() == pytest.approx(freq["random"].sum(), rel=0.01)
    hi, lo = inten > 0.8, inten < 0.2
    assert freq["ems"][hi].mean() > 3 * freq["ems"][lo].mean()


def test_ems_requires_intensity_and_validates_config():
    x = torch.randn(2, 30, 4)
    with pytest.raises(ValueError, match="intensity"):
        mask_batch(x, torch.tensor([30, 30]), MaskConfig(strategy="ems"), np.random.default_rng(0))
    with pytest.raises(ValueError):
        MaskConfig(strategy="spans")
    with pytest.raises(ValueError):
        MaskConfig(p_zero=0.95, p_random=0.1)
    with pytest.raises(ValueError):
        start_probabilities(10, 3, 0.5, np.full(10, -1.0))


def test_short_utterances_still_get_one_span():
    cfg = MaskConfig(strategy="random")
    rng = np.random.default_rng(0)
    assert len(sample_spans(10, cfg, rng)) == 1
    assert len(sample_spans(4, cfg, rng)) == 1  # span shrinks to the utterance
    mb = mask_batch(torch.randn(1, 4, 3) + 3, torch.tensor([4]), cfg, rng)
    assert int(mb.selected.sum()) == 4


def test_npc_loss_weights():
    inten = np.r_[np.zeros(50), np.ones(50)]
    w_rand = frame_loss_weights(inten, MaskConfig(strategy="random"))
    np.testing.assert_array_equal(w_rand, 1.0)
    w = frame_loss_weights(inten, MaskConfig(strategy="ems", alpha=0.5))
    assert w.mean() == pytest.approx(1.0, abs=1e-6)
    assert w[:40].max() == pytest.approx(0.5) and w[60:].min() == pytest.approx(1.5)
    assert np.corrcoef(w, inten)[0, 1] > 0.95
