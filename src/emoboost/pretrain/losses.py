"""Pretraining objectives of the upstream networks (:mod:`emoboost.upstreams.mockingjay`, ``.npc``).

Kept out of the networks so that loading a checkpoint as an upstream needs none of the training
code. Every loss takes raw log-mel crops ``[B, T, n_mels]`` (the model's front end normalises them),
their frame counts, the masking settings, the step's random generator and, for EMS, per-crop
intensity on the 10 ms mel grid.

* Mockingjay: masked acoustic modelling, L1 on the selected (masked) stacked frames only; which
  frames are selected is the masking strategy's job (:func:`emoboost.pretrain.masking.mask_batch`).
* NPC: L1 between predicted and actual normalised log-mel over all valid frames, weighted per frame
  under EMS (:func:`emoboost.pretrain.masking.frame_loss_weights`).
"""

from __future__ import annotations

import numpy as np
import torch

from emoboost.pretrain.align import align_to_times
from emoboost.pretrain.masking import MaskConfig, frame_loss_weights, mask_batch
from emoboost.upstreams.frontend import frame_mask
from emoboost.upstreams.mockingjay import Mockingjay
from emoboost.upstreams.npc import NPC


def mockingjay_loss(model: Mockingjay, mel: torch.Tensor, lengths: torch.Tensor, mask_cfg: MaskConfig,
                    rng: np.random.Generator, intensity: list[np.ndarray] | None = None) -> torch.Tensor:
    """Masked acoustic modelling on raw log-mel crops [B, T, n_mels] (intensity on the mel grid)."""
    feats = model.frontend.normalize(mel, lengths)
    x, xl = model.stack(feats, lengths)
    inten = None
    if intensity is not None:
        mel_t = np.arange(mel.shape[1]) / model.feature_cfg.frame_rate
        inten = [align_to_times(mel_t[: len(i)], i, model.frame_times(int(n)))
                 for i, n in zip(intensity, xl)]
    mb = mask_batch(x, xl, mask_cfg, rng, inten)
    pred = model.head(model.encode(mb.inputs, xl)[-1])
    sel = mb.selected
    if not bool(sel.any()):
        return (pred * 0).sum()
    return (pred[sel] - x[sel]).abs().mean()


def npc_loss(model: NPC, mel: torch.Tensor, lengths: torch.Tensor, mask_cfg: MaskConfig,
             rng: np.random.Generator, intensity: list[np.ndarray] | None = None) -> torch.Tensor:
    """Weighted L1 between predicted and actual normalised log-mel over all valid frames."""
    del rng  # NPC has no random masking; kept for a uniform interface
    x = model.frontend.normalize(mel, lengths)
    pred, _ = model.predict(x, lengths)
    B, T = x.shape[:2]
    w = frame_mask(lengths, T).to(x.dtype)
    if mask_cfg.strategy == "ems":
        if intensity is None:
            raise ValueError("masking strategy 'ems' needs per-frame intensity for every utterance")
        wt = torch.zeros(B, T)
        for b in range(B):
            n = int(lengths[b])
            wt[b, :n] = torch.from_numpy(frame_loss_weights(np.asarray(intensity[b])[:n], mask_cfg))
        w = w * wt.to(device=x.device, dtype=x.dtype)
    err = (pred - x).abs().mean(-1)
    return (err * w).sum() / w.sum().clamp(min=1e-8)


LOSSES = {"mockingjay": mockingjay_loss, "npc": npc_loss}


def pretrain_loss(model: torch.nn.Module, mel: torch.Tensor, lengths: torch.Tensor, mask_cfg: MaskConfig,
                  rng: np.random.Generator, intensity: list[np.ndarray] | None = None) -> torch.Tensor:
    """The objective of ``model.model_type`` (see the module docstring)."""
    kind = getattr(model, "model_type", None)
    if kind not in LOSSES:
        raise ValueError(f"no pretraining loss for model type {kind!r}; known: {', '.join(LOSSES)}")
    return LOSSES[kind](model, mel, lengths, mask_cfg, rng, intensity)
