"""Read views over SSL features: segment windows drawn lazily, in the view's order, reading only their frames."""

from __future__ import annotations

import numpy as np

from emoboost.audio import Segmenting
from emoboost.features.views import ArraySource, SSLView


def test_array_source_segments_match_old_layout():
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal((s, 2, 5, 3)).astype(np.float16) for s in (1, 3)]
    view = SSLView(ArraySource.from_segments(arrs))
    win, seg_utt = view.segments([0, 1])
    assert seg_utt.tolist() == [0, 1, 1, 1]
    assert np.array_equal(win[np.arange(4)], np.concatenate(arrs).astype(np.float32))


def test_segments_of_a_subset_follow_the_view_order():
    """Windows come grouped by the view's utterances, in the view's order, whatever the source order."""
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((2, t, 4)).astype(np.float32) for t in (400, 120, 260, 30)]
    src = ArraySource(frames, frame_rate=50.0)
    view = SSLView(src).subset([2, 0, 3])
    win, owner = view.segments([1], seg=Segmenting(3.0))
    counts = [Segmenting(3.0).num_segments(src.num_samples(u)) for u in (2, 0, 3)]
    assert owner.tolist() == [j for j, c in enumerate(counts) for _ in range(c)]
    assert win.utt.tolist() == [u for u, c in zip((2, 0, 3), counts) for _ in range(c)]
    np.testing.assert_array_equal(win[0][0], frames[2][1, :150])  # first window of utterance 2
    capped, owner2 = view.segments([1], seg=Segmenting(3.0), max_per_utt=1)
    assert owner2.tolist() == [0, 1, 2] and capped.starts.tolist() == [0, 0, 0]


def test_a_window_of_a_long_recording_reads_that_window_only():
    """Memory and copying follow the windows a batch asks for, not the length of their recordings."""
    import tracemalloc

    rng = np.random.default_rng(0)
    long = rng.standard_normal((3, 200_000, 16)).astype(np.float16)  # ~67 min at 50 frames/s, 19 MB
    src = ArraySource([long, long[:, :500]], frame_rate=50.0)
    win, _ = SSLView(src).segments([2], seg=Segmenting(3.0))
    pick = np.array([0, 700, 1334])  # windows of the long recording (1334 of them) and of the short one
    tracemalloc.start()
    batch = win[pick]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, peak  # the batch itself is 3 x 150 x 16 float32; the clip is 6.4 MB per layer
    starts = win.starts[pick]
    np.testing.assert_array_equal(batch[0, 0], long[2, :150].astype(np.float32))
    np.testing.assert_array_equal(batch[1, 0], long[2, starts[1] : starts[1] + 150].astype(np.float32))
    assert win.utt[pick].tolist() == [0, 0, 1]
