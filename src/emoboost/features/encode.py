"""Encoding one clip into the frames a store entry keeps.

Encodings: ``utterance`` runs the encoder on the whole clip (no zero padding), in windows of
``window`` seconds (Whisper's 30 s limit) whose frames are concatenated. ``segment`` encodes each
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
        for s in range(0, len(wav), win):
            chunk = wav[s : s + win]
            if s > 0 and len(chunk) < _min_chunk(upstream):
                break  # a tail shorter than one encoder frame adds nothing
            x = torch.from_numpy(np.ascontiguousarray(chunk))[None]
            layers, lens = upstream(x, torch.tensor([len(chunk)]))
            parts.append(layers[:, 0, : int(lens[0])].float().cpu().numpy())
        return (np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]), 0


def _min_chunk(upstream: Upstream) -> int:
    return int(np.ceil(upstream.sample_rate / upstream.frame_rate)) + 1
