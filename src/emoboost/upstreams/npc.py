"""NPC, Non-Autoregressive Predictive Coding (Liu, Chung & Glass, Interspeech 2021).

Construction (as in the paper and its reference code): ``n_blocks`` ConvBlocks, each a kernel-3
convolution + 1x1 convolution (residual from block 2 on), so the receptive field of block ``i``'s
output (0-based) is ``x[t - (i+1) .. t + (i+1)]``. After every block a *masked* convolution of
kernel ``kernel_size`` reads that block's output with its centre ``mask_size + 2 (i+1)`` taps
zeroed -- the mask grows by 2 per block exactly as the receptive field does, so no masked
convolution ever reaches the input frames ``x[t - m .. t + m]`` (``m = (mask_size - 1) / 2``). The
representation is the sum of all masked-convolution outputs; an optional multi-group Gumbel-softmax
VQ layer follows; a linear layer predicts the log-mel frame ``x[t]`` (trained with an L1 loss,
:func:`emoboost.pretrain.losses.npc_loss`; this module is the network only).

Deviation: normalisation inside ConvBlocks defaults to per-frame LayerNorm instead of BatchNorm,
because BatchNorm's batch statistics let every frame see (a little of) every other frame during
training, breaking the "never sees the masked window" guarantee; ``norm="batch"`` restores the
original. Masked convolutions only compute their visible taps (two small convolutions), which
saves ~half the FLOPs at the paper's sizes.

Hidden states returned to downstream tasks: the unmasked ConvBlock outputs (the README of the
reference code found the last one better for phone classification) followed by the masked
representation ``z`` (the paper's feature).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from emoboost.upstreams.frontend import FeatureConfig, LogMel, frame_mask


@dataclass(frozen=True)
class NPCConfig:
    hidden_size: int = 192
    num_blocks: int = 4
    kernel_size: int = 15
    mask_size: int = 5
    dropout: float = 0.1
    residual: bool = True
    norm: str = "layer"  # layer | batch | none
    vq_codebook_sizes: tuple[int, ...] = field(default_factory=tuple)  # () = no VQ, e.g. (64, 64, 64, 64)
    vq_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0 or self.mask_size % 2 == 0:
            raise ValueError(f"kernel_size ({self.kernel_size}) and mask_size ({self.mask_size}) must be odd")
        if self.num_blocks < 1:
            raise ValueError("NPC needs at least one block")
        largest = self.mask_size + 2 * self.num_blocks
        if largest >= self.kernel_size:
            raise ValueError(f"mask of the last block ({largest}) must be smaller than kernel_size "
                             f"({self.kernel_size}); use a larger kernel or fewer blocks")
        if self.norm not in ("layer", "batch", "none"):
            raise ValueError(f"norm must be layer|batch|none, got {self.norm!r}")
        if self.vq_codebook_sizes and self.hidden_size % len(self.vq_codebook_sizes):
            raise ValueError("hidden_size must split evenly into the VQ groups")
        object.__setattr__(self, "vq_codebook_sizes", tuple(int(v) for v in self.vq_codebook_sizes))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vq_codebook_sizes"] = list(self.vq_codebook_sizes)
        return d


class _Norm(nn.Module):
    """Channel normalisation for [B, C, T] tensors."""

    def __init__(self, kind: str, channels: int):
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.norm = nn.LayerNorm(channels)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        if self.kind == "batch":
            return self.norm(x)
        return x


class ConvBlock(nn.Module):
    """conv(k=3) -> norm -> ReLU -> conv(k=1) -> norm -> dropout (+ residual) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, residual: bool, dropout: float, norm: str):
        super().__init__()
        self.residual = residual and in_ch == out_ch
        self.conv = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.linear = nn.Conv1d(out_ch, out_ch, 1)
        self.norm1 = _Norm(norm, out_ch)
        self.norm2 = _Norm(norm, out_ch)
        self.drop = nn.Dropout(dropout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x * valid  # padded frames must look like the zero padding of a clip run alone
        out = self.act(self.norm1(self.conv(x)))
        out = self.drop(self.norm2(self.linear(out)))
        if self.residual:
            out = out + x
        return self.act(out)


class MaskedConv(nn.Module):
    """Conv1d (kernel k, 'same' padding) whose centre ``mask_size`` taps are zero, then tanh.

    The full weight is kept (with a fixed 0/1 mask buffer) for clarity; the forward pass only
    convolves with the visible taps on each side.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, mask_size: int):
        super().__init__()
        if not 0 < mask_size < kernel_size:
            raise ValueError(f"mask_size {mask_size} must be in (0, kernel_size={kernel_size})")
        self.kernel_size = kernel_size
        self.mask_size = mask_size
        self.visible = (kernel_size - mask_size) // 2
        conv = nn.Conv1d(in_ch, out_ch, kernel_size)
        self.weight = conv.weight
        self.bias = conv.bias
        mask = torch.ones(kernel_size)
        head = (kernel_size - mask_size) // 2
        mask[head: head + mask_size] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, v, T = self.kernel_size, self.visible, x.shape[-1]
        r = (k - 1) // 2
        xp = nn.functional.pad(x, (r, r))
        # tap j of the kernel reads x[t - r + j]: left taps j < v, right taps j >= k - v
        left = nn.functional.conv1d(xp[..., : T + v - 1], self.weight[..., :v])
        right = nn.functional.conv1d(xp[..., k - v:], self.weight[..., k - v:])[..., :T]
        return torch.tanh(left + right + self.bias[:, None])

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference implementation (full masked kernel), used by tests."""
        w = self.weight * self.mask
        return torch.tanh(nn.functional.conv1d(x, w, self.bias, padding=(self.kernel_size - 1) // 2))


class GumbelVQ(nn.Module):
    """One VQ group: logits over a codebook, hard Gumbel-softmax (straight-through) when training."""

    def __init__(self, dim: int, codebook_size: int, temperature: float):
        super().__init__()
        self.logits = nn.Linear(dim, codebook_size)
        self.codebook = nn.Linear(codebook_size, dim, bias=False)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        if self.training:
            onehot = nn.functional.gumbel_softmax(logits, tau=self.temperature, hard=True, dim=-1)
        else:
            onehot = nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(x.dtype)
        return self.codebook(onehot)


class NPC(nn.Module):
    model_type = "npc"

    def __init__(self, cfg: NPCConfig | None = None, feature: FeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg or NPCConfig()
        self.feature_cfg = feature or FeatureConfig()
        c, n_in = self.cfg, self.feature_cfg.n_mels
        self.frontend = LogMel(self.feature_cfg)
        self.blocks = nn.ModuleList(
            ConvBlock(n_in if i == 0 else c.hidden_size, c.hidden_size, c.residual and i > 0, c.dropout, c.norm)
            for i in range(c.num_blocks)
        )
        self.masked = nn.ModuleList(
            MaskedConv(c.hidden_size, c.hidden_size, c.kernel_size, c.mask_size + 2 * (i + 1))
            for i in range(c.num_blocks)
        )
        if c.vq_codebook_sizes:
            d = c.hidden_size // len(c.vq_codebook_sizes)
            self.vq = nn.ModuleList(GumbelVQ(d, cs, c.vq_temperature) for cs in c.vq_codebook_sizes)
        else:
            self.vq = None
        self.postnet = nn.Linear(c.hidden_size, n_in)

    @property
    def frame_rate(self) -> float:
        return self.feature_cfg.frame_rate

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @property
    def num_hidden_states(self) -> int:
        return self.cfg.num_blocks + 1

    @property
    def input_mask_half_width(self) -> int:
        """Input frames t-m..t+m are never seen when predicting frame t."""
        return (self.cfg.mask_size - 1) // 2

    def frame_times(self, n: int) -> np.ndarray:
        return np.arange(n) / self.feature_cfg.frame_rate

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Normalised log-mel [B, T, F] -> (unmasked block outputs [B, T, D] each, z [B, T, D])."""
        valid = frame_mask(lengths, x.shape[1])[:, None, :].to(x.dtype)
        h = x.transpose(1, 2)
        unmasked, z = [], None
        for block, mconv in zip(self.blocks, self.masked):
            h = block(h, valid)
            m = mconv(h * valid)
            z = m if z is None else z + m
            unmasked.append((h * valid).transpose(1, 2))
        return unmasked, (z * valid).transpose(1, 2)

    def predict(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted frames [B, T, F], representation z [B, T, D])."""
        _, z = self.encode(x, lengths)
        q = z
        if self.vq is not None:
            parts = torch.chunk(z, len(self.vq), dim=-1)
            q = torch.cat([vq(p) for vq, p in zip(self.vq, parts)], dim=-1)
        return self.postnet(q), z

    def hidden_states(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats, flens = self.frontend(wavs, lengths)
        unmasked, z = self.encode(feats, flens)
        return unmasked + [z], flens
