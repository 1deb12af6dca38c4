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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emoboost.methods.alexnet import AlexNet, feature_map_shape, load_alexnet_weights
from emoboost.methods.base import UtteranceSet
from emoboost.methods.layers import LayerSelect, parse_layer
from emoboost.methods.trainer import TorchSegmentMethod

GUIDANCE = ("none", "mfcc", "spec", "both")
ENHANCEMENTS = ("linear", "softmax", "bounded")
SSL_NORMS = ("frame", "pooled", "none")
RANDOM_INIT = "random init (no ImageNet weights)"


def _as_bool(value: Any, name: str) -> bool:
    """Accept real booleans and the strings a CLI or JSON config produces."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise ValueError(f"{name} must be true or false, got {value!r}")


def branches(guidance: str) -> tuple[str, ...]:
    """Acoustic inputs a guidance mode uses, in concatenation order."""
    return {"none": (), "mfcc": ("mfcc",), "spec": ("spec",), "both": ("mfcc", "spec")}[guidance]


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


ALEXNET_INPUTS = ("mono", "imagenet")
IMAGENET_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_image(spec: torch.Tensor) -> torch.Tensor:
    """[B, T, F] spectrograms -> [B, 3, 224, 224] images as ImageNet weights expect (the parent
    code's preprocessing): per-image min-max to [0, 1], bilinear resize, 3 channels, ImageNet mean/std."""
    x = spec.unsqueeze(1)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp(min=1e-8)
    x = F.interpolate(x, size=(IMAGENET_SIZE, IMAGENET_SIZE), mode="bilinear", align_corners=False)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


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


class AlexNetTokens:
    """The ``spec`` input of a frozen-AlexNet model: indexing it yields AlexNet tokens, computed once.

    Why lazy: the trainer reads the inputs *before* it builds the network, so the AlexNet that maps
    spectrograms to tokens does not exist yet when ``segment_inputs`` runs. The first indexing (the
    first training or prediction batch, when the network exists) runs the network's AlexNet over all
    segments and keeps the tokens (float32, 40 x 256 = 40 KB per 3-s segment); later batches are
    slices. They are recomputed only if the network's AlexNet is replaced (a new fit).

    ``shape`` and ``len`` describe the spectrograms [N, T, F], the shape the network is built (and
    saved) for; indexing and ``np.asarray`` give tokens [n, h*w, 256], what its branch then consumes.
    """

    def __init__(self, spectrograms: list[np.ndarray], branch: Callable[[], SpecBranch], batch_size: int = 64):
        self._spectrograms = spectrograms
        self._branch = branch
        self._batch_size = batch_size
        self.shape = (sum(len(a) for a in spectrograms), *spectrograms[0].shape[1:])
        self._tokens: np.ndarray | None = None
        self._alexnet: nn.Module | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def tokens(self) -> np.ndarray:
        branch = self._branch()
        if self._tokens is None or self._alexnet is not branch.alexnet:
            self._tokens = branch.precompute(self._spectrograms, self._batch_size)
            self._alexnet = branch.alexnet
        return self._tokens

    def __getitem__(self, idx: Any) -> np.ndarray:
        return self.tokens()[idx]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        t = self.tokens()
        return t if dtype is None else t.astype(dtype, copy=False)


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
        if enh != "linear" and enh_residual:
            raise ValueError(f"enh_residual applies to enh='linear' only (enh={enh!r} already starts at mean pooling)")
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


class MSEmoBoost(TorchSegmentMethod):
    """MS-EmoBoost with its ablation switches (``guidance``, ``attention``, ``layer``, ``alexnet_weights``)."""

    name = "msemoboost"
    requires = ("ssl", "mfcc", "spec")  # the most any configuration needs; instances narrow it

    def __init__(self, classes: list[str], **params: Any):
        if "guidance_hidden" in params:  # the issue tracker's and docs' name for the Bi-LSTM size
            gh = params.pop("guidance_hidden")
            if "lstm_hidden" in params and int(params["lstm_hidden"]) != int(gh):
                raise ValueError(f"guidance_hidden={gh} and lstm_hidden={params['lstm_hidden']} name the same "
                                 f"Bi-LSTM size; give one")
            params["lstm_hidden"] = gh
        super().__init__(classes, **params)
        p = self.params
        p["guidance"] = str(p["guidance"]).lower()
        if p["guidance"] not in GUIDANCE:
            raise ValueError(f"guidance must be one of {GUIDANCE}, got {p['guidance']!r}")
        p["finetune_top"] = int(p["finetune_top"])
        if p["finetune_top"] < 0:
            raise ValueError(f"finetune_top must be >= 0, got {p['finetune_top']}")
        if p["finetune_top"] and p["layer"] == "weighted":
            raise ValueError("finetune_top needs one output layer (layer=-1 for the last), not layer=weighted")
        self._finetune_state: dict | None = None
        p["enh"] = str(p["enh"]).lower()
        if p["enh"] not in ENHANCEMENTS:
            raise ValueError(f"enh must be one of {ENHANCEMENTS}, got {p['enh']!r}")
        if p["ssl_norm"] not in SSL_NORMS:
            raise ValueError(f"ssl_norm must be one of {SSL_NORMS}, got {p['ssl_norm']!r}")
        for key in ("attention", "freeze_alexnet", "enh_residual", "mfcc_norm", "mask_padding"):
            p[key] = _as_bool(p[key], key)
        if isinstance(p["layer"], str) and p["layer"] != "weighted":
            parse_layer(p["layer"], 10**6)  # syntax check now; range is checked against the data
            p["layer"] = int(p["layer"])
        if p["alexnet_weights"] in ("", "none", "None"):
            p["alexnet_weights"] = None
        self.requires = ("ssl", *branches(p["guidance"]))
        self.alexnet_info_: dict[str, str] = {"description": RANDOM_INIT}
        self._restoring = False

    def default_params(self) -> dict[str, Any]:
        return {
            "guidance": "both",  # which branches weight the frames: none (mean pooling) | mfcc | spec | both
            "attention": True,  # residual self-attention in each guidance branch
            "layer": -1,  # hidden state (-1 = last) or "weighted" (a learned sum of all layers)
            "alexnet_weights": None,  # None | path | URL | "imagenet" (torchvision's official file)
            "alexnet_cache": None,  # download folder for URLs (default: torch hub's checkpoints)
            "freeze_alexnet": False,  # True: AlexNet fixed, its tokens computed once per segment (CPU-feasible)
            "lstm_hidden": 64,  # Bi-LSTM size per direction (alias guidance_hidden; the paper leaves it open)
            "lstm_layers": 1,
            "lstm_dropout": 0.5,
            "branch_dim": 128,  # each guidance branch's output size (the paper's 128)
            "branch_dropout": 0.1,
            "dropout": 0.0,  # on the enhanced SSL vector before the classifier
            "enh_residual": False,  # X_enh = 1/T' + a zero-initialised linear map (starts at mean pooling)
            "enh": "linear",  # the paper's unnormalised X_enh; softmax / bounded: see the module docstring
            "enh_bound": 2.0,  # enh=bounded: no frame weighs more than exp(2 x bound) times another
            "guidance_weight_decay": None,  # weight decay of the guidance branches and f_enh (None: weight_decay)
            "alexnet_input": "mono",  # "imagenet": min-max, resize 224, 3 channels, ImageNet mean/std (for ImageNet weights)
            "finetune_top": 0,  # k > 0: train the encoder's top k layers with the model (see emoboost.methods.finetune)
            "finetune_lr_scale": 0.1,  # their learning rate = lr x this (pretrained layers move slower)
            "mask_padding": False,  # True: zero-padded frames of a clip's last window get no weight, no statistics
            "ssl_norm": "frame",  # SSL standardisation from training frames | pooled (frame means) | none
            "mfcc_norm": True,  # standardise each MFCC coefficient with training statistics
        }

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
