"""The SSL-only baseline of MS-EmoBoost: pooled frame features -> linear -> softmax.

By default each utterance is one example: the mean of its own frames (from the feature store's
statistics, no zero padding). ``pooling=segment`` keeps the older protocol (3 s windows, utterance =
mean segment posterior). Features are standardised with training statistics, which a linear layer
on raw transformer activations needs to train stably with Adam. ``layer`` is one index, a list
(``2,3,4``: concatenated), ``weighted`` (a learned softmax-weighted sum of all layers, s3prl-style) or
``auto`` (the default): the layers of logreg's ``layer=auto`` committee, concatenated — an inner CV on
the training speakers scores each run of 1-3 adjacent hidden states with a logistic regression on the
same pooled inputs (training the probe itself once per candidate and inner fold would cost far more).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from emoboost.methods import adaptation
from emoboost.methods.base import UtteranceSet
from emoboost.methods.inner_cv import CS
from emoboost.methods.layer_choice import LayerRule, is_auto
from emoboost.methods.params import DROPOUT, Param
from emoboost.methods.pooling import (
    SpeakerNorm,
    _saved_layers,
    auto_description,
    auto_state,
    check_auto,
    choose_auto,
    head_dict,
    load_auto_state,
    pooled_inputs,
    pooled_params,
    probe_layers,
    reset_fit_state,
    resolve_layers,
)
from emoboost.methods.trainer import TorchSegmentMethod


class _LinearModule(nn.Module):
    def __init__(self, k: int, dim: int, n_classes: int, weighted: bool, dropout: float):
        super().__init__()
        self.weighted = weighted
        if weighted:
            self.weights = nn.Parameter(torch.zeros(k))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim if weighted else k * dim, n_classes)

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.weighted:
            return torch.einsum("l,bld->bd", torch.softmax(self.weights, dim=0), pooled)
        return pooled.flatten(1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embed(pooled)))


class LinearProbe(TorchSegmentMethod):
    """Pooled frames of the chosen layer(s) -> linear layer; Adam + early stopping on training speakers."""

    name = "linear"
    PARAMS: ClassVar[dict[str, Any]] = {
        **pooled_params(LayerRule(("weighted", "auto"), lists=True)),  # "weighted": learned layer sum
        "dropout": Param(0.0, DROPOUT),
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "max_epochs": 100,
        "patience": 10,  # epochs without a better validation score before stopping
    }

    def check_params(self) -> None:
        check_auto(self.params)
        adaptation.check_method_params(self.params, self.name)

    def ssl_layers(self, num_layers: int) -> list[int]:
        """Hidden states this configuration reads (the store may stop the encoder at the deepest);
        with ``layer=auto`` every hidden state until fitted, then the chosen ones."""
        return probe_layers(self, num_layers)

    def needs_frames(self) -> bool:
        return self.params["pooling"] == "segment"

    def segment_inputs(self, data: UtteranceSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
        layers = self.ssl_layers(data.ssl_view().num_layers)
        x, seg_utt = pooled_inputs(data, layers, self.params["pooling"], self.params["stats"])
        return {"pooled": adaptation.speaker_inputs(self, x, data, seg_utt)}, seg_utt

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> LinearProbe:
        reset_fit_state(self)
        if is_auto(self.params["layer"]):
            self._choose_layers(UtteranceSet.concat([train, valid]) if valid is not None and len(valid) else train,
                                seed)
        self.layers_ = self.ssl_layers(train.ssl_view().num_layers)  # the head contract names them
        return super().fit(train, valid, seed)  # type: ignore[return-value]

    def _choose_layers(self, data: UtteranceSet, seed: int) -> None:
        """``layer=auto``: logreg's inner CV over the training (+ validation) speakers picks the committee;
        the probe reads the union of its runs' layers, concatenated."""
        n_layers = data.ssl_view().num_layers
        if adaptation.adapts(self):  # an adapter is fitted on the chosen layers only, by the training loop
            x, seg_utt = pooled_inputs(data, list(range(n_layers)), self.params["pooling"], self.params["stats"])
        else:  # every hidden state (speaker-normalised if asked)
            inputs, seg_utt = self.segment_inputs(data)
            x = inputs["pooled"]
        self.__dict__.pop("spk_", None)  # refitted on the chosen layers by the training loop
        x = x.reshape(len(seg_utt), n_layers, -1)
        choose_auto(x, data.labels()[seg_utt], data.groups[seg_utt], seg_utt, len(self.classes), list(CS), 3,
                    seed).apply(self)

    def fit_preprocessing(self, inputs: dict[str, np.ndarray]) -> None:
        x = inputs["pooled"]
        self.mean_ = torch.from_numpy(x.mean(axis=0).astype(np.float32))
        self.std_ = torch.from_numpy(x.std(axis=0).astype(np.float32) + 1e-5)

    def preprocess(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean_) / self.std_

    def build_module(self, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
        k, dim = shapes["pooled"]
        weighted = resolve_layers(self.params["layer"], max(k, 1))[1] if self.params["layer"] == "weighted" else False
        return _LinearModule(k, dim, len(self.classes), weighted, float(self.params["dropout"]))

    def describe(self) -> dict:
        d = {"pooling": f"{self.params['pooling']} ({self.params['stats']})"}
        if is_auto(self.params["layer"]):
            d.update(auto_description(self))
            d["inner CV"] = getattr(self, "inner_cv_", None)
        return {**d, **adaptation.describe_speaker(self)}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        t = {"mean": self.mean_, "std": self.std_}
        if hasattr(self, "spk_"):
            t.update({"spk_mean": torch.from_numpy(self.spk_.mean_), "spk_std": torch.from_numpy(self.spk_.std_)})
        return {**t, **{k: torch.from_numpy(v) for k, v in adaptation.save_arrays(self).items()}}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.std_ = tensors["mean"], tensors["std"]
        if "spk_mean" in tensors:
            self.spk_ = SpeakerNorm(int(self.params["min_speaker_utts"]))
            self.spk_.mean_, self.spk_.std_ = tensors["spk_mean"].numpy(), tensors["spk_std"].numpy()
        adaptation.load_arrays(self, tensors)

    def _state_config(self) -> dict:
        state = super()._state_config()
        if hasattr(self, "layers_"):
            state["layers"] = list(self.layers_)
        return {**state, **auto_state(self)}

    def _load_weights(self, directory, state: dict) -> None:  # noqa: ANN001 - Method's signature
        load_auto_state(self, state)  # before the module is built: layer=auto's inputs are the chosen layers
        super()._load_weights(directory, state)

    # -- the model as a pooled linear head (emoboost.inference.export's ONNX contract) ----------------------
    def pooled_head(self, num_layers: int | None = None) -> dict | None:
        """The fitted probe as a pooled linear head, or None where it is not one.

        Utterance pooling of frame means is linear in the clip's per-layer frame means, so the
        standardisation, the learned layer weights (``layer=weighted``: folded into ``weight``) and
        the linear layer collapse into one head. ``speaker_norm=speaker`` folds in the training-set
        fallback statistics, which is what a lone clip gets at prediction time. Segment pooling
        (a mean of window posteriors) and ``stats=meanstd`` (frame stds) are not linear heads.
        ``num_layers`` resolves negative layer indices of models saved without their layer list.
        """
        p = self.params
        if p["pooling"] != "utterance" or p["stats"] != "mean" or not hasattr(self, "module_"):
            return None
        mod = self.module_
        k, dim = self.input_shapes_["pooled"]
        weight = mod.out.weight.detach().cpu().double().numpy()
        bias = mod.out.bias.detach().cpu().double().numpy()
        if mod.weighted:  # out(sum_l w_l x'_l) = sum_l (w_l W) x'_l + b
            w = torch.softmax(mod.weights.detach().cpu().double(), dim=0).numpy()
            weight = np.concatenate([w[i] * weight for i in range(k)], axis=1)
        layers = getattr(self, "layers_", None) or _saved_layers(p["layer"], k, num_layers)
        if layers is None or len(layers) != k or len(set(layers)) != k:
            return None
        spk = getattr(self, "spk_", None) or adaptation.adapter_for(self)
        return head_dict(self.classes, layers, self.mean_.double().numpy().reshape(-1),
                         self.std_.double().numpy().reshape(-1), weight, bias, spk)


