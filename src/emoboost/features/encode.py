"""Encoding one clip into the frames a store entry keeps.

Encodings: ``utterance`` runs the encoder on the whole clip (no zero padding), in windows of
``window`` seconds (Whisper's 30 s limit) whose frames are concatenated; :func:`encoder_windows` is
the one rule for where those windows lie (every backend that encodes a long clip calls it). ``segment`` encodes each
fixed segment (3 s, last zero-padded) on its own, as MS-EmoBoost's paper does, and stores the
segments' frames back to back, so segment ``s`` is frames ``[s*T', (s+1)*T')``.

Imports torch only when a clip is encoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from emoboost.audio import segment

if TYPE_CHECKING:
    from emoboost.features.store import StoreSpec
    from emoboost.upstreams.base import Upstream


def min_tail(sample_rate: float, frame_rate: float) -> int:
    """Samples a last window needs to be encoded: one encoder frame's worth plus one sample.

    A shorter tail adds (at most) one frame computed mostly from padding, so it is dropped rather
    than encoded; this is also the shortest clip the torch backend labels.
    """
    return int(np.ceil(sample_rate / frame_rate)) + 1


def encoder_windows(num_samples: int, window: int, min_tail: int) -> list[tuple[int, int]]:
    """``[start, stop)`` sample spans of the encoder windows of a clip of ``num_samples`` samples.

    Consecutive windows of ``window`` samples from the clip's start (no overlap, no padding); the last
    holds the rest and is dropped when shorter than ``min_tail`` samples, unless it is the only one.
    """
    spans = [(s, min(s + window, num_samples)) for s in range(0, num_samples, window)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < min_tail:
        spans.pop()
    return spans


def segment_batch(spec: StoreSpec) -> int:
    """Segments encoded per encoder call (segment encoding): as many as one encoder window holds (10 of
    3 s in 30 s), so a long clip never becomes one batch of hundreds of segments."""
    return max(1, int(spec.window // spec.segmenting.length))


def encode_windows(upstream: Upstream, wav: np.ndarray, spec: StoreSpec) -> Iterator[tuple[np.ndarray, int]]:
    """One clip -> its float32 frames [L, T_w, D] window by window, in order, each with the frames per
    segment (segment encoding) or 0.

    Concatenated along time, the windows are the clip's frames as the store keeps them; only one
    window's frames exist at a time, so an hour of audio costs what 30 s does (the store writes them
    window by window, :meth:`emoboost.features.store.FeatureStore.write_windows`). A clip of one
    window (or up to :func:`segment_batch` segments) is encoded exactly as before, in one call."""
    import torch

    wav = np.asarray(wav, dtype=np.float32)
    if spec.encoding == "segment":
        segs = segment(wav, spec.segmenting)
        n = segment_batch(spec)
        for s in range(0, len(segs), n):
            x = torch.from_numpy(segs[s : s + n])
            with torch.inference_mode():
                layers, lens = upstream(x, torch.full((len(x),), x.shape[1], dtype=torch.long))
            t = int(lens.max())
            a = layers[:, :, :t].float().cpu().numpy()  # [L, S, T', D]
            yield a.reshape(a.shape[0], -1, a.shape[-1]), t
        return
    win = int(round(spec.window * upstream.sample_rate))
    for a, b in encoder_windows(len(wav), win, min_tail(upstream.sample_rate, upstream.frame_rate)):
        x = torch.from_numpy(np.ascontiguousarray(wav[a:b]))[None]
        with torch.inference_mode():
            layers, lens = upstream(x, torch.tensor([b - a]))
        yield layers[:, 0, : int(lens[0])].float().cpu().numpy(), 0


def encode_clip(upstream: Upstream, wav: np.ndarray, spec: StoreSpec) -> tuple[np.ndarray, int]:
    """One clip -> (float32 frames [L, T, D] as the store keeps them, frames per segment or 0), in memory
    (the windows of :func:`encode_windows` concatenated: tests, fine-tuning; the store streams them)."""
    parts = list(encode_windows(upstream, wav, spec))
    frames = np.concatenate([f for f, _ in parts], axis=1) if len(parts) > 1 else parts[0][0]
    return frames, parts[-1][1]
