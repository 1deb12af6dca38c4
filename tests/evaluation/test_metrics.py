import numpy as np
import pytest

from emoboost.evaluation.metrics import (
    all_metrics,
    confusion,
    mean_std,
    segment_posteriors_to_utterance,
)


def test_metrics_against_hand_computed_values():
    # class 0: 3 of 4 right; class 1: 1 of 2 right; class 2: 0 of 1 right.
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 1])
    m = all_metrics(y_true, y_pred)
    assert m["WA"] == pytest.approx(4 / 7)
    assert m["UA"] == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    # F1: c0 P=3/4 R=3/4 -> .75; c1 P=1/3 R=1/2 -> 0.4; c2 0 -> macro .3833
    assert m["macro_F1"] == pytest.approx((0.75 + 0.4 + 0.0) / 3)
    cm = confusion(y_true, y_pred, 3)
    assert cm.tolist() == [[3, 1, 0], [1, 1, 0], [0, 1, 0]]


def test_mean_std_population():
    mu, sd = mean_std([0.5, 0.7])
    assert mu == pytest.approx(0.6) and sd == pytest.approx(0.1)


def test_segment_mean_rule():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    u = segment_posteriors_to_utterance(p, np.array([0, 0, 0, 1]), 2)
    assert u[0] == pytest.approx([(0.9 + 0.2 + 0.3) / 3, (0.1 + 0.8 + 0.7) / 3])
    assert u[1] == pytest.approx([0.6, 0.4])
    with pytest.raises(ValueError):
        segment_posteriors_to_utterance(p, np.array([0, 0, 0, 0]), 2)
