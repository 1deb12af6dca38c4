"""Upstreams pretrained by ``emoboost pretrain`` (Mockingjay / NPC), loaded from their directory.

The networks live beside this module (:mod:`.mockingjay`, :mod:`.npc`, their log-mel front end in
:mod:`.frontend`); :func:`build_model` is their registry, used both here and by the training code in
:mod:`emoboost.pretrain`, which imports from ``upstreams`` and never the other way round.

A directory holding ``emoboost_upstream.json`` + ``model.safetensors`` is what
:func:`emoboost.pretrain.train.pretrain` writes; ``build_upstream(dir)`` routes such directories
here. The fingerprint hashes the weight file's bytes (normalisation statistics included) and the
config, so the feature cache never serves features of another checkpoint.

``max_layer=k``: Mockingjay keeps Transformer layers 1..k (hidden state 0 is the input embedding);
NPC's hidden states are the k+1 first ConvBlock outputs (state ``num_blocks`` is the masked
representation, which needs every block, so asking for it runs the whole model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from emoboost.upstreams.base import Upstream, check_max_layer
from emoboost.upstreams.identity import (
    OWN_FORMAT,
    OWN_UPSTREAM_FILE,
    OWN_WEIGHTS_FILE,
    own_identity,
    own_name,
    read_own_meta,
)

UPSTREAM_FILE = OWN_UPSTREAM_FILE
WEIGHTS_FILE = OWN_WEIGHTS_FILE
FORMAT = OWN_FORMAT
MODEL_TYPES = ("mockingjay", "npc")


def build_model(model_type: str, model_config: dict[str, Any] | None = None,
                feature_config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A fresh (randomly initialised) Mockingjay / NPC from the plain-dict configs a checkpoint stores."""
    from emoboost.upstreams.frontend import FeatureConfig  # librosa: imported on first use

    feat = FeatureConfig.from_dict(feature_config)
    mc = dict(model_config or {})
    if model_type == "mockingjay":
        from emoboost.upstreams.mockingjay import Mockingjay, MockingjayConfig

        return Mockingjay(MockingjayConfig(**mc), feat)
    if model_type == "npc":
        from emoboost.upstreams.npc import NPC, NPCConfig

        if "vq_codebook_sizes" in mc:
            mc["vq_codebook_sizes"] = tuple(mc["vq_codebook_sizes"] or ())
        return NPC(NPCConfig(**mc), feat)
    raise ValueError(f"unknown pretraining model {model_type!r}; known: {', '.join(MODEL_TYPES)}")


class LocalPretrainedUpstream(Upstream):
    """All hidden states of a locally pretrained model: Mockingjay gives the input embedding + every
    Transformer layer (33.3 frames/s); NPC the unmasked ConvBlock outputs + the masked
    representation (100 frames/s)."""

    def __init__(self, directory: str | Path, device: str | torch.device = "cpu", max_layer: int | None = None):
        super().__init__()
        from safetensors.torch import load_file

        d = Path(directory)
        meta = read_own_meta(d)
        meta_path, weights = d / UPSTREAM_FILE, d / WEIGHTS_FILE
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
        del state
        self.name = own_name(d, meta)
        self.num_layers = self.model.num_hidden_states
        self.max_layer = check_max_layer(max_layer, self.num_layers, str(d))
        self._npc_cut = False
        if max_layer is not None and max_layer < self.num_layers - 1:
            if meta["model_type"] == "mockingjay":
                self.model.layers = self.model.layers[:max_layer]  # Mockingjay.encode runs self.layers
            else:  # NPC: hidden state k is block k's output; run blocks 0..k, not the masked convs
                self.model.blocks = self.model.blocks[: max_layer + 1]
                self._npc_cut = True
        self.model.eval().requires_grad_(False)
        self.model.to(device)
        self.hidden_size = self.model.hidden_size
        self.frame_rate = float(self.model.frame_rate)
        self._identity: dict | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _npc_blocks(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """NPC's unmasked block outputs only (the first half of ``NPC.encode``)."""
        from emoboost.upstreams.frontend import frame_mask

        feats, flens = self.model.frontend(wavs, lengths)
        valid = frame_mask(flens, feats.shape[1])[:, None, :].to(feats.dtype)
        h = feats.transpose(1, 2)
        states = []
        for block in self.model.blocks:
            h = block(h, valid)
            states.append((h * valid).transpose(1, 2))
        return states, flens

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wavs = wavs.to(self.device, torch.float32)
        lengths = lengths.to(self.device).long()
        if self._npc_cut:
            states, flens = self._npc_blocks(wavs, lengths)
        else:
            states, flens = self.model.hidden_states(wavs, lengths)
        return torch.stack(states, 0), flens

    def weights_hash(self) -> str:
        """Hash of the weight file's bytes (see :mod:`emoboost.upstreams.identity`)."""
        return self.config_dict()["weights"]

    def config_dict(self) -> dict:
        if self._identity is None:
            self._identity = own_identity(self.directory, self.meta)
        return dict(self._identity)


def is_local_upstream(path: str | Path) -> bool:
    return (Path(path) / UPSTREAM_FILE).is_file()


def load_local_upstream(directory: str | Path, device: str | torch.device = "cpu",
                        max_layer: int | None = None) -> Upstream:
    """Load a directory written by :func:`emoboost.pretrain.train.pretrain` as an :class:`Upstream`."""
    return LocalPretrainedUpstream(directory, device=device, max_layer=max_layer)
