"""Alignment of intensity curves to model frame grids."""

import numpy as np
import pytest

from emoboost.pretrain.align import align_to_length, align_to_rate, align_to_times, frame_centres


def test_linear_values_are_reproduced_exactly_on_any_grid():
    src_t = np.arange(0, 3.0, 0.02)
    vals = 0.1 + 0.2 * src_t  # linear in time -> interpolation is exact inside the range
    for rate in (100.0, 100 / 3, 50.0):
        n = int(2.9 * rate)
        out = align_to_rate(src_t, vals, n, rate)
        np.testing.assert_allclose(out, 0.1 + 0.2 * frame_centres(n, rate), atol=1e-6)


def test_values_hold_beyond_the_edges_and_keep_range():
    t = np.array([0.5, 1.0, 1.5])
    v = np.array([0.2, 0.9, 0.4])
    out = align_to_times(t, v, np.array([0.0, 0.75, 2.0]))
    np.testing.assert_allclose(out, [0.2, 0.55, 0.4], atol=1e-6)
    assert out.min() >= v.min() and out.max() <= v.max()


def test_align_to_length_preserves_endpoints_and_shape():
    v = np.array([0.0, 1.0, 0.0, 1.0])
    up = align_to_length(v, 12)
    assert up.shape == (12,) and up[0] == pytest.approx(0.0) and up[-1] == pytest.approx(1.0)
    same = align_to_length(v, 4)
    np.testing.assert_allclose(same, v)
    down = align_to_length(np.arange(6.0), 3)  # centres 0.5, 2.5, 4.5
    np.testing.assert_allclose(down, [0.5, 2.5, 4.5])


def test_bad_input_raises():
    with pytest.raises(ValueError):
        align_to_times(np.array([0.0, 0.0]), np.array([1.0, 2.0]), np.array([0.0]))
    with pytest.raises(ValueError):
        align_to_times(np.array([]), np.array([]), np.array([0.0]))
    with pytest.raises(ValueError):
        frame_centres(3, 0.0)
