"""Pretrained torchvision state dicts (ImageNet AlexNet, ResNet-18) from a local file or a URL.

One reader for every backbone the methods fine-tune, so a path, a URL, a hash-named download and a
broken file are handled — and reported — the same way whichever network asks. No torchvision: the
networks are rebuilt with torchvision's parameter names elsewhere; this only reads the weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from emoboost.upstreams.identity import file_sha256


@dataclass(frozen=True)
class WeightsInfo:
    """Where loaded weights came from, for the report."""

    source: str  # the path or URL the user gave
    file: str  # the local file actually read
    sha256: str
    what: str = "AlexNet"  # the network, for the description

    def describe(self) -> str:
        src = self.source if self.source == self.file else f"{self.source} (cached at {self.file})"
        return f"ImageNet {self.what} weights from {src}, sha256 {self.sha256}"


def is_url(spec: str) -> bool:
    return urlparse(spec).scheme in ("http", "https", "file")


def read_state_dict(spec: str | Path, what: str, imagenet_url: str, model_dir: str | Path | None = None
                    ) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """A state dict from a path (``.pth`` read with ``weights_only=True``, or ``.safetensors``), a URL, or
    ``"imagenet"`` (= ``imagenet_url``, torchvision's official file for the network).

    A URL is downloaded once into the torch hub cache (or ``model_dir``) by
    ``torch.hub.load_state_dict_from_url``, which checks the SHA-256 prefix of a torchvision-style
    name (``alexnet-owt-7be5be79.pth``). A training checkpoint wrapping ``state_dict`` is unwrapped.
    Every failure is a ``ValueError`` naming the file and the problem.
    """
    src = imagenet_url if str(spec) == "imagenet" else str(spec)
    if is_url(src):
        name = os.path.basename(urlparse(src).path)
        cache = Path(model_dir) if model_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
        try:
            state = torch.hub.load_state_dict_from_url(
                src, model_dir=str(cache), map_location="cpu", progress=False,
                check_hash=bool(re.search(r"-[0-9a-f]{8,}\.", name)), weights_only=True)
        except Exception as e:  # network, hash mismatch, unreadable download: one clear message
            raise ValueError(f"{src}: could not fetch {what} weights ({type(e).__name__}: {e})") from e
        file = cache / name
    else:
        file = Path(src)
        if not file.is_file():
            raise ValueError(f"{file}: {what} weights file does not exist")
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(file))
            else:
                state = torch.load(str(file), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{file}: not a readable torch state dict ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(state, dict):
        raise ValueError(f"{src}: expected a state dict, found {type(state).__name__}")
    return dict(state), WeightsInfo(str(spec), str(file), file_sha256(file), what)
