"""MS-EmoBoost (Song et al., Scientific Reports 2025): MFCC and spectrogram guide how SSL frames are pooled.

Per segment (3 s by default; every size below is read from the input shapes):

- MFCC branch: Bi-LSTM (dropout 0.5) over the [T_m, 40] MFCC -> X_m [T_m, 2H].
- Spectrogram branch: AlexNet ``features`` over the [T_s, F] log spectrogram as a 1-channel image
  -> feature map [256, h, w] -> X_s = h*w spatial tokens of 256 dims (300 x 200 -> 8 x 5 = 40).
  conv1 runs with its ImageNet RGB filters summed over colour, i.e. exactly as if the spectrogram
  were replicated to 3 channels, so torchvision's ImageNet state dict loads unchanged (see
  :mod:`emoboost.methods.alexnet`). The spectrogram is fed as delivered (already per-segment
  normalised, close to the zero-mean / unit-variance input ImageNet weights expect).
  ``alexnet_input="imagenet"`` instead prepares each spectrogram as the parent code does for its
  ImageNet AlexNet: min-max to [0, 1], bilinear resize to 224 x 224, 3 channels, ImageNet mean/std
  (feature map 6 x 6 = 36 tokens) — for users who load ImageNet weights (``alexnet_weights``).
- Each branch: self-attention with residual (softmax(QK^T/sqrt(d)) V + X; ``attention=False``
  skips it) -> flatten -> dropout 0.1 -> linear + ReLU to 128.
- Enhancement: concat(128, 128) -> linear to T' -> X_enh [1, T'] (one weight per SSL frame).
- X'_w = X_enh . X_w [1, D] (X_w: the chosen SSL layer's frames, or a learned weighted sum of all
  layers) -> linear to C classes -> softmax; cross-entropy. Utterance = mean of segment posteriors.

``guidance="none"`` runs the same code path with X_enh fixed to the uniform vector 1/T', i.e. mean
pooling, which *is* the paper's SSL-only baseline (mean-pooled frames -> linear -> softmax). With
``ssl_norm="pooled"`` it reproduces :class:`~emoboost.methods.linear.LinearProbe` exactly (same
standardisation, same initialisation); ``tests/methods/test_msemoboost.py`` checks this.

SSL frames are standardised per layer and dimension with training statistics (``ssl_norm``):
``"frame"`` (default) uses statistics over all training frames, the natural scale for a model that
re-weights individual frames; ``"pooled"`` uses statistics of frame means (linear.py's); ``"none"``.
MFCCs are standardised per coefficient (their scales differ by orders of magnitude; c0 dominates).

Size: AlexNet features hold 2.47 M parameters. The flatten -> 128 layers are the other big parts:
MFCC branch 300 frames x 2H (H=64: 38,400 -> 128 = 4.9 M parameters), spectrogram branch
40 tokens x 256 = 10,240 -> 128 = 1.3 M. Compute is dominated by AlexNet (~0.7 GMAC per 3-s segment
forward, about twice that again backward).

``freeze_alexnet=True`` (the CPU-feasible variant) keeps AlexNet's weights fixed, so its feature map
is a fixed function of each segment: :class:`AlexNetTokens` computes it once per segment (inference
mode, batched) and the spectrogram branch consumes those tokens directly; attention, flatten and the
128-d layer still train. Outputs equal the raw-spectrogram forward with the same weights (tested).
AlexNet's weights stay in the network and the saved model, so ``predict`` turns raw spectrograms into
tokens with the same frozen AlexNet. Not from the paper, which fine-tunes AlexNet.

Not from the paper (it leaves them open or we could not confirm them): LSTM hidden size (64 per
direction; ``lstm_hidden``, alias ``guidance_hidden``), one LSTM layer with dropout 0.5 on its output, spatial tokens for the AlexNet map,
standardisation, ``enh_residual`` (optional: X_enh = 1/T' + zero-initialised linear, so training
starts from the SSL-only baseline and guidance learns a deviation from mean pooling).

Normalised enhancement (``enh``, not from the paper; the paper's unnormalised linear X_enh is the
default ``enh=linear``): the paper's X_enh has free scale and sign, so the weighting can drift far
from any pooling. ``enh=softmax`` makes X_enh = softmax over the T' frames of a zero-initialised
linear map — a convex weighting that starts exactly at mean pooling (every weight 1/T').
``enh=bounded`` is softmax(``enh_bound`` · tanh(logits)): the same start, and no frame can weigh
more than exp(2 · enh_bound) times another (default bound 2: at most e^4 ≈ 55×), which stops the
collapse onto a handful of frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from emoboost.methods.alexnet import ALEXNET_INPUTS, AlexNetTokens, load_alexnet_weights
from emoboost.methods.base import UtteranceSet
from emoboost.methods.layer_choice import LayerRule
from emoboost.methods.layers import parse_layer
from emoboost.methods.msemoboost_net import (
    ENHANCEMENTS,
    GUIDANCE,
    MSEmoBoostNet,
    SpecBranch,
    branches,
    check_enhancement,
)
from emoboost.methods.params import DROPOUT, NON_NEGATIVE, POSITIVE, Bool, Float, Int, Param, Text, one_of
from emoboost.methods.trainer import TorchSegmentMethod

SSL_NORMS = ("frame", "pooled", "none")
RANDOM_INIT = "random init (no ImageNet weights)"


class MSEmoBoost(TorchSegmentMethod):
    """MS-EmoBoost with its ablation switches (``guidance``, ``attention``, ``layer``, ``alexnet_weights``)."""

    name = "msemoboost"
    PARAMS: ClassVar[dict[str, Any]] = {
        "guidance": Param("both", one_of(*GUIDANCE, lower=True)),  # which branches weight the frames: none (mean pooling) | mfcc | spec | both
        "attention": Param(True, Bool()),  # residual self-attention in each guidance branch
        "layer": Param(-1, LayerRule(("weighted",))),  # hidden state (-1 = last) or "weighted" (a learned sum of all layers)
        "alexnet_weights": Param(None, Text("a path, a URL or 'imagenet'", none_words=("", "none", "None"))),  # None | path | URL | "imagenet" (torchvision's official file)
        "alexnet_cache": Param(None, Text("a folder")),  # download folder for URLs (default: torch hub's checkpoints)
        "freeze_alexnet": Param(False, Bool()),  # True: AlexNet fixed, its tokens computed once per segment (CPU-feasible)
        "lstm_hidden": Param(64, Int(1)),  # Bi-LSTM size per direction (alias guidance_hidden; the paper leaves it open)
        "lstm_layers": Param(1, Int(1)),
        "lstm_dropout": Param(0.5, DROPOUT),
        "branch_dim": Param(128, Int(1)),  # each guidance branch's output size (the paper's 128)
        "branch_dropout": Param(0.1, DROPOUT),
        "dropout": Param(0.0, DROPOUT),  # on the enhanced SSL vector before the classifier
        "enh_residual": Param(False, Bool()),  # X_enh = 1/T' + a zero-initialised linear map (starts at mean pooling)
        "enh": Param("linear", one_of(*ENHANCEMENTS, lower=True)),  # the paper's unnormalised X_enh; softmax / bounded: see the module docstring
        "enh_bound": Param(2.0, POSITIVE),  # enh=bounded: no frame weighs more than exp(2 x bound) times another
        "guidance_weight_decay": Param(None, Float(0.0, none=True)),  # weight decay of the guidance branches and f_enh (None: weight_decay)
        "alexnet_input": Param("mono", one_of(*ALEXNET_INPUTS)),  # "imagenet": min-max, resize 224, 3 channels, ImageNet mean/std (for ImageNet weights)
        "finetune_top": Param(0, Int(0)),  # k > 0: train the encoder's top k layers with the model (see emoboost.methods.finetune)
        "finetune_lr_scale": Param(0.1, NON_NEGATIVE),  # their learning rate = lr x this (pretrained layers move slower)
        "mask_padding": Param(False, Bool()),  # True: zero-padded frames of a clip's last window get no weight, no statistics
        "ssl_norm": Param("frame", one_of(*SSL_NORMS)),  # SSL standardisation from training frames | pooled (frame means) | none
        "mfcc_norm": Param(True, Bool()),  # standardise each MFCC coefficient with training statistics
    }
    ALIASES: ClassVar[dict[str, str]] = {"guidance_hidden": "lstm_hidden"}  # the paper's and docs' name for it

    def __init__(self, classes: list[str], **params: Any):
        super().__init__(classes, **params)
        self._finetune_state: dict | None = None
        self.alexnet_info_: dict[str, str] = {"description": RANDOM_INIT}
        self._restoring = False

    def check_params(self) -> None:
        p = self.params
        if p["finetune_top"] and p["layer"] == "weighted":
            raise ValueError("msemoboost: finetune_top needs one output layer (layer=-1 for the last), not layer=weighted")
        check_enhancement(p["enh"], p["enh_residual"], "msemoboost: ")

    @property
    def requires(self) -> tuple[str, ...]:
        """The SSL frames and the acoustic inputs of the guidance branches this configuration has."""
        return ("ssl", *branches(self.params["guidance"]))

    # -- inputs --------------------------------------------------------------------------------
    def _finetune_span(self, num_layers: int) -> tuple[int, int] | None:
        """(input hidden state, output hidden state) when fine-tuning the top ``finetune_top`` layers."""
        k = int(self.params["finetune_top"])
        if not k:
            return None
        out = int(parse_layer(self.params["layer"], num_layers))
        if out - k < 0:
            raise ValueError(f"finetune_top={k} reaches below the embeddings for output layer {out}")
        return out - k, out

    def ssl_layers(self, num_layers: int) -> list[int]:
        span = self._finetune_span(num_layers)
        return [span[0]] if span else super().ssl_layers(num_layers)

    def segment_inputs(self, data: UtteranceSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
        view = data.ssl_view()
        if not len(view):
            raise ValueError("no utterances given")
        layer = parse_layer(self.params["layer"], view.num_layers)
        self.ssl_layers_ = int(view.num_layers)
        # Windows are drawn lazily from the store batch by batch: the corpus's frames never sit in RAM.
        span = self._finetune_span(int(view.num_layers))
        if span is not None:
            self.upstream_spec_ = getattr(view.source, "upstream_spec", None) or getattr(self, "upstream_spec_", None)
            x, seg_utt = view.segments([span[0]], squeeze=True)  # the hidden state below the fine-tuned layers
        elif layer == "weighted":
            x, seg_utt = view.segments(list(range(view.num_layers)))
        else:
            x, seg_utt = view.segments([int(layer)], squeeze=True)
        counts = np.bincount(seg_utt, minlength=len(data))
        ssl = [range(c) for c in counts]  # per-utterance segment counts, for the branch checks below
        inputs: dict[str, Any] = {"ssl": x}
        if self.params["mask_padding"]:
            inputs["valid"] = x.valid_frames().astype(np.float32)  # real frames per window (the rest is padding)
        for name in branches(self.params["guidance"]):
            arrs = data.feature(name)
            for uid, a, s in zip(data.ids, arrs, ssl):
                if a.ndim != 3 or len(a) != len(s):
                    raise ValueError(
                        f"utterance {uid}: {name} must be [S, frames, bins] with the ssl's S={len(s)} "
                        f"segments, got {a.shape}"
                    )
            if name == "spec" and self.params["freeze_alexnet"]:
                inputs[name] = AlexNetTokens(arrs, self._spec_branch)  # type: ignore[assignment]
            else:
                inputs[name] = np.concatenate(arrs).astype(np.float32, copy=False)
        return inputs, seg_utt

    def _spec_branch(self) -> SpecBranch:
        """The current network's spectrogram branch, whose frozen AlexNet makes the tokens."""
        if not hasattr(self, "module_"):
            raise RuntimeError("frozen-AlexNet tokens need the network: fit or load the model first")
        return self.module_.spec_branch

    def fit_preprocessing(self, inputs: dict[str, np.ndarray]) -> None:
        valid = inputs.get("valid")
        # fine-tuned layers expect the encoder's own hidden states: no standardisation in front of them
        norm = "none" if self.params["finetune_top"] else self.params["ssl_norm"]
        self.ssl_mean_, self.ssl_std_ = _ssl_stats(inputs["ssl"], norm, valid=valid)
        self.mfcc_mean_ = self.mfcc_std_ = None
        if "mfcc" in inputs and self.params["mfcc_norm"]:
            m = inputs["mfcc"].astype(np.float64)
            if valid is not None:  # the MFCC frames of the windows' real part (same fraction as the SSL frames)
                n_ssl = inputs["ssl"].shape[-2]
                keep = np.round(np.asarray(valid, np.float64) / n_ssl * m.shape[1]).astype(int)
                m = np.concatenate([seg[: max(k, 1)] for seg, k in zip(m, keep)])[None]
            self.mfcc_mean_ = torch.from_numpy(m.mean(axis=(0, 1)).astype(np.float32))
            self.mfcc_std_ = torch.from_numpy(m.std(axis=(0, 1)).astype(np.float32) + 1e-5)

    def preprocess(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "ssl" and self.ssl_mean_ is not None:
            return (x - self.ssl_mean_) / self.ssl_std_
        if name == "mfcc" and self.mfcc_mean_ is not None:
            return (x - self.mfcc_mean_) / self.mfcc_std_
        return x

    def _build_top(self) -> nn.Module | None:
        """The trainable top layers: copied from the upstream for a fit, rebuilt from the saved config on load."""
        if not self.params["finetune_top"]:
            return None
        from emoboost.methods.finetune import TopLayers, top_layers_from_upstream

        if self._restoring:
            st = self._finetune_state or {}
            if not st:
                raise ValueError("saved model has finetune_top but no saved encoder layer config")
            return TopLayers(st["config"], st["first"], st["last"], st["total"])
        spec = getattr(self, "upstream_spec_", None)
        if not spec:
            raise ValueError("finetune_top needs to know the upstream: run it through `emoboost run` / a store "
                             "source that names its upstream")
        first, last = self._finetune_span(int(self.ssl_layers_))
        top = top_layers_from_upstream(spec, first, last)
        self._finetune_state = {"config": top.config_dict, "first": top.first, "last": top.last, "total": top.total}
        return top

    def param_groups(self) -> list[dict]:
        """The guidance branches and f_enh in their own group when ``guidance_weight_decay`` is set:
        they hold ~99 % of the parameters and overfit first (the MFCC branch memorises its segments)."""
        wd = self.params.get("guidance_weight_decay")
        names = ("mfcc_branch", "spec_branch", "enhance")
        guided = [q for n, c in self.module_.named_children() if n in names for q in c.parameters()] \
            if wd is not None else []
        top = list(self.module_.top.parameters()) if self.module_.top is not None else []
        ids = {id(q) for q in guided + top}
        groups = [{"params": [q for q in self.module_.parameters() if id(q) not in ids]}]
        if guided:
            groups.append({"params": guided, "weight_decay": float(wd)})
        if top:  # pretrained layers: a lower learning rate
            groups.append({"params": top, "lr": float(self.params["lr"]) * float(self.params["finetune_lr_scale"])})
        return groups

    # -- model ---------------------------------------------------------------------------------
    def build_module(self, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
        p = self.params
        top = self._build_top()
        net = MSEmoBoostNet(
            top=top,
            ssl_shape=shapes["ssl"],
            n_classes=len(self.classes),
            layer="weighted" if p["layer"] == "weighted" else int(p["layer"]),
            guidance=p["guidance"],
            mfcc_shape=shapes.get("mfcc"),
            spec_shape=shapes.get("spec"),
            attention=p["attention"],
            lstm_hidden=int(p["lstm_hidden"]),
            lstm_layers=int(p["lstm_layers"]),
            lstm_dropout=float(p["lstm_dropout"]),
            branch_dim=int(p["branch_dim"]),
            branch_dropout=float(p["branch_dropout"]),
            freeze_alexnet=p["freeze_alexnet"],
            enh_residual=p["enh_residual"],
            enh=str(p["enh"]),
            enh_bound=float(p["enh_bound"]),
            mask_padding=p["mask_padding"],
            alexnet_input=str(p["alexnet_input"]),
            dropout=float(p["dropout"]),
        )
        if hasattr(net, "spec_branch") and not self._restoring:
            if p["alexnet_weights"] is not None:
                info = load_alexnet_weights(net.spec_branch.alexnet, p["alexnet_weights"], p["alexnet_cache"])
                self.alexnet_info_ = {"description": info.describe(), "source": info.source,
                                      "file": info.file, "sha256": info.sha256}
            else:
                self.alexnet_info_ = {"description": RANDOM_INIT}
        return net

    def describe(self) -> dict:
        p = self.params
        uses_spec = "spec" in branches(p["guidance"])
        d: dict[str, Any] = {
            "guidance": p["guidance"],
            "attention": p["attention"] if p["guidance"] != "none" else "n/a (no guidance)",
            "layer": p["layer"],
            "enhancement": (
                "uniform 1/T' (mean pooling: the SSL-only baseline)" if p["guidance"] == "none"
                else {"softmax": "softmax over frames of a linear map of the guidance (starts at mean pooling)",
                      "bounded": f"softmax({p['enh_bound']:g} * tanh(linear)) over frames (starts at mean pooling)"}
                .get(p["enh"], "linear from guidance branches" + (" + 1/T' (residual)" if p["enh_residual"] else ""))
            ),
            "alexnet_weights": self.alexnet_info_["description"] if uses_spec else "not used (no spectrogram branch)",
            "ssl_norm": p["ssl_norm"],
            "mask_padding": p["mask_padding"],
        }
        if p["finetune_top"]:
            d["finetune"] = (self.module_.top.describe() if hasattr(self, "module_") and self.module_.top is not None
                             else f"top {p['finetune_top']} encoder layers fine-tuned") + \
                f", lr x {p['finetune_lr_scale']:g}; SSL inputs not standardised"
        if uses_spec:
            d["alexnet_frozen"] = p["freeze_alexnet"]
            if p["freeze_alexnet"]:
                d["alexnet_features"] = "computed once per segment (frozen AlexNet, inference mode)"
            if "sha256" in self.alexnet_info_:
                d["alexnet_sha256"] = self.alexnet_info_["sha256"]
        if hasattr(self, "module_"):
            d["parameters"] = {
                name: int(sum(t.numel() for t in child.parameters()))
                for name, child in self.module_.named_children() if any(True for _ in child.parameters())
            }
            d["parameters"]["total"] = self.num_parameters()
        return d

    # -- persistence ---------------------------------------------------------------------------
    def extra_tensors(self) -> dict[str, torch.Tensor]:
        names = ("ssl_mean", "ssl_std", "mfcc_mean", "mfcc_std")
        return {n: getattr(self, f"{n}_") for n in names if getattr(self, f"{n}_", None) is not None}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for n in ("ssl_mean", "ssl_std", "mfcc_mean", "mfcc_std"):
            setattr(self, f"{n}_", tensors.get(n))

    def _state_config(self) -> dict:
        d = {**super()._state_config(), "alexnet_weights": self.alexnet_info_}
        if self._finetune_state:
            d["finetune"] = self._finetune_state
        return d

    def _load_weights(self, directory: Path, state: dict) -> None:
        """Restore trained weights; ImageNet weights are inside them, so the file is not needed again."""
        self._restoring = True
        self._finetune_state = state.get("finetune")
        try:
            super()._load_weights(directory, state)
        finally:
            self._restoring = False
        self.alexnet_info_ = dict(state.get("alexnet_weights", {"description": RANDOM_INIT}))


def _ssl_stats(x: np.ndarray, mode: str, chunk: int = 16, valid: np.ndarray | None = None
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per (layer,) dimension mean/std of [N, (L,) T', D] training frames, shaped to broadcast.

    ``frame``: over all frames (float64, chunked: the float16 array may be GBs). ``pooled``: over
    per-segment frame means, computed like linear.py so ``guidance="none"`` matches it exactly.
    ``valid`` [N] (``mask_padding``): only each window's first ``valid`` frames count.
    """
    if mode == "none":
        return None, None
    t = x.shape[-2]
    if mode == "pooled":
        parts = []
        for s in range(0, len(x), chunk):
            c = x[s : s + chunk].astype(np.float32)
            if valid is None:
                parts.append(c.mean(axis=-2))
            else:
                w = (np.arange(t)[None, :] < np.asarray(valid[s : s + chunk])[:, None]).astype(np.float32)
                w = w.reshape(w.shape[0], *([1] * (c.ndim - 3)), t, 1)
                parts.append((c * w).sum(axis=-2) / np.maximum(w.sum(axis=-2), 1))
        pooled = np.concatenate(parts)
        mean, std = pooled.mean(axis=0), pooled.std(axis=0) + 1e-5
    else:
        total = np.zeros(x.shape[1:-2] + x.shape[-1:], dtype=np.float64)
        sq = np.zeros_like(total)
        n = 0
        for s in range(0, len(x), chunk):
            c = x[s : s + chunk].astype(np.float64)
            if valid is None:
                total += c.sum(axis=(0, -2))
                sq += (c * c).sum(axis=(0, -2))
                n += len(c) * t
                continue
            w = (np.arange(t)[None, :] < np.asarray(valid[s : s + chunk])[:, None]).astype(np.float64)
            n += int(w.sum())
            w = w.reshape(w.shape[0], *([1] * (c.ndim - 3)), t, 1)
            total += (c * w).sum(axis=(0, -2))
            sq += (c * c * w).sum(axis=(0, -2))
        n = max(n, 1)
        mean = total / n
        std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0)) + 1e-5
    mean_t = torch.from_numpy(np.asarray(mean, dtype=np.float32)).unsqueeze(-2)  # [(L,) 1, D]
    std_t = torch.from_numpy(np.asarray(std, dtype=np.float32)).unsqueeze(-2)
    return mean_t, std_t
