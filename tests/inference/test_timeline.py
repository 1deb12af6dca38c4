"""Timeline helpers: duration-weighted label, CSV rows, PNG plot."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from emoboost.inference import timeline as tl

CLASSES = ["angry", "neutral", "sad"]
TIMELINE = [
    {"start": 0.5, "end": 3.5, "label": "angry", "probabilities": {"angry": 0.7, "neutral": 0.2, "sad": 0.1}},
    {"start": 3.5, "end": 4.0, "label": "sad", "probabilities": {"angry": 0.0, "neutral": 0.1, "sad": 0.9}},
    {"start": 8.0, "end": 11.0, "label": "sad", "probabilities": {"angry": 0.1, "neutral": 0.3, "sad": 0.6}},
]


def test_weighted_probabilities_follow_durations():
    p = tl.weighted_probabilities(TIMELINE, CLASSES)
    assert p["angry"] == pytest.approx((3 * 0.7 + 0.5 * 0.0 + 3 * 0.1) / 6.5)
    assert p["sad"] == pytest.approx((3 * 0.1 + 0.5 * 0.9 + 3 * 0.6) / 6.5)
    assert sum(p.values()) == pytest.approx(1.0)
    label, _ = tl.weighted_label(TIMELINE, CLASSES)
    assert label == "sad"  # 2 of 3 entries, and most of the time
    # an unweighted mean would pick the 0.5 s entry's label as often as a 3 s one
    assert tl.weighted_label(TIMELINE[:2], CLASSES)[0] == "angry"
    with pytest.raises(ValueError, match="empty"):
        tl.weighted_probabilities([], CLASSES)


def test_csv_rows_round_trip(tmp_path):
    rows = tl.to_csv_rows(TIMELINE, CLASSES, path="a.wav") + tl.to_csv_rows(TIMELINE[:1], CLASSES, path="b.wav")
    out = tmp_path / "t.csv"
    with open(out, "w", newline="") as f:  # as `emoboost predict --format csv` writes them
        w = csv.DictWriter(f, fieldnames=tl.csv_fields(CLASSES))
        w.writeheader()
        w.writerows(rows)
    with open(out, newline="") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == ["path", "start", "end", "label", "p_angry", "p_neutral", "p_sad"]
    assert [r["path"] for r in back] == ["a.wav"] * 3 + ["b.wav"]
    assert float(back[2]["p_neutral"]) == 0.3 and back[2]["label"] == "sad" and float(back[2]["end"]) == 11.0
    assert "path" not in tl.to_csv_rows(TIMELINE, CLASSES)[0]


def _pixels_of(img: np.ndarray, hex_color: str) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(img[..., :3] - rgb).max(axis=-1) < 0.02).sum())


def test_plot_timeline_draws_labels_in_class_colours(tmp_path):
    import matplotlib.image as mpimg

    a = tl.plot_timeline(TIMELINE, CLASSES, tmp_path / "a.png", duration=12.0, title="x.wav")
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(a)
    assert img.shape[1] > 600
    angry, sad = _pixels_of(img, tl.class_color(0)), _pixels_of(img, tl.class_color(2))
    assert angry > 2000 and sad > 2000
    only_angry = [dict(t, label="angry") for t in TIMELINE]
    b = mpimg.imread(tl.plot_timeline(only_angry, CLASSES, tmp_path / "b.png", duration=12.0))
    assert _pixels_of(b, tl.class_color(0)) > angry  # the band now shows angry throughout
    empty = tl.plot_timeline([], CLASSES, tmp_path / "e.png", duration=5.0)
    assert _pixels_of(mpimg.imread(empty), tl.class_color(2)) < 1000  # legend only
