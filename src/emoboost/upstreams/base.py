"""The upstream (pretrained encoder) protocol, after s3prl: return every hidden layer.

Choosing one layer, all layers, or a learned weighted sum is the method's job, so the feature
cache stores all layers once and every method and layer choice reuses it. An upstream built with
``max_layer=k`` (a constructor argument of every implementation, and of ``build_upstream``) returns
hidden states 0..k only and never builds or runs the deeper layers: a model that reads layer 3
pays for layers 1-3. Hidden state k is the same tensor with or without the cut.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np
import torch


class Upstream(ABC, torch.nn.Module):
    """A frame-level encoder over 16 kHz mono waveforms.

    Subclasses set ``name``, ``num_layers`` (the model's hidden states, embeddings output included,
    whatever ``max_layer`` is), ``hidden_size`` and ``frame_rate`` (frames per second), optionally
    ``max_layer`` (deepest hidden state computed; None = all), and implement :meth:`forward`.
    ``layers_out`` is how many hidden states :meth:`forward` returns (``max_layer + 1``).
    """

    name: str = "upstream"
    num_layers: int
    hidden_size: int
    frame_rate: float
    sample_rate: int = 16_000
    max_layer: int | None = None

    @property
    def layers_out(self) -> int:
        """Hidden states returned by :meth:`forward`: 0..max_layer (all ``num_layers`` without a cut)."""
        return self.num_layers if self.max_layer is None else self.max_layer + 1

    @abstractmethod
    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs [B, T] float32, lengths [B] samples -> (layers [layers_out, B, T', D], frame lengths [B])."""

    def config_dict(self) -> dict:
        """What identifies this encoder's output (weights hash + config); used in the cache key.

        It never depends on ``max_layer``: hidden state k is the same with or without the cut."""
        return {"name": self.name}

    def fingerprint(self) -> str:
        """Stable id of (weights, config, code version) so the feature cache never serves stale features."""
        from emoboost.upstreams.identity import fingerprint_of

        return fingerprint_of(self.name, self.config_dict())

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


def check_max_layer(max_layer: int | None, num_layers: int, what: str) -> int | None:
    """``max_layer`` validated against a model with hidden states 0..num_layers-1 (None stays None)."""
    if max_layer is None:
        return None
    if isinstance(max_layer, bool) or not isinstance(max_layer, int) or not 0 <= max_layer < num_layers:
        raise ValueError(f"{what}: max_layer must be an integer in 0..{num_layers - 1} (hidden states of this "
                         f"model), got {max_layer!r}")
    return max_layer


def state_dict_hash(module: torch.nn.Module) -> str:
    """Hash of a module's parameters (cheap enough for encoders of a few hundred MB)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
