"""Standardised logistic regression on pooled SSL frames: the strongest cheap SSL-only baseline.

Same input as the linear probe (by default each utterance's own frames mean-pooled, read from the
feature store's statistics; ``pooling=segment`` for the older 3 s protocol; ``layer=2,3,4``
concatenates layers) but fitted to convergence by L-BFGS with L2 strength ``C`` chosen by an inner
speaker-grouped CV over the training (+ validation) speakers only — never the test fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save

from emoboost.evaluation.metrics import segment_posteriors_to_utterance, unweighted_accuracy
from emoboost.methods import adaptation
from emoboost.methods.base import Method, UtteranceSet
from emoboost.methods.pooling import SpeakerNorm, _saved_layers, head_dict, pooled_inputs, resolve_layers
from emoboost.utils import atomic_write_bytes

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression


class LogRegProbe(Method):
    """Pooled SSL frames -> standardise -> L2 logistic regression, C by speaker-grouped inner CV."""

    name = "logreg"
    requires = ("ssl",)
    deterministic_fit = True  # the seed changes nothing: a run's seeds share one fit per fold

    def __init__(self, classes: list[str], **params: Any):
        super().__init__(classes, **{**self.default_params(), **params})

    @staticmethod
    def default_params() -> dict[str, Any]:
        return {
            "layer": -1,  # hidden state (0 = embeddings, -1 = last); a list (2,3,4) concatenates layers
            "pooling": "utterance",  # the clip's own frames; "segment": 3 s windows, mean window posterior
            "stats": "mean",  # "meanstd": the frames' std concatenated to their mean
            "speaker_norm": "none",  # "speaker": per-speaker z-norm (transductive: unlabelled test-speaker stats)
            "adapt": "none",  # speaker adaptation: transductive, loo, enrol:K, online (methods.adaptation)
            "min_speaker_utts": 5,  # speakers with fewer utterances fall back to the global statistics
            "Cs": [0.01, 0.1, 1.0],  # inverse L2 strengths the inner CV chooses from
            "inner_folds": 3,  # speaker-grouped folds of the training speakers that choose C
            "max_iter": 2000,  # L-BFGS iterations
        }

    def ssl_layers(self, num_layers: int) -> list[int]:
        return self._layers(num_layers)

    def needs_frames(self) -> bool:
        return self.params["pooling"] == "segment"

    def _layers(self, num_layers: int) -> list[int]:
        layers, weighted = resolve_layers(self.params["layer"], num_layers)
        if weighted:
            raise ValueError("logreg takes one layer or a list (e.g. layer=2,3,4); a learned layer sum "
                             "(layer=weighted) needs the linear probe")
        return layers

    def _pooled(self, data: UtteranceSet) -> tuple[np.ndarray, np.ndarray]:
        layers = self._layers(data.ssl_view().num_layers)
        x, seg_utt = pooled_inputs(data, layers, self.params["pooling"], self.params["stats"])
        return adaptation.speaker_inputs(self, x.reshape(len(x), -1), data, seg_utt), seg_utt

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> LogRegProbe:
        # fitting only: a loaded model predicts with numpy
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold

        data = UtteranceSet.concat([train, valid]) if valid is not None and len(valid) else train
        self.__dict__.pop("spk_", None)
        self.__dict__.pop("adapter_", None)
        self.layers_ = self._layers(data.ssl_view().num_layers)  # the head contract names them
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
            self.c_rule_ = "inner CV on training speakers"
        else:
            self.C_ = cs[0]
            self.c_rule_ = ("given: Cs holds one value" if len(cs) == 1
                            else "no inner CV: one training speaker, the first of Cs")
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
        # the key says how C was chosen: with one training speaker there is nothing to cross-validate over
        d = {f"logreg C ({getattr(self, 'c_rule_', 'inner CV on training speakers')})": getattr(self, "C_", None),
             "pooling": f"{self.params['pooling']} ({self.params['stats']})"}
        return {**d, **adaptation.describe_speaker(self)}

    def _state_config(self) -> dict:
        return {"C": self.C_, "layers": list(getattr(self, "layers_", []))}

    def pooled_head(self, num_layers: int | None = None) -> dict | None:
        """The fitted model as a pooled linear head (:mod:`emoboost.inference.export`), or None where it is not one.

        Utterance pooling of frame means: posterior = softmax(coef ((x - mean) / scale) + intercept)
        already is the head. ``speaker_norm=speaker`` folds in the training-set fallback statistics
        (what a lone clip gets when predicted); segment pooling and ``stats=meanstd`` give None.
        ``num_layers`` resolves negative layer indices of models saved without their layer list.
        """
        p = self.params
        if p["pooling"] != "utterance" or p["stats"] != "mean" or not hasattr(self, "coef_"):
            return None
        layers = getattr(self, "layers_", None) or _saved_layers(p["layer"], 0, num_layers)
        if not layers or len(set(layers)) != len(layers) or self.coef_.shape[1] % len(layers):
            return None
        return head_dict(self.classes, layers, self.mean_, self.scale_, self.coef_, self.intercept_,
                         getattr(self, "spk_", None) or adaptation.adapter_for(self))

    def _save_weights(self, directory: Path) -> None:
        arrays = {"coef": self.coef_, "intercept": self.intercept_, "mean": self.mean_, "scale": self.scale_}
        if hasattr(self, "spk_"):
            arrays.update({"spk_mean": self.spk_.mean_, "spk_std": self.spk_.std_})
        arrays.update(adaptation.save_arrays(self))
        t = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
        atomic_write_bytes(directory / "model.safetensors", save(t))

    def _load_weights(self, directory: Path, state: dict) -> None:
        t = load_file(str(directory / "model.safetensors"))
        self.coef_, self.intercept_, self.mean_, self.scale_ = t["coef"], t["intercept"], t["mean"], t["scale"]
        if "spk_mean" in t:
            self.spk_ = SpeakerNorm(int(self.params["min_speaker_utts"]))
            self.spk_.mean_, self.spk_.std_ = t["spk_mean"].astype(np.float32), t["spk_std"].astype(np.float32)
        adaptation.load_arrays(self, t)
        self.C_ = state.get("C")
        if state.get("layers"):
            self.layers_ = [int(v) for v in state["layers"]]
