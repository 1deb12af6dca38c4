"""Fine-tuning the top k encoder layers inside a method (``finetune_top=k``), as MS-EmoBoost's parent
code fine-tunes its encoder.

The feature store keeps the hidden state *below* the top k layers (``layer - k``); the method owns a
trainable copy of those k layers (Whisper encoder layers, plus the final layer norm when the output
is the encoder's last hidden state) and runs them on each batch of frame windows before its head.
The frozen lower layers are never run again, so one epoch costs k layers of the encoder, not all.
The copy is saved with the model; at load time it is rebuilt from the saved encoder config on the
meta device and given the trained weights, so ``predict`` needs only the encoder cut at ``layer - k``.

Whisper encoders only for now; other upstreams raise a clear error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TopLayers(nn.Module):
    """Encoder layers ``first .. last-1`` (hidden state ``first`` -> hidden state ``last``) on [B, T, D]."""

    def __init__(self, config: dict[str, Any], first: int, last: int, total: int):
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

        if not 0 <= first < last <= total:
            raise ValueError(f"cannot fine-tune hidden states {first}..{last} of an encoder with {total} layers")
        self.config_dict = dict(config)
        self.first, self.last, self.total = int(first), int(last), int(total)
        cfg = WhisperConfig(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
        cfg._attn_implementation = "sdpa"  # standalone layers get no dispatch from a parent model
        self.layers = nn.ModuleList([WhisperEncoderLayer(cfg) for _ in range(last - first)])
        self.layer_norm = nn.LayerNorm(cfg.d_model) if last == total else None

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` [B] (optional) = real frames per window: padded frames are masked out as attention
        keys, so they cannot leak into the real frames (their own outputs are ignored downstream)."""
        from emoboost.upstreams.whisper import key_padding_mask

        mask = key_padding_mask(valid.clamp(min=1), x.shape[1], x.dtype) if valid is not None else None
        for layer in self.layers:
            out = layer(x, mask)
            x = out[0] if isinstance(out, tuple) else out
        return self.layer_norm(x) if self.layer_norm is not None else x

    def describe(self) -> str:
        norm = " + final layer norm" if self.layer_norm is not None else ""
        which = f"layer {self.last}" if self.last - self.first == 1 else f"layers {self.first + 1}..{self.last}"
        return f"encoder {which} fine-tuned (hidden state {self.first} -> {self.last}){norm}"


def top_layers_from_upstream(spec: str, first: int, last: int) -> TopLayers:
    """A trainable copy of an upstream's layers ``first .. last-1``, with its trained weights."""
    from emoboost.upstreams import build_upstream
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    up = build_upstream(spec, max_layer=last)
    if not isinstance(up, WhisperEncoderUpstream):
        raise ValueError(f"finetune_top supports Whisper encoders only, got {type(up).__name__} ({spec})")
    total = int(up.model_config.encoder_layers)
    top = TopLayers(up.model_config.to_dict(), first, last, total)
    enc = up.encoder
    for mine, theirs in zip(top.layers, list(enc.layers)[first:last]):
        mine.load_state_dict(theirs.state_dict())
    if top.layer_norm is not None:
        top.layer_norm.load_state_dict(enc.layer_norm.state_dict())
    return top.requires_grad_(True)
