"""Encoder windows: where a long clip is cut for the encoder, and encode_clip cutting exactly there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoboost.features.encode import encode_clip, encoder_windows, min_tail
from emoboost.features.store import StoreSpec


class RecordingUpstream(torch.nn.Module):
    """One frame per 320 samples (50 frames/s); remembers the first sample and length of every call."""

    num_layers, hidden_size, frame_rate, sample_rate = 2, 3, 50.0, 16000

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[float, int]] = []

    def forward(self, wavs, lengths):
        self.calls.append((float(wavs[0, 0]), int(lengths[0])))
        t = max(1, wavs.shape[1] // 320)
        x = torch.nn.functional.pad(wavs, (0, t * 320 - wavs.shape[1]))[:, : t * 320].reshape(len(wavs), t, 320)
        f = torch.stack([x.mean(-1), x.std(-1), x.max(-1).values], -1)
        return torch.stack([f, 2 * f]), torch.as_tensor(lengths).clamp(min=320) // 320


@pytest.mark.parametrize("n, window, tail, want", [
    (100, 30, 5, [(0, 30), (30, 60), (60, 90), (90, 100)]),  # the rest is a window of its own
    (93, 30, 5, [(0, 30), (30, 60), (60, 90)]),  # a 3-sample tail is dropped
    (90, 30, 5, [(0, 30), (30, 60), (60, 90)]),  # exact multiple: no empty window
    (3, 30, 5, [(0, 3)]),  # a clip shorter than the tail minimum is still one window
    (30, 30, 5, [(0, 30)]),
])
def test_encoder_windows(n, window, tail, want):
    assert encoder_windows(n, window, tail) == want


def test_min_tail_is_one_encoder_frame_plus_a_sample():
    assert min_tail(16000, 50.0) == 321  # Whisper, 20 ms frames
    assert min_tail(16000, 16000 / 320) == 321
    assert min_tail(16000, 49.5) == 325  # frames that do not divide the rate round up


def test_encode_clip_encodes_exactly_the_windows():
    up = RecordingUpstream()
    n = 16000 * 6 + 200  # 2 s windows: 2 + 2 + 2 s, then a 200-sample tail (< one frame): dropped
    wav = np.arange(n, dtype=np.float32) / n
    frames, seg = encode_clip(up, wav, StoreSpec(window=2.0))
    spans = encoder_windows(n, 32000, min_tail(16000, 50.0))
    assert spans[-1] == (64000, 96000)
    assert up.calls == [(pytest.approx(float(wav[a])), b - a) for a, b in spans]
    assert seg == 0 and frames.shape == (2, sum((b - a) // 320 for a, b in spans), 3)
