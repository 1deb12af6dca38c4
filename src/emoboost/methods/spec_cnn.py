"""Transfer-learning CNN on log-mel "images": the ImageNet-CNN baseline of the SSL+CNN paper.

Each segment's log-mel [T, M] (10 ms hop, M mel bins read from the data) is one 1 x T x M image,
standardised per mel bin with training statistics, and a whole ImageNet-style CNN is fine-tuned on
it (all layers; a new linear head for the emotion classes). Architectures:

- ``resnet18`` (default): torchvision's ResNet-18 rebuilt here with torchvision's exact parameter
  names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``fc``), so a torchvision ``resnet18`` state dict
  loads with ``strict=True`` (its 1000-class ``fc`` is dropped). No torchvision needed.
- ``alexnet``: the features of :mod:`emoboost.methods.alexnet` (torchvision names, shared with
  MS-EmoBoost, so one ImageNet file serves both) + global average pooling + dropout + linear head.
  Needs T, M >= 63. ~4x cheaper, but without batch-norm it learns poorly from scratch (EmoDB LOSO
  fold 0: UA 40 % after 40 epochs, against 61 % for ResNet-18 after 16): use it with ImageNet weights.

``image_size`` = [H, W] resamples the standardised image (bilinear); ``None`` in either place keeps
that axis. The default [128, None] squeezes a 3 s segment's 300 frames into 128 (a 23 ms hop, still
finer than prosody) and keeps every mel bin, halving ResNet-18's cost; ``None`` keeps the native size.

``pretrained_weights``: ``None`` (default, offline) trains from scratch and the report says
"from scratch (no ImageNet weights)"; ``"imagenet"`` downloads torchvision's official file through
``torch.hub.load_state_dict_from_url`` (hash-checked, cached); or a local path to a torchvision
state dict (``.pth`` read with ``weights_only=True``, or ``.safetensors``). With ImageNet weights the
1-channel image is replicated to 3 channels, as the RGB filters expect; from scratch conv1 takes
one channel. ImageNet weights are read only when fitting; a saved model carries its own weights.

Cost, measured on a shared 2-core x86 CPU, 1 torch thread, batch of 32 segments of 3 s (1 x 300 x 80
log-mel), forward + backward + Adam step: ResNet-18 11.17 M parameters (7 classes), ~3 s per batch at
the default 128 x 80 (~6-7 s at the native 300 x 80); AlexNet 2.47 M, ~1.7 s. A 10-fold EmoDB run
with ResNet-18 is a few hours on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emoboost.methods.base import UtteranceSet
from emoboost.methods.params import DROPOUT, Int, ListOf, Param, Text, one_of
from emoboost.methods.torch_weights import read_state_dict
from emoboost.methods.trainer import TorchSegmentMethod

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
"""torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` (the 8 hex digits are its SHA-256 prefix)."""

ARCHS = ("resnet18", "alexnet")
FROM_SCRATCH = "from scratch (no ImageNet weights)"


# -- ResNet-18 with torchvision's names -------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision ``BasicBlock`` (expansion 1), same attribute names."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """``torchvision.models.resnet18`` layer for layer (zero-init of residual BNs left at default)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(x)))


class AlexNetHead(nn.Module):
    """AlexNet features (shared module, torchvision names under ``features.``) + GAP + linear."""

    def __init__(self, num_classes: int, in_channels: int, dropout: float):
        super().__init__()
        from emoboost.methods.alexnet import FEATURE_CHANNELS, AlexNet

        self.features = AlexNet(features_only=True).features
        self.in_channels = in_channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(FEATURE_CHANNELS, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        from emoboost.methods.alexnet import mono_features

        # 1 channel: conv1 with RGB weights summed == replicating the image (ImageNet or scratch alike).
        f = mono_features(self.features, x) if x.shape[1] == 1 else self.features(x)
        return f.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(x)))


# -- weights ----------------------------------------------------------------------------------
def read_resnet18_state_dict(spec: str | Path, model_dir: str | Path | None = None
                             ) -> tuple[dict[str, torch.Tensor], str]:
    """Read a torchvision ResNet-18 state dict from a path or URL -> (state dict, description).

    ``"imagenet"`` = torchvision's official file (:data:`RESNET18_URL`), downloaded once into the
    torch hub cache (or ``model_dir``) and checked against the SHA-256 prefix in its name.
    """
    state, info = read_state_dict(spec, "ResNet-18", RESNET18_URL, model_dir)
    return state, info.describe()


def load_backbone_weights(model: nn.Module, arch: str, spec: str | Path,
                          model_dir: str | Path | None = None) -> str:
    """Load torchvision weights into everything but the class head (strict); -> description."""
    if arch == "alexnet":
        from emoboost.methods.alexnet import read_alexnet_state_dict

        state, info = read_alexnet_state_dict(spec, model_dir)
        model.features.load_state_dict(
            {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}, strict=True)
        return info.describe()
    state, desc = read_resnet18_state_dict(spec, model_dir)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise ValueError(f"{spec}: not a torchvision resnet18 state dict (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {bad[:3]})")
    model.load_state_dict(state, strict=False)  # fc stays freshly initialised
    return desc


# -- the method -------------------------------------------------------------------------------
class SpectrogramCNN(TorchSegmentMethod):
    """Log-mel image per segment -> ImageNet-style CNN fine-tuned end to end."""

    name = "spec_cnn"
    PARAMS: ClassVar[dict[str, Any]] = {
        "arch": Param("resnet18", one_of(*ARCHS)),
        "pretrained_weights": Param(None, Text("None | 'imagenet' | a path or URL of torchvision weights")),
        "weights_dir": Param(None, Text("a folder")),  # download cache for "imagenet" (default: torch hub's)
        "image_size": Param([128, None], ListOf(Int(1, none=True), length=2, none=True)),  # [H, W] to resample the T x M image to (None: keep that axis)
        "dropout": Param(0.2, DROPOUT),
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "max_epochs": 30,
        "patience": 6,
    }
    _fitting = False

    @property
    def requires(self) -> tuple[str, ...]:
        return ("logmel",)

    @property
    def _pretrained(self) -> bool:
        w = self.params.get("pretrained_weights")
        return w is not None and str(w).strip().lower() not in ("", "none", "null", "scratch")

    def segment_inputs(self, data: UtteranceSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
        x, seg_utt = data.segments("logmel")
        if x.ndim != 3:
            raise ValueError(f"spec_cnn: feature 'logmel' must be [S, T, M] per utterance, got {x.shape[1:]}")
        if hasattr(self, "input_shapes_") and x.shape[2] != self.input_shapes_["image"][1]:
            raise ValueError(f"spec_cnn was trained on {self.input_shapes_['image'][1]} mel bins, got {x.shape[2]}")
        return {"image": x}, seg_utt

    def fit_preprocessing(self, inputs: dict[str, np.ndarray]) -> None:
        x = inputs["image"]
        self.mean_ = torch.from_numpy(x.mean(axis=(0, 1), dtype=np.float64).astype(np.float32))
        self.std_ = torch.from_numpy(x.std(axis=(0, 1), dtype=np.float64).astype(np.float32) + 1e-5)

    def preprocess(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = ((x - self.mean_) / self.std_).unsqueeze(1)  # [B, 1, T, M]
        h, w = self._image_hw({"image": tuple(x.shape[2:])})
        if (h, w) != tuple(x.shape[2:]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x

    def _image_hw(self, shapes: dict[str, tuple[int, ...]]) -> tuple[int, int]:
        """The CNN's input size: ``image_size`` with None (or no image_size) = the native axis."""
        t, m = shapes["image"]
        size = self.params.get("image_size") or [None, None]
        return (int(size[0]) if size[0] else int(t), int(size[1]) if size[1] else int(m))

    def build_module(self, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
        arch = self.params["arch"]
        h, w = self._image_hw(shapes)
        n, dropout = len(self.classes), float(self.params["dropout"])
        if arch == "alexnet":
            from emoboost.methods.alexnet import feature_map_shape

            feature_map_shape(h, w)  # raises a clear error when the image is too small
            model: nn.Module = AlexNetHead(n, 1, dropout)
        else:
            model = ResNet18(n, in_channels=3 if self._pretrained else 1, dropout=dropout)
        if self._pretrained and self._fitting:
            self.weights_info_ = load_backbone_weights(model, arch, self.params["pretrained_weights"],
                                                       self.params.get("weights_dir"))
        return _ReplicateChannels(model) if (arch == "resnet18" and self._pretrained) else _Named(model)

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> SpectrogramCNN:
        """As the trainer's fit; ImageNet weights are read here only (never when loading a saved model)."""
        self._fitting = True
        try:
            super().fit(train, valid, seed)
        finally:
            self._fitting = False
        return self

    def describe(self) -> dict:
        weights = FROM_SCRATCH
        if self._pretrained:
            weights = getattr(self, "weights_info_", f"ImageNet weights from {self.params['pretrained_weights']}")
        d: dict[str, Any] = {"arch": self.params["arch"], "weights": weights, "fine_tuned": "all layers"}
        if hasattr(self, "input_shapes_"):
            d["input"] = f"1 x {self.input_shapes_['image'][0]} x {self.input_shapes_['image'][1]} log-mel"
            h, w = self._image_hw(self.input_shapes_)
            if (h, w) != tuple(self.input_shapes_["image"]):
                d["input"] += f" resampled to {h} x {w}"
        return d

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean_, "std": self.std_}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.std_ = tensors["mean"], tensors["std"]

    def _state_config(self) -> dict:
        st = super()._state_config()
        if hasattr(self, "weights_info_"):
            st["weights_info"] = self.weights_info_
        return st

    def _load_weights(self, directory: Path, state: dict) -> None:
        if "weights_info" in state:
            self.weights_info_ = state["weights_info"]
        super()._load_weights(directory, state)


class _Named(nn.Module):
    """Adapter: the trainer calls ``module(image=...)``; keeps the backbone's keys under ``net.``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.embed(self._prep(image))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(self._prep(image))

    def _prep(self, image: torch.Tensor) -> torch.Tensor:
        return image


class _ReplicateChannels(_Named):
    """Grey image -> 3 identical channels, as ImageNet's RGB conv1 expects."""

    def _prep(self, image: torch.Tensor) -> torch.Tensor:
        return image.expand(-1, 3, -1, -1)
