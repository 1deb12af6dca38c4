"""AlexNet with torchvision's exact parameter names, so ImageNet weights load without torchvision.

MS-EmoBoost's spectrogram branch is an ImageNet-pretrained AlexNet. torchvision (and a CUDA torch
it would drag in) is not needed for that: this module rebuilds ``torchvision.models.alexnet``
layer for layer, so a torchvision state dict (``alexnet-owt-7be5be79.pth``) loads with
``load_state_dict(strict=True)``. Weights come from a local file or, on machines with internet,
from torchvision's official URL through ``torch.hub.load_state_dict_from_url`` (hash-checked).

The spectrogram is a 1-channel image while ImageNet conv1 expects RGB. :func:`mono_features` runs
conv1 with its weights summed over the 3 input channels, which is exactly what replicating the
spectrogram into 3 channels computes (same output, same gradients for all three channel slices),
at a third of conv1's cost; the 3-channel parameter keeps its torchvision shape, so ImageNet
weights still load. :func:`imagenet_image` instead prepares a spectrogram as ImageNet weights expect.

A frozen AlexNet is a fixed function of its input: :class:`AlexNetTokens` computes its feature map
once per segment and serves it to every later batch (MS-EmoBoost's ``freeze_alexnet``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emoboost.methods.torch_weights import WeightsInfo, read_state_dict

IMAGENET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
"""torchvision's ``AlexNet_Weights.IMAGENET1K_V1`` file (the 8 hex digits are its SHA-256 prefix)."""

# torchvision.models.alexnet(num_classes=1000).state_dict(): key -> shape.
TORCHVISION_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}

FEATURE_CHANNELS = 256


def _features() -> nn.Sequential:
    """torchvision's ``AlexNet.features`` (indices matter: they are the state-dict keys)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class AlexNet(nn.Module):
    """``torchvision.models.alexnet`` rebuilt; ``features_only=True`` drops avgpool + classifier.

    The classifier (58 M of AlexNet's 61 M parameters) is useless to MS-EmoBoost, which only takes
    the convolutional feature map, so the spectrogram branch builds the features-only variant and
    :func:`load_alexnet_weights` loads the ``features.*`` part of a full ImageNet state dict into it.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, features_only: bool = False):
        super().__init__()
        self.features_only = features_only
        self.features = _features()
        if not features_only:
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=dropout),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> logits [B, num_classes], or the feature map [B, 256, h, w] if features-only."""
        x = self.features(x)
        if self.features_only:
            return x
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward_mono(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] -> feature map, identical to ``features(x.expand(-1, 3, -1, -1))``."""
        return mono_features(self.features, x)


def mono_features(features: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run AlexNet ``features`` on a 1-channel image as if it were replicated to 3 channels."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a [B, 1, H, W] image, got shape {tuple(x.shape)}")
    conv1 = features[0]
    y = F.conv2d(x, conv1.weight.sum(dim=1, keepdim=True), conv1.bias, conv1.stride, conv1.padding)
    return features[1:](y)


def feature_map_shape(height: int, width: int) -> tuple[int, int, int]:
    """(channels, h, w) of AlexNet's feature map for an H x W input (torchvision's arithmetic)."""

    def conv(n: int, k: int, s: int, p: int) -> int:
        return (n + 2 * p - k) // s + 1

    def size(n: int) -> int:
        n = conv(n, 11, 4, 2)  # conv1
        n = conv(n, 3, 2, 0)  # pool1
        n = conv(n, 3, 2, 0)  # conv2 keeps size; pool2
        return conv(n, 3, 2, 0)  # conv3-5 keep size; pool3

    h, w = size(height), size(width)
    if h < 1 or w < 1:
        raise ValueError(
            f"a {height} x {width} input is too small for AlexNet (needs at least 63 x 63; "
            "use longer segments or more frequency bins)"
        )
    return FEATURE_CHANNELS, h, w


ALEXNET_INPUTS = ("mono", "imagenet")  # how a spectrogram becomes an AlexNet input
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


class AlexNetTokens:
    """The ``spec`` input of a frozen-AlexNet model: indexing it yields AlexNet tokens, computed once.

    Why lazy: the trainer reads the inputs *before* it builds the network, so the AlexNet that maps
    spectrograms to tokens does not exist yet when ``segment_inputs`` runs. The first indexing (the
    first training or prediction batch, when the network exists) runs the network's AlexNet over all
    segments and keeps the tokens (float32, 40 x 256 = 40 KB per 3-s segment); later batches are
    slices. They are recomputed only if the network's AlexNet is replaced (a new fit).

    ``branch`` returns the network's spectrogram branch (its ``alexnet`` and ``precompute``).
    ``shape`` and ``len`` describe the spectrograms [N, T, F], the shape the network is built (and
    saved) for; indexing and ``np.asarray`` give tokens [n, h*w, 256], what its branch then consumes.
    """

    def __init__(self, spectrograms: list[np.ndarray], branch: Callable[[], Any], batch_size: int = 64):
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


def read_alexnet_state_dict(
    path_or_url: str | Path, model_dir: str | Path | None = None
) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """Read a torchvision-format AlexNet state dict from a file, or a URL (cached, hash-checked).

    ``"imagenet"`` means torchvision's official ImageNet file (:data:`IMAGENET_URL`). The state dict
    is validated against torchvision's keys and shapes; anything else raises a ``ValueError`` naming
    the file and the problem.
    """
    state, info = read_state_dict(path_or_url, "AlexNet", IMAGENET_URL, model_dir)
    check_torchvision_layout(state, info.source if info.source != "imagenet" else IMAGENET_URL)
    return state, info


def check_torchvision_layout(state: dict[str, torch.Tensor], name: str = "state dict") -> None:
    """Raise ``ValueError`` unless ``state`` has torchvision AlexNet's feature keys and shapes.

    The classifier keys are optional (a features-only export is fine) but must have the right
    shapes when present, except ``classifier.6`` whose class count may differ.
    """
    problems = []
    for key, shape in TORCHVISION_SHAPES.items():
        if key not in state:
            if key.startswith("features."):
                problems.append(f"missing {key}")
            continue
        got = tuple(state[key].shape)
        if got != shape and not (key.startswith("classifier.6") and got[1:] == shape[1:]):
            problems.append(f"{key} has shape {got}, expected {shape}")
    unexpected = sorted(set(state) - set(TORCHVISION_SHAPES))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if problems:
        raise ValueError(f"{name}: not a torchvision AlexNet state dict: " + "; ".join(problems))


def load_alexnet_weights(
    model: AlexNet | nn.Sequential, path_or_url: str | Path, model_dir: str | Path | None = None
) -> WeightsInfo:
    """Load torchvision-format AlexNet weights into ``model`` (strict) and say where they came from.

    ``model`` is a full :class:`AlexNet` (every key must match), a features-only one, or a bare
    ``features`` Sequential (then only the ``features.*`` weights are taken, classifier ignored).
    """
    state, info = read_alexnet_state_dict(path_or_url, model_dir)
    if isinstance(model, AlexNet) and not model.features_only:
        model.load_state_dict(state, strict=True)
        return info
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    if isinstance(model, AlexNet):
        model.load_state_dict(feats, strict=True)
    else:
        model.load_state_dict({k[len("features."):]: v for k, v in feats.items()}, strict=True)
    return info
