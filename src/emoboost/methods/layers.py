"""Choosing upstream layers inside a method: one layer, or a learned softmax-weighted sum (s3prl's Featurizer)."""

from __future__ import annotations

import torch
from torch import nn

from emoboost.methods.layer_choice import parse_layer, parse_layers

__all__ = ["LayerSelect", "parse_layer", "parse_layers"]


class LayerSelect(nn.Module):
    """[B, L, ...] -> [B, ...]: pick one layer or take a learned softmax-weighted sum of all."""

    def __init__(self, num_layers: int, layer: int | str):
        super().__init__()
        self.layer = parse_layer(layer, num_layers)
        self.num_layers = num_layers
        if self.layer == "weighted":
            self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == "weighted":
            w = torch.softmax(self.weights, dim=0)
            return torch.einsum("l,bl...->b...", w, x)
        return x[:, self.layer]
