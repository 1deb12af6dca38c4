"""Pooled SSL inputs shared by the probes (linear, logreg): utterance or segment pooling, speaker norm.

``pooling=utterance`` (default) reads the store's per-utterance statistics: the mean (and with
``stats=meanstd`` the std) of the clip's own frames, no padding. ``pooling=segment`` is the older
protocol: fixed windows, each mean-pooled over its real frames, utterance = mean segment posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emoboost.methods.base import UtteranceSet, speaker_rows
from emoboost.methods.layer_choice import (
    COMMITTEE,
    MAX_RUN,
    LayerRule,
    auto_candidates,
    is_auto,
    layers_text,
    parse_layers,
)
from emoboost.methods.params import ADAPT, SPEAKER_NORM, Int, Param, one_of

POOLINGS = ("utterance", "segment")
STATS = ("mean", "meanstd")


def resolve_layers(layer, num_layers: int) -> tuple[list[int], bool]:
    """-> (hidden-state indices to read, whether the method learns a weighted sum over them)."""
    parsed = parse_layers(layer, num_layers)
    if parsed == "weighted":
        return list(range(num_layers)), True
    return list(parsed), False  # type: ignore[arg-type]


def pooled_inputs(data: UtteranceSet, layers: list[int], pooling: str = "utterance",
                  stats: str = "mean", chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """-> (x [N_items, k, D or 2D] float32, item -> utterance index): one item per utterance or segment."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if stats not in STATS:
        raise ValueError(f"stats must be one of {STATS}, got {stats!r}")
    view = data.ssl_view()
    if pooling == "utterance":
        return view.pooled(layers, std=stats == "meanstd"), np.arange(len(data))
    win, seg_utt = view.segments(layers)
    valid = np.maximum(win.valid_frames(), 1).astype(np.float64)
    parts = []
    for s in range(0, len(win), chunk):
        b = win[np.arange(s, min(s + chunk, len(win)))].astype(np.float64)  # [B, k, T', D], zero past the end
        n = valid[s : s + len(b), None, None]
        mean = b.sum(axis=2) / n
        if stats == "meanstd":
            var = np.maximum(np.square(b).sum(axis=2) / n - mean**2, 0.0)
            mean = np.concatenate([mean, np.sqrt(var)], axis=-1)
        parts.append(mean.astype(np.float32))
    return np.concatenate(parts), seg_utt


def check_auto(params: dict) -> None:
    """``layer=auto`` chooses on the store's per-utterance statistics: refuse it where the probe reads windows."""
    if is_auto(params.get("layer")) and params.get("pooling") == "segment":
        raise ValueError("layer=auto chooses layers on the feature store's pooled statistics, which "
                         "pooling=segment does not use; name the layer(s), e.g. layer=3 or layer=2,3,4")


@dataclass
class AutoChoice:
    """What ``layer=auto`` chose on the training speakers."""

    committee: list[tuple[list[int], float]]  # (run of hidden states, its C), best first
    layers: list[int]  # the union of the committee's runs, ascending: what the model reads
    layer_scores: dict[str, float]  # every candidate's inner-CV UA averaged over the C grid
    how: str  # the inner folds, in words

    def apply(self, method) -> None:
        """Record the choice on the probe (what its report, saved state and head contract read)."""
        method.committee_, method.layers_, method.layer_scores_, method.inner_cv_ = (
            self.committee, self.layers, self.layer_scores, self.how)


FIT_STATE = ("spk_", "adapter_", "layers_", "layer_scores_", "inner_cv_", "committee_")
"""What a pooled probe's fit learns besides its head: each fit's training set decides them afresh."""


def reset_fit_state(method) -> None:
    for a in FIT_STATE:
        method.__dict__.pop(a, None)


def probe_layers(method, num_layers: int) -> list[int]:
    """The hidden states a pooled probe reads: with ``layer=auto`` every one until fitted, then the chosen ones."""
    if is_auto(method.params["layer"]):
        return list(getattr(method, "layers_", None) or range(num_layers))
    return resolve_layers(method.params["layer"], num_layers)[0]


def choose_auto(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seg_utt: np.ndarray, n_classes: int,
                cs: list[float], inner_folds: int, seed: int, max_iter: int = 2000) -> AutoChoice:
    """``layer=auto``: inner CV over :func:`auto_candidates` × ``cs`` (x: ``[N, L, F]``, every hidden state),
    then the committee of the :data:`COMMITTEE` best runs (:meth:`~emoboost.methods.inner_cv.Choice.committee`)."""
    from emoboost.methods.inner_cv import select

    found = select(x, y, groups, seg_utt, auto_candidates(x.shape[1]), cs, n_classes, inner_folds, seed, max_iter)
    if found is None:
        raise ValueError(f"layer=auto needs at least 2 training utterances to choose by inner CV, got "
                         f"{len(np.unique(seg_utt))}; name the layer (e.g. layer=3)")
    choice, splits = found
    committee = choice.committee(COMMITTEE)
    return AutoChoice(committee, sorted({v for layers, _ in committee for v in layers}),
                      {layers_text(k): v for k, v in choice.mean_over_c().items()}, splits.how)


def auto_description(method) -> dict:
    """The report lines of a ``layer=auto`` probe: what it chose and among what."""
    layers = getattr(method, "layers_", None)
    committee = getattr(method, "committee_", None) or []
    n = len(getattr(method, "layer_scores_", {}) or {})
    return {"layers (layer=auto: inner CV on training speakers)": layers_text(layers) if layers else None,
            "layer=auto committee": "; ".join(f"{layers_text(lay)} (C={c:g})" for lay, c in committee) or None,
            "layer=auto candidates": f"{n} runs of 1-{MAX_RUN} adjacent hidden states" if n else None}


def pooled_params(layer_rule: LayerRule) -> dict[str, Param]:
    """The parameters every pooled probe (logreg, linear) declares: which hidden states, how the frames are
    pooled, and the speaker normalisation; ``layer_rule`` says which named layer choices the probe knows."""
    return {
        # "auto": inner CV on the training speakers chooses among runs of 1-3 adjacent hidden states;
        # an index (0 = embeddings, -1 = last); a list (2,3,4) concatenates layers
        "layer": Param("auto", layer_rule),
        "pooling": Param("utterance", one_of(*POOLINGS)),  # the clip's own frames; "segment": 3 s windows, mean window posterior
        "stats": Param("mean", one_of(*STATS)),  # "meanstd": the frames' std concatenated to their mean
        "speaker_norm": Param("none", SPEAKER_NORM),  # "speaker": per-speaker z-norm (transductive: unlabelled test-speaker stats)
        "adapt": Param("none", ADAPT),  # speaker adaptation: transductive, loo, enrol:K, online (methods.adaptation)
        "min_speaker_utts": Param(5, Int(1)),  # speakers with fewer utterances fall back to the global statistics
    }


def auto_state(method) -> dict:
    """What a ``layer=auto`` probe's saved state records of its choice (empty for a fixed layer)."""
    state: dict = {}
    if hasattr(method, "committee_"):
        state["committee"] = [{"layers": layers, "C": c} for layers, c in method.committee_]
        state["layer_scores"] = method.layer_scores_
    if getattr(method, "inner_cv_", None):
        state["inner_cv"] = method.inner_cv_
    return state


def load_auto_state(method, state: dict) -> None:
    """Restore the layers a probe was saved with and what :func:`auto_state` saved of its choice."""
    if state.get("layers"):  # before a torch module is built: layer=auto's inputs are the chosen layers
        method.layers_ = [int(v) for v in state["layers"]]
    elif is_auto(method.params["layer"]):
        raise ValueError("a layer=auto model saved without the layers it chose")
    if state.get("committee"):
        method.committee_ = [([int(v) for v in m["layers"]], float(m["C"])) for m in state["committee"]]
        method.layer_scores_ = {str(k): float(v) for k, v in (state.get("layer_scores") or {}).items()}
    if state.get("inner_cv"):
        method.inner_cv_ = str(state["inner_cv"])


class SpeakerNorm:
    """Per-speaker z-normalisation of pooled features (transductive: a test speaker's own unlabelled stats).

    Speakers with fewer than ``min_utts`` rows fall back to the training set's pooled statistics
    (e.g. ``predict`` on a single file), so the model still sees features on the scale it learned.
    """

    def __init__(self, min_utts: int = 5):
        self.min_utts = int(min_utts)

    def fit(self, x: np.ndarray, groups: np.ndarray) -> SpeakerNorm:
        self.mean_ = x.mean(axis=0).astype(np.float32)
        self.std_ = (x.std(axis=0) + 1e-5).astype(np.float32)
        return self

    def transform(self, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Rows of a named speaker with at least ``min_utts`` rows use that speaker's statistics; the
        others (small speakers, unknown speakers: ``None``) the training set's."""
        out = ((x - self.mean_) / self.std_).astype(np.float32)
        for _, rows in speaker_rows(groups):
            if len(rows) >= self.min_utts:
                out[rows] = (x[rows] - x[rows].mean(axis=0)) / (x[rows].std(axis=0) + 1e-5)
        return out


def _saved_layers(layer, k: int, num_layers: int | None) -> list[int] | None:
    """Hidden-state indices of a model saved before it recorded them (None when they cannot be known)."""
    if layer == "weighted":
        return list(range(k))
    try:
        layers = resolve_layers(layer, num_layers or 10**6)[0]  # non-negative indices need no layer count
    except ValueError:
        return None
    negative = any(str(v).strip().startswith("-") for v in str(layer).strip("[]").split(","))
    return None if negative and num_layers is None else layers


def head_dict(classes: list[str], layers: list[int], mean: np.ndarray, scale: np.ndarray, weight: np.ndarray,
              bias: np.ndarray, speaker_norm: SpeakerNorm | None = None) -> dict:
    """A pooled linear head (see :mod:`emoboost.inference.export`): float64 arrays, speaker-norm fallback folded in
    (for a speaker adapter: its population mean and scale, what a clip of an unknown speaker gets).

    ((x - m1) / s1 - m2) / s2 = (x - (m1 + s1 m2)) / (s1 s2): the fallback z-norm followed by the
    training standardisation is one standardisation.
    """
    mean, scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
    if speaker_norm is not None:
        m1 = np.asarray(speaker_norm.mean_, np.float64).reshape(-1)
        s1 = np.asarray(speaker_norm.std_, np.float64).reshape(-1)
        mean, scale = m1 + s1 * mean, s1 * scale
    head = {"classes": list(classes), "layers": [int(v) for v in layers], "pooling": "mean", "mean": mean,
            "scale": scale, "weight": np.asarray(weight, np.float64), "bias": np.asarray(bias, np.float64)}
    if hasattr(speaker_norm, "arrays"):  # a speaker adapter (methods.adaptation): profiles re-centre the input
        head["adaptation"] = {"arrays": speaker_norm.arrays(), "protocol": str(speaker_norm.protocol)}
    return head
