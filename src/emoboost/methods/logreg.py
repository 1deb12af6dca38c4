"""Standardised logistic regression on mean-pooled SSL frames: the strongest cheap SSL-only baseline.

Same input as the linear probe (one layer's frames mean-pooled per segment; utterance = mean of
segment posteriors) but fitted to convergence by L-BFGS with L2 strength ``C`` chosen by an inner
speaker-grouped CV over the training (+ validation) speakers only — never the test fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from emoboost.evaluation.metrics import segment_posteriors_to_utterance, unweighted_accuracy
from emoboost.methods.base import Method, UtteranceSet
from emoboost.methods.layers import parse_layer


class LogRegProbe(Method):
    name = "logreg"
    requires = ("ssl",)

    def __init__(self, classes: list[str], **params: Any):
        defaults = {"layer": -1, "Cs": [0.01, 0.1, 1.0], "inner_folds": 3, "max_iter": 2000}
        super().__init__(classes, **{**defaults, **params})

    def _pooled(self, data: UtteranceSet) -> tuple[np.ndarray, np.ndarray]:
        arrs = data.feature("ssl")
        layer = parse_layer(self.params["layer"], arrs[0].shape[1])
        if layer == "weighted":
            raise ValueError("logreg takes one layer index (use the linear probe for a learned layer sum)")
        x = np.concatenate([a[:, layer].mean(axis=1, dtype=np.float32) for a in arrs])
        seg_utt = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrs)]).astype(int)
        return x, seg_utt

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> LogRegProbe:
        data = UtteranceSet.concat([train, valid]) if valid is not None and len(valid) else train
        x, seg_utt = self._pooled(data)
        y, groups = data.y[seg_utt], data.groups[seg_utt]
        self.mean_ = x.mean(0)
        self.scale_ = x.std(0) + 1e-5
        xs = self._standardise(x)
        n_groups = len(np.unique(groups))
        cs = list(self.params["Cs"])
        self.cv_scores_: dict[float, float] = {}
        if len(cs) > 1 and n_groups >= 2:
            inner = GroupKFold(n_splits=min(int(self.params["inner_folds"]), n_groups))
            for c in cs:
                scores = []
                for tr, va in inner.split(xs, y, groups):
                    clf = LogisticRegression(C=c, max_iter=int(self.params["max_iter"])).fit(xs[tr], y[tr])
                    u = np.unique(seg_utt[va], return_inverse=True)[1]
                    proba = segment_posteriors_to_utterance(self._full_proba(clf, xs[va]), u, u.max() + 1)
                    yu = np.zeros(u.max() + 1, dtype=int)
                    yu[u] = y[va]
                    scores.append(unweighted_accuracy(yu, proba.argmax(1)))
                self.cv_scores_[c] = float(np.mean(scores))
            self.C_ = max(self.cv_scores_, key=self.cv_scores_.get)
        else:
            self.C_ = cs[0]
        self.clf_ = LogisticRegression(C=self.C_, max_iter=int(self.params["max_iter"])).fit(xs, y)
        self.coef_, self.intercept_ = self._expand(self.clf_)
        return self

    def _expand(self, clf: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients for all classes (a class absent from training gets -inf logit)."""
        coef = np.zeros((len(self.classes), clf.coef_.shape[1]))
        icpt = np.full(len(self.classes), -1e9)
        if clf.coef_.shape[0] == 1:  # binary: logit(class 1) = w.x + b against logit(class 0) = 0
            icpt[clf.classes_[0]] = 0.0
            coef[clf.classes_[1]], icpt[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
        else:
            coef[clf.classes_], icpt[clf.classes_] = clf.coef_, clf.intercept_
        return coef, icpt

    def _full_proba(self, clf: LogisticRegression, xs: np.ndarray) -> np.ndarray:
        out = np.zeros((len(xs), len(self.classes)))
        out[:, clf.classes_] = clf.predict_proba(xs)
        return out

    def _seg_proba(self, xs: np.ndarray) -> np.ndarray:
        z = xs @ self.coef_.T + self.intercept_
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict_segments(self, data: UtteranceSet) -> list[np.ndarray]:
        x, seg_utt = self._pooled(data)
        p = self._seg_proba(self._standardise(x))
        return [p[seg_utt == i] for i in range(len(data))]

    def predict_proba(self, data: UtteranceSet) -> np.ndarray:
        x, seg_utt = self._pooled(data)
        return segment_posteriors_to_utterance(self._seg_proba(self._standardise(x)), seg_utt, len(data))

    def embed(self, data: UtteranceSet) -> np.ndarray:
        x, seg_utt = self._pooled(data)
        return segment_posteriors_to_utterance(self._standardise(x).astype(np.float64), seg_utt, len(data))

    def num_parameters(self) -> int:
        return int(self.coef_.size + self.intercept_.size) if hasattr(self, "coef_") else 0

    def describe(self) -> dict:
        return {"logreg C (inner CV on training speakers)": getattr(self, "C_", None)}

    def _state_config(self) -> dict:
        return {"C": self.C_}

    def _save_weights(self, directory: Path) -> None:
        t = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
             for k, v in {"coef": self.coef_, "intercept": self.intercept_, "mean": self.mean_, "scale": self.scale_}.items()}
        save_file(t, str(directory / "model.safetensors"))

    def _load_weights(self, directory: Path, state: dict) -> None:
        t = {k: v.numpy() for k, v in load_file(str(directory / "model.safetensors")).items()}
        self.coef_, self.intercept_, self.mean_, self.scale_ = t["coef"], t["intercept"], t["mean"], t["scale"]
        self.C_ = state.get("C")
