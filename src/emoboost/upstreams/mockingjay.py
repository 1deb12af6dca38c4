"""Mockingjay (Liu et al., ICASSP 2020): a Transformer encoder trained by masked acoustic modelling.

Input: 80-bin log-mel (25 ms / 10 ms), downsampled by stacking 3 consecutive frames (-> 240-dim,
33.3 frames/s), linear projection + sinusoidal positions + LayerNorm, post-LN Transformer layers,
and a prediction head (Linear-GELU-LayerNorm-Linear) that reconstructs the stacked frames.

This module is the network only, as an upstream uses it; the masked-reconstruction loss and the
masking strategies are training code (:mod:`emoboost.pretrain.losses`, :mod:`emoboost.pretrain.masking`).
The head stays here although only training uses it: it is part of the checkpoint (``head.*`` weights).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from emoboost.upstreams.frontend import FeatureConfig, LogMel, frame_mask


@dataclass(frozen=True)
class MockingjayConfig:
    downsample: int = 3
    hidden_size: int = 192
    num_layers: int = 3
    num_heads: int = 3
    intermediate_size: int = 768
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoid(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe


class Mockingjay(nn.Module):
    model_type = "mockingjay"

    def __init__(self, cfg: MockingjayConfig | None = None, feature: FeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg or MockingjayConfig()
        self.feature_cfg = feature or FeatureConfig()
        c = self.cfg
        if c.hidden_size % c.num_heads:
            raise ValueError(f"hidden_size {c.hidden_size} not divisible by num_heads {c.num_heads}")
        self.frontend = LogMel(self.feature_cfg)
        self.input_dim = self.feature_cfg.n_mels * c.downsample
        self.in_proj = nn.Linear(self.input_dim, c.hidden_size)
        self.in_norm = nn.LayerNorm(c.hidden_size)
        self.in_drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(c.hidden_size, c.num_heads, c.intermediate_size, c.dropout,
                                       activation="gelu", batch_first=True, norm_first=False)
            for _ in range(c.num_layers)
        )
        self.head = nn.Sequential(nn.Linear(c.hidden_size, c.hidden_size), nn.GELU(),
                                  nn.LayerNorm(c.hidden_size), nn.Linear(c.hidden_size, self.input_dim))

    # -- geometry -----------------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        return self.feature_cfg.frame_rate / self.cfg.downsample

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @property
    def num_hidden_states(self) -> int:
        return self.cfg.num_layers + 1

    def frame_times(self, n: int) -> np.ndarray:
        """Centre time (s) of each stacked frame: the middle log-mel frame of its group."""
        ds = self.cfg.downsample
        return (np.arange(n) * ds + (ds - 1) / 2) / self.feature_cfg.frame_rate

    def stack(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, F] -> [B, T // ds, F * ds]; trailing frames that do not fill a group are dropped."""
        ds = self.cfg.downsample
        B, T, F = feats.shape
        t = T // ds
        out = feats[:, : t * ds].reshape(B, t, F * ds)
        return out, torch.div(lengths, ds, rounding_mode="floor")

    # -- network ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Stacked features [B, T, F*ds] -> hidden states (input embedding + each layer)."""
        T = x.shape[1]
        h = self.in_proj(x) + sinusoid(T, self.cfg.hidden_size, x.device)
        h = self.in_drop(self.in_norm(h))
        valid = frame_mask(lengths, T)
        pad = ~valid
        states = [h]
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
            h = h * valid[..., None]  # keep padded frames exactly zero whatever path torch takes
            states.append(h)
        return states

    def hidden_states(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats, flens = self.frontend(wavs, lengths)
        x, xl = self.stack(feats, flens)
        return self.encode(x, xl), xl
