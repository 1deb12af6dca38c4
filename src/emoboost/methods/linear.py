"""The SSL-only baseline of MS-EmoBoost: mean-pooled frame features -> linear -> softmax.

Features are standardised with statistics of the training segments (per layer and dimension),
which a linear classifier on raw transformer activations needs to train stably with Adam.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from emoboost.methods.base import UtteranceSet
from emoboost.methods.layers import LayerSelect, parse_layer
from emoboost.methods.trainer import TorchSegmentMethod


class _LinearModule(nn.Module):
    def __init__(self, num_layers: int, dim: int, n_classes: int, layer: int | str, dropout: float):
        super().__init__()
        self.select = LayerSelect(num_layers, layer)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, n_classes)

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.select(pooled)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embed(pooled)))


class LinearProbe(TorchSegmentMethod):
    """Mean over frames of the chosen layer(s) -> linear layer; Adam + early stopping on training speakers."""

    name = "linear"
    requires = ("ssl",)

    def default_params(self) -> dict[str, Any]:
        return {"layer": -1, "dropout": 0.0, "lr": 1e-3, "weight_decay": 1e-4, "max_epochs": 100, "patience": 10}

    def segment_inputs(self, data: UtteranceSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
        arrs = data.feature("ssl")  # per utterance [S, L, T, D] float16
        pooled = np.concatenate([a.mean(axis=2, dtype=np.float32) for a in arrs])  # [N, L, D], no big copy
        seg_utt = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrs)]).astype(int)
        return {"pooled": pooled}, seg_utt

    def fit_preprocessing(self, inputs: dict[str, np.ndarray]) -> None:
        x = inputs["pooled"]
        self.mean_ = torch.from_numpy(x.mean(axis=0).astype(np.float32))
        self.std_ = torch.from_numpy(x.std(axis=0).astype(np.float32) + 1e-5)

    def preprocess(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean_) / self.std_

    def build_module(self, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
        num_layers, dim = shapes["pooled"]
        parse_layer(self.params["layer"], num_layers)
        return _LinearModule(num_layers, dim, len(self.classes), self.params["layer"], float(self.params["dropout"]))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean_, "std": self.std_}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.std_ = tensors["mean"], tensors["std"]
