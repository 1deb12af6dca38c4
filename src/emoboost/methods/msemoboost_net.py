"""MS-EmoBoost's network on standardised inputs (the method, its parameters and training: :mod:`emoboost.methods.msemoboost`).

Two guidance branches — a Bi-LSTM over MFCC frames and AlexNet over the spectrogram image, each
with residual self-attention and a 128-d projection — learn X_enh, one weight per SSL frame; the
enhanced SSL vector X_enh . X_w goes to a linear classifier. The module docstring of
:mod:`emoboost.methods.msemoboost` describes every part and its options.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from emoboost.methods.alexnet import ALEXNET_INPUTS, IMAGENET_SIZE, AlexNet, feature_map_shape, imagenet_image
from emoboost.methods.layers import LayerSelect

GUIDANCE = ("none", "mfcc", "spec", "both")
ENHANCEMENTS = ("linear", "softmax", "bounded")


def branches(guidance: str) -> tuple[str, ...]:
    """Acoustic inputs a guidance mode uses, in concatenation order."""
    return {"none": (), "mfcc": ("mfcc",), "spec": ("spec",), "both": ("mfcc", "spec")}[guidance]



def check_enhancement(enh: str, enh_residual: bool, who: str = "") -> None:
    """The residual enhancement adds to the linear map's output; the other maps already start at mean pooling.
    ``who``: the message's prefix (the method's name where its parameters are checked)."""
    if enh != "linear" and enh_residual:
        raise ValueError(f"{who}enh_residual applies to enh='linear' only (enh={enh!r} already starts at mean "
                         f"pooling)")

class SelfAttention(nn.Module):
    """Single-head self-attention with a residual: softmax(Q K^T / sqrt(d)) V + X over [B, N, d]."""

    def __init__(self, dim: int):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) * self.scale, dim=-1)
        return weights @ self.v(x) + x


class GuidanceHead(nn.Module):
    """[B, N, d] tokens -> (attention) -> flatten -> dropout -> linear + ReLU -> [B, out_dim]."""

    def __init__(self, tokens: int, dim: int, out_dim: int, attention: bool, dropout: float):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.attention = SelfAttention(dim) if attention else None
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(tokens * dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.tokens, self.dim):
            raise ValueError(
                f"guidance branch built for {self.tokens} x {self.dim} tokens got {tuple(x.shape[1:])} "
                "(different segment length than in training?)"
            )
        if self.attention is not None:
            x = self.attention(x)
        return torch.relu(self.proj(self.dropout(x.flatten(1))))


class MFCCBranch(nn.Module):
    """Bi-LSTM over MFCC frames -> guidance head."""

    def __init__(self, frames: int, coefs: int, hidden: int, layers: int, dropout: float, head: dict):
        super().__init__()
        self.lstm = nn.LSTM(coefs, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = GuidanceHead(frames, 2 * hidden, **head)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(mfcc)
        return self.head(self.dropout(x))


class SpecBranch(nn.Module):
    """AlexNet features over the spectrogram image -> spatial tokens -> guidance head.

    ``forward`` takes raw spectrograms [B, T, F] or, when frozen, their precomputed tokens
    [B, h*w, 256] (:meth:`tokens`; :class:`AlexNetTokens` feeds them). The two never share a shape:
    AlexNet shrinks both sides at least 32-fold, so h*w < T whenever F = 256.
    """

    def __init__(self, frames: int, bins: int, frozen: bool, head: dict, image: str = "mono"):
        super().__init__()
        if image not in ALEXNET_INPUTS:
            raise ValueError(f"alexnet_input must be one of {ALEXNET_INPUTS}, got {image!r}")
        self.image = image
        channels, h, w = feature_map_shape(*((IMAGENET_SIZE, IMAGENET_SIZE) if image == "imagenet" else (frames, bins)))
        self.frames, self.bins = frames, bins
        self.alexnet = AlexNet(features_only=True)
        self.frozen = frozen
        if frozen:
            self.alexnet.requires_grad_(False)
        self.head = GuidanceHead(h * w, channels, **head)

    def tokens(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, T, F] spectrograms -> AlexNet's spatial tokens [B, h*w, 256] (time = image height)."""
        if spec.shape[1:] != (self.frames, self.bins):
            raise ValueError(
                f"spectrogram branch built for {self.frames} x {self.bins} spectrograms got "
                f"{tuple(spec.shape[1:])} (different segment length or frequency bins than in training?)"
            )
        if self.image == "imagenet":
            return self.alexnet.features(imagenet_image(spec)).flatten(2).transpose(1, 2)
        return self.alexnet.forward_mono(spec.unsqueeze(1)).flatten(2).transpose(1, 2)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if spec.shape[1:] == (self.head.tokens, self.head.dim):  # tokens precomputed by the frozen AlexNet
            if not self.frozen:
                raise ValueError("precomputed AlexNet tokens given to a trainable AlexNet: it would never learn")
            return self.head(spec)
        if self.frozen:
            with torch.no_grad():
                x = self.tokens(spec)
        else:
            x = self.tokens(spec)
        return self.head(x)

    @torch.inference_mode()
    def precompute(self, spectrograms: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Tokens [N, h*w, 256] float32 of per-utterance [S, T, F] arrays, in batches of ~``batch_size``.

        Stacks only a batch at a time: never a second copy of all spectrograms.
        """
        out = np.empty((sum(len(a) for a in spectrograms), self.head.tokens, self.head.dim), dtype=np.float32)
        dev = next(self.alexnet.parameters()).device
        pos, group = 0, []
        for i, a in enumerate(spectrograms):
            group.append(a)
            if sum(len(g) for g in group) >= batch_size or i == len(spectrograms) - 1:
                x = torch.from_numpy(np.concatenate(group).astype(np.float32, copy=False))
                out[pos : pos + len(x)] = self.tokens(x.to(dev)).cpu().numpy()
                pos, group = pos + len(x), []
        return out


class MSEmoBoostNet(nn.Module):
    """The network on standardised inputs: ``forward(ssl, mfcc=None, spec=None) -> logits``.

    ``ssl`` is [B, T', D] (one layer already chosen) or [B, L, T', D] with ``layer="weighted"``.
    """

    def __init__(
        self,
        ssl_shape: tuple[int, ...],
        n_classes: int,
        layer: int | str,
        guidance: str = "both",
        mfcc_shape: tuple[int, int] | None = None,
        spec_shape: tuple[int, int] | None = None,
        attention: bool = True,
        lstm_hidden: int = 64,
        lstm_layers: int = 1,
        lstm_dropout: float = 0.5,
        branch_dim: int = 128,
        branch_dropout: float = 0.1,
        freeze_alexnet: bool = False,
        enh_residual: bool = False,
        dropout: float = 0.0,
        enh: str = "linear",
        enh_bound: float = 2.0,
        mask_padding: bool = False,
        alexnet_input: str = "mono",
        top: nn.Module | None = None,
    ):
        super().__init__()
        self.top = top  # finetune_top: trainable encoder layers run on the windows before pooling
        if guidance not in GUIDANCE:
            raise ValueError(f"guidance must be one of {GUIDANCE}, got {guidance!r}")
        self.guidance = guidance
        self.weighted = layer == "weighted"
        if self.weighted:
            num_layers, self.frames, dim = ssl_shape
            self.select = LayerSelect(num_layers, "weighted")
        else:
            self.frames, dim = ssl_shape
        if enh not in ENHANCEMENTS:
            raise ValueError(f"enh must be one of {ENHANCEMENTS}, got {enh!r}")
        check_enhancement(enh, enh_residual)
        if enh == "bounded" and not enh_bound > 0:
            raise ValueError(f"enh_bound must be > 0, got {enh_bound}")
        self.enh_residual = enh_residual
        self.enh, self.enh_bound = enh, float(enh_bound)
        self.mask_padding = bool(mask_padding)
        head = {"out_dim": branch_dim, "attention": attention, "dropout": branch_dropout}
        used = branches(guidance)
        if "mfcc" in used:
            if mfcc_shape is None:
                raise ValueError(f"guidance={guidance!r} needs the mfcc input shape")
            self.mfcc_branch = MFCCBranch(mfcc_shape[0], mfcc_shape[1], lstm_hidden, lstm_layers, lstm_dropout, head)
        if "spec" in used:
            if spec_shape is None:
                raise ValueError(f"guidance={guidance!r} needs the spec input shape")
            self.spec_branch = SpecBranch(spec_shape[0], spec_shape[1], freeze_alexnet, head, alexnet_input)
        if used:
            self.enhance = nn.Linear(len(used) * branch_dim, self.frames)
            if enh_residual or enh != "linear":  # start exactly at mean pooling
                nn.init.zeros_(self.enhance.weight)
                nn.init.zeros_(self.enhance.bias)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, n_classes)

    def frames_of(self, ssl: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        x = self.select(ssl) if self.weighted else ssl
        if self.top is not None:
            x = self.top(x, valid if self.mask_padding else None)
        if x.shape[1] != self.frames:
            raise ValueError(
                f"model built for {self.frames} SSL frames per segment got {x.shape[1]} "
                "(different encoder or segment length than in training?)"
            )
        return x

    def enhancement(self, ssl: torch.Tensor, mfcc: torch.Tensor | None = None,
                    spec: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """X_enh [B, 1, T']: learned from the guidance branches, or uniform 1/T' (= mean pooling).

        With ``mask_padding``, ``valid`` [B] = real frames per window: padded frames get weight 0
        (uniform and residual weights become 1/valid; softmax weights renormalise over real frames).
        A window with no real frame (the last one of a clip a few ms over a multiple of 3 s) keeps its
        first frame, as the unmasked model does: an all-masked softmax would be NaN.
        """
        b = ssl.shape[0]
        mask = None
        if self.mask_padding:
            v = _need(valid, "valid").reshape(b, 1).clamp(min=1)
            mask = (torch.arange(self.frames, device=ssl.device)[None, :] < v).to(ssl.dtype).unsqueeze(1)  # [B,1,T']
            uniform = mask / v.unsqueeze(1)
        else:
            uniform = ssl.new_full((b, 1, self.frames), 1.0 / self.frames)
        if self.guidance == "none":
            return uniform
        parts = []
        if hasattr(self, "mfcc_branch"):
            parts.append(self.mfcc_branch(_need(mfcc, "mfcc")))
        if hasattr(self, "spec_branch"):
            parts.append(self.spec_branch(_need(spec, "spec")))
        enh = self.enhance(torch.cat(parts, dim=1)).unsqueeze(1)
        if self.enh in ("softmax", "bounded"):
            logits = enh if self.enh == "softmax" else self.enh_bound * torch.tanh(enh)
            if mask is not None:
                logits = logits.masked_fill(mask == 0, float("-inf"))
            return torch.softmax(logits, dim=-1)
        if mask is not None:
            enh = enh * mask
        return enh + uniform if self.enh_residual else enh

    def embed(self, ssl: torch.Tensor, mfcc: torch.Tensor | None = None,
              spec: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Enhanced SSL feature X'_w = X_enh . X_w: [B, D]."""
        x = self.frames_of(ssl, valid)
        return torch.bmm(self.enhancement(ssl, mfcc, spec, valid), x).squeeze(1)

    def forward(self, ssl: torch.Tensor, mfcc: torch.Tensor | None = None,
                spec: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.dropout(self.embed(ssl, mfcc, spec, valid)))


def _need(x: torch.Tensor | None, name: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"this MS-EmoBoost model needs the {name!r} input")
    return x
