"""The upstream (pretrained encoder) protocol, after s3prl: always return every hidden layer.

Choosing one layer, all layers, or a learned weighted sum is the method's job, so the feature
cache stores all layers once and every method and layer choice reuses it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod

import numpy as np
import torch


class Upstream(ABC, torch.nn.Module):
    """A frame-level encoder over 16 kHz mono waveforms.

    Subclasses set ``name``, ``num_layers`` (hidden states returned, embeddings output included),
    ``hidden_size`` and ``frame_rate`` (frames per second), and implement :meth:`forward`.
    """

    name: str = "upstream"
    num_layers: int
    hidden_size: int
    frame_rate: float
    sample_rate: int = 16_000

    @abstractmethod
    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs [B, T] float32, lengths [B] samples -> (layers [L, B, T', D], frame lengths [B])."""

    def config_dict(self) -> dict:
        """What identifies this encoder's output (weights hash + config); used in the cache key."""
        return {"name": self.name}

    def fingerprint(self) -> str:
        """Stable id of (weights, config, code version) so the feature cache never serves stale features."""
        from emoboost import __version__

        blob = json.dumps({"cfg": self.config_dict(), "code": __version__}, sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` (used to size buffers and masks)."""
        with torch.inference_mode():
            _, lens = self.forward(torch.zeros(1, num_samples), torch.tensor([num_samples]))
        return int(lens[0])

    @torch.inference_mode()
    def extract(self, wav: np.ndarray) -> np.ndarray:
        """One clip -> [L, T', D] float32 numpy (convenience for tests and predict)."""
        x = torch.from_numpy(np.asarray(wav, dtype=np.float32))[None]
        layers, lens = self.forward(x, torch.tensor([x.shape[1]]))
        return layers[:, 0, : int(lens[0])].float().cpu().numpy()


def state_dict_hash(module: torch.nn.Module) -> str:
    """Hash of a module's parameters (cheap enough for encoders of a few hundred MB)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
