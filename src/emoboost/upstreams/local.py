"""Upstreams pretrained by ``emoboost pretrain`` (Mockingjay / NPC), loaded from their directory.

A directory holding ``emoboost_upstream.json`` + ``model.safetensors`` is what
:func:`emoboost.pretrain.train.pretrain` writes; ``build_upstream(dir)`` routes such directories
here. The fingerprint hashes the weights (normalisation statistics included) and the config, so
the feature cache never serves features of another checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from emoboost.upstreams.base import Upstream, state_dict_hash

UPSTREAM_FILE = "emoboost_upstream.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "emoboost-pretrained"


class LocalPretrainedUpstream(Upstream):
    """All hidden states of a locally pretrained model: Mockingjay gives the input embedding + every
    Transformer layer (33.3 frames/s); NPC the unmasked ConvBlock outputs + the masked
    representation (100 frames/s)."""

    def __init__(self, directory: str | Path, device: str | torch.device = "cpu"):
        super().__init__()
        from safetensors.torch import load_file

        from emoboost.pretrain import build_model

        d = Path(directory)
        meta_path, weights = d / UPSTREAM_FILE, d / WEIGHTS_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} is missing: {d} is not an emoboost pretrained upstream")
        if not weights.exists():
            raise FileNotFoundError(f"{weights} is missing (pretraining unfinished?)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_path}: not valid JSON ({e})") from e
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r} (expected {FORMAT!r})")
        self.directory = d
        self.meta = meta
        self.model = build_model(meta["model_type"], meta.get("model_config"), meta.get("feature"))
        state = load_file(str(weights))
        try:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise ValueError(f"{weights}: weights do not match the config in {meta_path} ({e})") from e
        if missing or unexpected:
            raise ValueError(f"{weights}: weights do not match the config in {meta_path} "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        self.model.eval().requires_grad_(False)
        self.model.to(device)
        self.name = f"{meta['model_type']}-{d.resolve().name}"
        self.num_layers = self.model.num_hidden_states
        self.hidden_size = self.model.hidden_size
        self.frame_rate = float(self.model.frame_rate)
        self._weights_hash: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wavs = wavs.to(self.device, torch.float32)
        lengths = lengths.to(self.device).long()
        states, flens = self.model.hidden_states(wavs, lengths)
        return torch.stack(states, 0), flens

    def config_dict(self) -> dict:
        if self._weights_hash is None:
            self._weights_hash = state_dict_hash(self.model)
        return {"name": self.name, "model_type": self.meta["model_type"],
                "model_config": self.meta.get("model_config"), "feature": self.meta.get("feature"),
                "weights": self._weights_hash}


def is_local_upstream(path: str | Path) -> bool:
    return (Path(path) / UPSTREAM_FILE).is_file()


def load_local_upstream(directory: str | Path, device: str | torch.device = "cpu") -> Upstream:
    """Load a directory written by :func:`emoboost.pretrain.train.pretrain` as an :class:`Upstream`."""
    return LocalPretrainedUpstream(directory, device=device)
