"""Masking strategies for masked acoustic modelling: ``random`` (Mockingjay) and ``ems``.

Span selection (both strategies, per utterance of T frames)
------------------------------------------------------------
* ``k = round(ratio * T / span)`` spans of ``span`` consecutive frames (defaults 0.15 and 7, the
  Mockingjay settings). Spans never overlap, so exactly ``k * span`` frames (~15 %) are selected;
  the original allows overlaps, which silently lowers the ratio.
* Starts are drawn one after another, without replacement, from the distribution

      p(s) = alpha * Ibar(s)**gamma / sum_s' Ibar(s')**gamma + (1 - alpha) / S

  over the ``S = T - span + 1`` valid starts, renormalised over the starts still free (a start is
  taken out once its span would overlap a chosen one). ``Ibar(s)`` is the mean emotion intensity
  (in [0, 1]) of the frames ``s .. s + span - 1`` the span would cover.
* ``random``: alpha = 0, i.e. uniform starts -- Mockingjay's consecutive masking.
* ``ems``: alpha = ``MaskConfig.alpha`` (default 0.7), so high-intensity regions are masked more
  often, while every frame keeps a non-zero chance (the uniform part) to be masked.

Corruption of selected frames (BERT/Mockingjay 80/10/10), decided once per span: with
probability 0.8 the span is zeroed, 0.1 it is replaced by frames from uniformly random positions
of the same utterance, 0.1 it is left unchanged. The loss covers every selected frame.

NPC (no input masking)
----------------------
NPC hides a fixed window around every frame inside the model (masked convolutions) and predicts
all frames. Intensity therefore enters through the loss: each target frame t gets weight

    w(t) = (1 - alpha) + alpha * Ibar_c(t)**gamma / mean_t' Ibar_c(t')**gamma

where ``Ibar_c`` is intensity averaged over a centred ``span``-frame box. ``w`` is (up to edge
effects) proportional to how often frame t would be a prediction target under EMS span sampling
relative to uniform sampling, so the weighted loss is the expected EMS-masked loss with lower
variance; ``random`` uses w = 1, i.e. the original NPC objective.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

STRATEGIES = ("random", "ems")


@dataclass(frozen=True)
class MaskConfig:
    strategy: str = "random"
    ratio: float = 0.15
    span: int = 7
    p_zero: float = 0.8
    p_random: float = 0.1  # the rest (0.1) is kept unchanged
    alpha: float = 0.7  # EMS: weight of the intensity distribution vs uniform
    gamma: float = 1.0  # EMS: sharpening exponent on intensity

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"masking strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not 0 < self.ratio < 1:
            raise ValueError(f"mask ratio must be in (0, 1), got {self.ratio}")
        if self.span < 1:
            raise ValueError(f"span must be >= 1, got {self.span}")
        if not (0 <= self.p_zero and 0 <= self.p_random and self.p_zero + self.p_random <= 1):
            raise ValueError(f"p_zero={self.p_zero}, p_random={self.p_random} must be >= 0 and sum to <= 1")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")

    @property
    def effective_alpha(self) -> float:
        return self.alpha if self.strategy == "ems" else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> MaskConfig:
        return cls(**(d or {}))


def _box_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Means of all ``len(x) - width + 1`` windows of ``width`` consecutive values."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    return (c[width:] - c[:-width]) / width


def start_probabilities(n_frames: int, span: int, alpha: float = 0.0, intensity: np.ndarray | None = None,
                        gamma: float = 1.0) -> np.ndarray:
    """p(s) over the ``n_frames - span + 1`` span starts (see the module docstring)."""
    n_starts = n_frames - span + 1
    if n_starts <= 0:
        return np.zeros(0)
    uniform = np.full(n_starts, 1.0 / n_starts)
    if alpha <= 0 or intensity is None:
        return uniform
    intensity = np.asarray(intensity, dtype=np.float64)
    if intensity.shape != (n_frames,):
        raise ValueError(f"intensity has shape {intensity.shape}, expected ({n_frames},)")
    if np.any(~np.isfinite(intensity)) or intensity.min() < 0:
        raise ValueError("intensity must be finite and non-negative")
    score = _box_mean(intensity, span) ** gamma
    total = score.sum()
    if total <= 0:
        return uniform
    return alpha * score / total + (1 - alpha) * uniform


def sample_spans(n_frames: int, cfg: MaskConfig, rng: np.random.Generator,
                 intensity: np.ndarray | None = None) -> np.ndarray:
    """Start indices of non-overlapping spans (sorted)."""
    span = min(cfg.span, n_frames)
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, int(round(cfg.ratio * n_frames / span)))
    p = start_probabilities(n_frames, span, cfg.effective_alpha, intensity, cfg.gamma)
    free = np.ones(len(p), dtype=bool)
    starts: list[int] = []
    for _ in range(k):
        q = p * free
        total = q.sum()
        if total <= 0:
            break
        s = int(rng.choice(len(q), p=q / total))
        starts.append(s)
        free[max(0, s - span + 1): s + span] = False
    return np.sort(np.asarray(starts, dtype=np.int64))


def spans_to_mask(n_frames: int, starts: np.ndarray, span: int) -> np.ndarray:
    mask = np.zeros(n_frames, dtype=bool)
    for s in starts:
        mask[s: s + span] = True
    return mask


@dataclass
class MaskedBatch:
    inputs: torch.Tensor  # corrupted features [B, T, F]
    selected: torch.Tensor  # [B, T] bool: frames that enter the loss
    action: torch.Tensor  # [B, T] int8: 0 untouched, 1 zeroed, 2 random frame, 3 selected but kept


def mask_batch(feats: torch.Tensor, lengths: torch.Tensor, cfg: MaskConfig, rng: np.random.Generator,
               intensity: list[np.ndarray] | None = None) -> MaskedBatch:
    """Mockingjay-style corruption of a padded batch; ``intensity[b]`` covers ``lengths[b]`` frames."""
    if cfg.strategy == "ems" and intensity is None:
        raise ValueError("masking strategy 'ems' needs per-frame intensity for every utterance")
    B, T, _ = feats.shape
    inputs = feats.clone()
    action = np.zeros((B, T), dtype=np.int8)
    for b in range(B):
        n = int(lengths[b])
        if n <= 0:
            continue
        inten = None if intensity is None else np.asarray(intensity[b])[:n]
        span = min(cfg.span, n)
        for s in sample_spans(n, cfg, rng, inten):
            u = rng.random()
            if u < cfg.p_zero:
                action[b, s: s + span] = 1
            elif u < cfg.p_zero + cfg.p_random:
                action[b, s: s + span] = 2
                src = torch.from_numpy(rng.integers(0, n, size=span)).to(feats.device)
                inputs[b, s: s + span] = feats[b, src]
            else:
                action[b, s: s + span] = 3
    act = torch.from_numpy(action).to(feats.device)
    inputs[act == 1] = 0.0
    return MaskedBatch(inputs=inputs, selected=act > 0, action=act)


def frame_loss_weights(intensity: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """NPC per-frame loss weights (mean 1); all ones for ``random`` (see module docstring)."""
    intensity = np.asarray(intensity, dtype=np.float64)
    n = len(intensity)
    alpha = cfg.effective_alpha
    if alpha <= 0 or n == 0:
        return np.ones(n, dtype=np.float32)
    width = min(cfg.span, n)
    padded = np.pad(intensity, (width // 2, width - 1 - width // 2), mode="edge")
    score = _box_mean(padded, width) ** cfg.gamma
    mean = score.mean()
    if mean <= 0:
        return np.ones(n, dtype=np.float32)
    return ((1 - alpha) + alpha * score / mean).astype(np.float32)
