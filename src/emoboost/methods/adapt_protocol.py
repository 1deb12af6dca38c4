"""The ``adapt=`` protocols: their names, and which clips of a speaker form the profile each utterance is
adapted with — for test speakers (:func:`plan`: scored utterances and their sources) and, the same way,
for training speakers (:func:`selection_sums`). Draws are seeded per (seed, speaker), so a speaker's
enrolment never depends on which other speakers are present.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("none", "transductive", "loo", "enrol", "online")


@dataclass(frozen=True)
class Protocol:
    """How a speaker's statistics are formed: ``none``, ``transductive`` (all its utterances, the scored one
    included: the old ``speaker_norm=speaker``), ``loo`` (its other utterances), ``enrol:K`` (K clips drawn
    at random, not scored) or ``online`` (the clips before it, in a seeded random order); ``skewed``: the
    enrolment (or the first clips) come from one or two emotions only."""

    kind: str = "none"
    k: int = 0
    skewed: bool = False

    def __str__(self) -> str:
        s = f"enrol:{self.k}" if self.kind == "enrol" else self.kind
        return s + (":skewed" if self.skewed else "")

    @property
    def adapts(self) -> bool:
        """Whether the adapter of this module is used (transductive keeps the old per-speaker z-norm)."""
        return self.kind in ("loo", "enrol", "online")

    def describe(self) -> str:
        """The protocol in words, for reports."""
        what = {"loo": "each scored utterance adapted with its speaker's other utterances (leave-one-out)",
                "enrol": f"{self.k} utterance(s) per test speaker drawn at random as unlabelled enrolment "
                         f"(not scored), the others adapted with them",
                "online": "each test speaker's utterances in a seeded random order, each adapted with the "
                          "ones before it (the first, nothing heard yet, by the model without adaptation)"}[self.kind]
        if self.skewed:
            what += ("; the enrolment clips (online: the first clips) come from one emotion, topped up from "
                     "the next one in class order, each emotion in turn (seed = emotion index)")
        return (f"{what}. Speaker mean shrunk toward the training population (empirical-Bayes prior per "
                f"dimension), posterior-weighted emotion correction, population within-speaker scale; "
                f"training speakers normalised the same way")


def parse_adapt(value: Any) -> Protocol:
    """``none``, ``transductive``, ``loo``, ``online[:skewed]`` or ``enrol:K[:skewed]`` -> :class:`Protocol`."""
    parts = str(value if value not in (None, False) else "none").strip().lower().split(":")
    skewed = parts[-1] == "skewed"
    parts = parts[:-1] if skewed else parts
    kind = parts[0]
    ok = kind in KINDS and (len(parts) == 2 if kind == "enrol" else len(parts) == 1)
    if ok and kind == "enrol":
        ok = parts[1].isdigit() and int(parts[1]) >= 1
    if not ok or (skewed and kind not in ("enrol", "online")):
        raise ValueError(f"adapt must be none, transductive, loo, online, online:skewed, enrol:K or "
                         f"enrol:K:skewed (K >= 1), got {value!r}")
    return Protocol(kind, int(parts[1]) if kind == "enrol" else 0, skewed)


def speaker_rng(seed: int, speaker: Any) -> np.random.Generator:
    """A generator per (seed, speaker): a speaker's draws never depend on which other speakers are present."""
    return np.random.default_rng([int(seed), zlib.crc32(str(speaker).encode("utf-8"))])


def online_order(rows: np.ndarray, y: np.ndarray | None, rng: np.random.Generator, skew: int | None = None,
                 n_classes: int = 0) -> np.ndarray:
    """One speaker's rows in a random order; ``skew=c``: class c's rows first, then class c+1's, then the rest."""
    rows = rng.permutation(rows)
    if skew is None or y is None:
        return rows
    first = [rows[y[rows] == c] for c in (skew % n_classes, (skew + 1) % n_classes)]
    return np.concatenate([*first, rows[~np.isin(y[rows], [skew % n_classes, (skew + 1) % n_classes])]])


def enrolment(rows: np.ndarray, k: int, y: np.ndarray | None, rng: np.random.Generator, skew: int | None = None,
              n_classes: int = 0) -> np.ndarray:
    """K of one speaker's rows (at most all but one: something must be scored); ``skew=c``: from class c,
    topped up from class c+1."""
    k = min(int(k), len(rows) - 1)
    if skew is None or y is None:
        return rng.choice(rows, k, replace=False) if k > 0 else rows[:0]
    return online_order(rows, y, rng, skew, n_classes)[:k] if k > 0 else rows[:0]


def selection_sums(kind: str, rows: np.ndarray, k: int, rng: np.random.Generator, x: np.ndarray,
                   p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of one speaker's rows, (count, sum of x, sum of p) of the rows whose statistics normalise it
    during training, as the protocol ``kind`` treats test speakers: its other rows (``loo``), ``k`` of them at
    random (``enrol``) or the rows before it in a random order (``online``)."""
    xs, ps = x[rows], p[rows]
    if kind == "loo":
        return np.full(len(rows), len(rows) - 1), xs.sum(0) - xs, ps.sum(0) - ps
    if kind == "enrol":
        k = min(int(k), len(rows) - 1)
        picks = [rng.choice(np.delete(np.arange(len(rows)), j), k, replace=False) for j in range(len(rows))]
        return np.full(len(rows), k), np.stack([xs[i].sum(0) for i in picks]), np.stack([ps[i].sum(0) for i in picks])
    order = rng.permutation(len(rows))
    pos = np.empty(len(rows), dtype=int)
    pos[order] = np.arange(len(rows))
    cx = np.concatenate([np.zeros((1, xs.shape[1])), np.cumsum(xs[order], 0)])
    cp = np.concatenate([np.zeros((1, ps.shape[1])), np.cumsum(ps[order], 0)])
    return pos, cx[pos], cp[pos]


@dataclass
class Plan:
    """Scored rows of a test set and, for each, the rows its speaker profile is made of (in order)."""

    scored: np.ndarray
    sources: list[np.ndarray]

    @property
    def positions(self) -> np.ndarray:
        """Clips heard before each scored row (online: its 0-based position in its speaker's order)."""
        return np.array([len(s) for s in self.sources], dtype=int)


def plan(protocol: Protocol, groups: np.ndarray, y: np.ndarray, seed: int, n_classes: int) -> Plan:
    """Which rows are scored and which rows form each one's profile, for named speakers under ``protocol``."""
    g = np.asarray(groups, dtype=object)
    skew = int(seed) % n_classes if protocol.skewed else None
    scored: list[int] = []
    sources: list[np.ndarray] = []
    for s in sorted({str(v) for v in g if v is not None}):
        rows = np.flatnonzero(np.array([v is not None and str(v) == s for v in g]))
        rng = speaker_rng(seed, s)
        if protocol.kind == "loo":
            scored += list(rows)
            sources += [rows[rows != i] for i in rows]
        elif protocol.kind == "enrol":
            en = enrolment(rows, protocol.k, y, rng, skew, n_classes)
            rest = np.setdiff1d(rows, en)
            scored += list(rest)
            sources += [en] * len(rest)
        elif protocol.kind == "online":
            order = online_order(rows, y, rng, skew, n_classes)
            scored += list(order)
            sources += [order[:j] for j in range(len(order))]
        else:
            raise ValueError(f"adapt={protocol} has no test-time plan")
    return Plan(np.asarray(scored, dtype=int), sources)
