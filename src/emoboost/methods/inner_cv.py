"""Inner cross-validation on the training speakers only: how logreg's ``C`` and ``layer=auto`` are chosen.

The test fold never enters: the splits are drawn from the data a method is fitted on. They are
speaker-grouped (``GroupKFold`` over the training speakers, at most ``inner_folds`` of them). With a
single training speaker (a 2-speaker corpus under leave-one-speaker-out) there is no speaker to hold
out, so they fall back to stratified folds of that speaker's utterances, as early stopping does (see
:mod:`emoboost.protocols`); the test speaker stays unseen either way, and the description says which.

A configuration is scored by the mean over the inner folds of the utterance UA of a standardised L2
logistic regression (segment posteriors averaged per utterance). A fixed layer choice keeps the ``C``
that scores best (:func:`choose`). ``layer=auto`` scores every candidate run of layers
(:func:`emoboost.methods.layer_choice.auto_candidates`) with every ``C`` and keeps a committee
(:meth:`Choice.committee`): the runs with the best UA averaged over the ``C`` grid, each at its own
best ``C``. scikit-learn is imported here only when fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emoboost.evaluation.metrics import segment_posteriors_to_utterance, unweighted_accuracy

CS = (0.01, 0.1, 1.0)  # inverse L2 strengths searched by default (logreg's ``Cs``)
ONE_SPEAKER = ("stratified folds of the single training speaker's utterances (too few training speakers "
               "to hold one out; the test speaker stays unseen)")


@dataclass
class InnerSplits:
    """Inner folds as (train rows, validation rows) of the fitted data, and one line saying how they were made."""

    splits: list[tuple[np.ndarray, np.ndarray]]
    how: str


def inner_splits(y: np.ndarray, groups: np.ndarray, seg_utt: np.ndarray, n_folds: int,
                 seed: int = 0) -> InnerSplits | None:
    """Speaker-grouped inner folds of rows (utterances or segments); None when nothing can be held out.

    Rows of one utterance (its segments) always stay on one side. With one speaker the folds are
    stratified by class over whole utterances (``StratifiedGroupKFold``, shuffled with ``seed``).
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    y, groups, seg_utt = np.asarray(y), np.asarray(groups), np.asarray(seg_utt)
    n_groups = len(np.unique(groups))
    if n_groups >= 2:
        k = min(int(n_folds), n_groups)
        return InnerSplits(list(GroupKFold(n_splits=k).split(np.zeros(len(y)), y, groups)),
                           f"{k} speaker-grouped folds of the training speakers")
    n_utts = len(np.unique(seg_utt))
    k = min(int(n_folds), n_utts)
    if k < 2:
        return None
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return InnerSplits(list(sgkf.split(np.zeros(len(y)), y, seg_utt)), f"{k} {ONE_SPEAKER}")


def full_proba(clf, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Posteriors over all ``n_classes`` (a class absent from the inner training part gets 0)."""
    out = np.zeros((len(x), n_classes))
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def cv_ua(xs: np.ndarray, y: np.ndarray, seg_utt: np.ndarray, splits: InnerSplits, c: float, n_classes: int,
          max_iter: int = 2000) -> float:
    """Mean utterance UA of ``LogisticRegression(C=c)`` over the inner folds (``xs`` already standardised)."""
    from sklearn.linear_model import LogisticRegression

    scores = []
    for tr, va in splits.splits:
        clf = LogisticRegression(C=c, max_iter=int(max_iter)).fit(xs[tr], y[tr])
        u = np.unique(seg_utt[va], return_inverse=True)[1]
        proba = segment_posteriors_to_utterance(full_proba(clf, xs[va], n_classes), u, u.max() + 1)
        yu = np.zeros(u.max() + 1, dtype=int)
        yu[u] = y[va]
        scores.append(unweighted_accuracy(yu, proba.argmax(1)))
    return float(np.mean(scores))


@dataclass
class Choice:
    """The best (layers, C) pair and every score behind it: ``scores[(layers, C)]`` = inner-CV UA."""

    layers: list[int]
    c: float
    scores: dict[tuple[tuple[int, ...], float], float] = field(default_factory=dict)

    def mean_over_c(self) -> dict[tuple[int, ...], float]:
        """Each candidate's UA averaged over the ``C`` grid, in candidate order."""
        by: dict[tuple[int, ...], list[float]] = {}
        for (layers, _), s in self.scores.items():
            by.setdefault(layers, []).append(s)
        return {k: float(np.mean(v)) for k, v in by.items()}

    def committee(self, k: int) -> list[tuple[list[int], float]]:
        """The ``k`` candidates with the best UA averaged over the ``C`` grid, each with its best ``C``.

        Why not the single best (layers, C) pair: neighbouring runs score within the inner CV's noise
        of each other (a few training speakers), so an argmax picks noise; ranking by the mean over C
        prefers runs that are good whatever the regularisation, and averaging the top few (their
        logits, see :meth:`emoboost.methods.logreg.LogRegProbe._fit_committee`) evens out the near-ties. Ties
        keep candidate order (fewer layers first), then the smaller C.
        """
        mean = self.mean_over_c()
        ranked = sorted(mean, key=lambda c: -mean[c])[: max(1, int(k))]  # stable: candidate order breaks ties
        out = []
        for layers in ranked:
            cs = [(s, c) for (lay, c), s in self.scores.items() if lay == layers]
            best = max(s for s, _ in cs)
            out.append(([int(v) for v in layers], next(c for s, c in cs if s == best)))
        return out


def choose(xs: np.ndarray, y: np.ndarray, seg_utt: np.ndarray, splits: InnerSplits, candidates: list[list[int]],
           cs: list[float], n_classes: int, max_iter: int = 2000) -> Choice:
    """The (candidate, C) pair with the best inner-CV UA; ties go to the earlier candidate, then the earlier C.

    ``xs`` is ``[N, L, F]``: standardised features per layer (standardising columns commutes with
    selecting them, so one standardisation serves every candidate). A candidate's input is its
    layers' columns concatenated, as ``layer=2,3,4`` concatenates them.
    """
    best: tuple[float, list[int], float] | None = None
    scores: dict[tuple[tuple[int, ...], float], float] = {}
    for layers in candidates:
        x = xs[:, layers].reshape(len(xs), -1)
        for c in cs:
            s = cv_ua(x, y, seg_utt, splits, float(c), n_classes, max_iter)
            scores[(tuple(int(v) for v in layers), float(c))] = s
            if best is None or s > best[0]:
                best = (s, [int(v) for v in layers], float(c))
    if best is None:
        raise ValueError("no candidate to choose from")
    return Choice(best[1], best[2], scores)


def select(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seg_utt: np.ndarray, candidates: list[list[int]],
           cs: list[float], n_classes: int, inner_folds: int = 3, seed: int = 0,
           max_iter: int = 2000) -> tuple[Choice, InnerSplits] | None:
    """Inner-CV choice among ``candidates`` (layer indices into ``x``'s axis 1) × ``cs`` on the fitted data.

    ``x`` is ``[N, L, F]`` (rows: utterances or segments of the training speakers), standardised
    here with its own statistics. None when no inner split can be made (fewer than 2 utterances).
    """
    splits = inner_splits(y, groups, seg_utt, inner_folds, seed)
    if splits is None:
        return None
    xs = (x - x.mean(0)) / (x.std(0) + 1e-5)  # as the fitted model standardises (float32 stays float32)
    return choose(xs, y, seg_utt, splits, candidates, cs, n_classes, max_iter), splits
