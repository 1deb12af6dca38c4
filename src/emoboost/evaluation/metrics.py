"""SER metrics: WA (accuracy), UA (mean per-class recall), macro-F1; per fold and pooled.

scikit-learn is imported inside the functions: predicting with a saved model needs none of it, and
importing it costs a cold ``emoboost predict`` ~2 CPU-s.
"""

from __future__ import annotations

import warnings

import numpy as np


def weighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """WA: plain accuracy over utterances (the SER literature's 'weighted' accuracy)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def unweighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """UA: mean recall over the classes present in ``y_true`` (balanced accuracy).

    A test speaker may lack a class (EmoDB LOSO); sklearn then warns that predictions name
    classes absent from ``y_true``, which is expected here, so the warning is silenced.
    """
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int] | None = None) -> float:
    """Macro-F1 over the classes present in ``y_true`` (absent classes would add spurious zeros)."""
    from sklearn.metrics import f1_score

    labels = sorted(set(np.asarray(y_true).tolist())) if labels is None else labels
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def all_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "WA": weighted_accuracy(y_true, y_pred),
        "UA": unweighted_accuracy(y_true, y_pred),
        "macro_F1": macro_f1(y_true, y_pred),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std over folds (ddof=0, as most SER papers report)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std())


def segment_posteriors_to_utterance(seg_proba: np.ndarray, seg_utt: np.ndarray, n_utt: int) -> np.ndarray:
    """Utterance posterior = mean of its segments' posteriors (MS-EmoBoost's rule)."""
    out = np.zeros((n_utt, seg_proba.shape[1]), dtype=np.float64)
    counts = np.bincount(seg_utt, minlength=n_utt).astype(np.float64)
    np.add.at(out, seg_utt, seg_proba)
    if np.any(counts == 0):
        raise ValueError("some utterances have no segments")
    return out / counts[:, None]


def check_finite(proba: np.ndarray, fold: int, seed: int, method: str) -> None:
    """A fold whose model answers NaN (its training diverged) is refused before its result is written:
    argmax of NaN is class 0, which would enter the report as a real prediction."""
    bad = ~np.isfinite(np.asarray(proba, dtype=np.float64)).all(axis=1)
    if bad.any():
        raise ValueError(f"fold {fold} seed {seed}: the {method} model gives non-finite probabilities for "
                         f"{int(bad.sum())} of {len(bad)} test utterance(s) (its training diverged: NaN loss or "
                         f"weights; try a lower lr); the fold's result was not written")
