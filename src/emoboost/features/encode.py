"""Encoding one clip into the frames a store entry keeps.

Encodings: ``utterance`` runs the encoder on the whole clip (no zero padding), in windows of
``window`` seconds (Whisper's 30 s limit) whose frames are concatenated; :func:`encoder_windows` is
the one rule for where those windows lie (every backend that encodes a long clip calls it). ``segment`` encodes each
fixed segment (3 s, last zero-padded) on its own, as MS-EmoBoost's paper does, and stores the
segments' frames back to back, so segment ``s`` is frames ``[s*T', (s+1)*T')``.

Imports torch only when a clip is encoded.
"""

from __future__ import annotations

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


def encode_clip(upstream: Upstream, wav: np.ndarray, spec: StoreSpec) -> tuple[np.ndarray, int]:
    """One clip -> (float32 frames [L, T, D] as the store keeps them, frames per segment or 0)."""
    import torch

    wav = np.asarray(wav, dtype=np.float32)
    with torch.inference_mode():
        if spec.encoding == "segment":
            segs = segment(wav, spec.segmenting)
            x = torch.from_numpy(segs)
            layers, lens = upstream(x, torch.full((len(x),), x.shape[1], dtype=torch.long))
            t = int(lens.max())
            a = layers[:, :, :t].float().cpu().numpy()  # [L, S, T', D]
            return a.reshape(a.shape[0], -1, a.shape[-1]), t
        win = int(round(spec.window * upstream.sample_rate))
        parts = []
        for a, b in encoder_windows(len(wav), win, min_tail(upstream.sample_rate, upstream.frame_rate)):
            x = torch.from_numpy(np.ascontiguousarray(wav[a:b]))[None]
            layers, lens = upstream(x, torch.tensor([b - a]))
            parts.append(layers[:, 0, : int(lens[0])].float().cpu().numpy())
        return (np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]), 0
