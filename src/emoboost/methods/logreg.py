"""Standardised logistic regression on pooled SSL frames: the strongest cheap SSL-only baseline.

Same input as the linear probe (by default each utterance's own frames mean-pooled, read from the
feature store's statistics; ``pooling=segment`` for the older 3 s protocol; ``layer=2,3,4``
concatenates layers) but fitted to convergence by L-BFGS with L2 strength ``C`` chosen by an inner
speaker-grouped CV over the training (+ validation) speakers only — never the test fold.

``layer=auto`` (the default) lets that inner CV choose the layers too: every run of 1-3 adjacent
hidden states (:func:`~emoboost.methods.layer_choice.auto_candidates`) with every ``C``, the best pair
kept (:mod:`emoboost.methods.inner_cv`). It reads the store's pooled statistics of every hidden state
(no second extraction); the saved model records the layers it chose.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save

from emoboost.evaluation.metrics import segment_posteriors_to_utterance
from emoboost.methods import adaptation
from emoboost.methods.base import Method, UtteranceSet
from emoboost.methods.inner_cv import CS, ONE_SPEAKER, select
from emoboost.methods.layer_choice import LayerRule, is_auto
from emoboost.methods.params import POSITIVE, Int, ListOf, Param
from emoboost.methods.pooling import (
    SpeakerNorm,
    _saved_layers,
    auto_description,
    auto_state,
    check_auto,
    choose_auto,
    head_dict,
    load_auto_state,
    pooled_inputs,
    pooled_params,
    probe_layers,
    reset_fit_state,
)
from emoboost.utils import atomic_write_bytes

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression


class LogRegProbe(Method):
    """Pooled SSL frames -> standardise -> L2 logistic regression, C by speaker-grouped inner CV."""

    name = "logreg"
    PARAMS: ClassVar[dict[str, Any]] = {
        **pooled_params(LayerRule(("auto",), lists=True)),
        "Cs": Param(list(CS), ListOf(POSITIVE)),  # inverse L2 strengths the inner CV chooses from
        "inner_folds": Param(3, Int(2)),  # speaker-grouped folds of the training speakers that choose C (and layer=auto)
        "max_iter": Param(2000, Int(1)),  # L-BFGS iterations
    }

    @property
    def deterministic_fit(self) -> bool:
        """Whether the seed changed nothing in the last fit, so a run's seeds may share it (one fit per fold):
        it only shuffles the inner folds of a single training speaker's utterances."""
        return ONE_SPEAKER not in str(getattr(self, "inner_cv_", "") or "")

    def check_params(self) -> None:
        check_auto(self.params)
        adaptation.check_method_params(self.params, self.name)

    def ssl_layers(self, num_layers: int) -> list[int]:
        """The layers read: with ``layer=auto`` every hidden state until fitted, then the chosen ones."""
        return self._layers(num_layers)

    def needs_frames(self) -> bool:
        return self.params["pooling"] == "segment"

    def _layers(self, num_layers: int) -> list[int]:
        return probe_layers(self, num_layers)

    def _pooled(self, data: UtteranceSet, speaker: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """[rows, F] pooled inputs and each row's utterance; ``speaker``: after the speaker normalisation."""
        layers = self._layers(data.ssl_view().num_layers)
        x, seg_utt = pooled_inputs(data, layers, self.params["pooling"], self.params["stats"])
        x = x.reshape(len(x), -1)
        return (adaptation.speaker_inputs(self, x, data, seg_utt) if speaker else x), seg_utt

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> LogRegProbe:
        # fitting only: a loaded model predicts with numpy
        from sklearn.linear_model import LogisticRegression

        data = UtteranceSet.concat([train, valid]) if valid is not None and len(valid) else train
        reset_fit_state(self)
        n_layers = data.ssl_view().num_layers
        cs = [float(c) for c in self.params["Cs"]]
        folds, max_iter = int(self.params["inner_folds"]), int(self.params["max_iter"])
        auto = is_auto(self.params["layer"])
        # layer=auto chooses on every hidden state; a speaker adapter is fitted on the chosen layers only
        x, seg_utt = self._pooled(data, speaker=not (auto and adaptation.adapts(self)))
        y, groups = data.labels()[seg_utt], data.groups[seg_utt]
        self.cv_scores_: dict[float, float] = {}
        if auto:
            choose_auto(x.reshape(len(x), n_layers, -1), y, groups, seg_utt, len(self.classes), cs, folds, seed,
                        max_iter).apply(self)
            for attr in ("spk_", "adapter_"):  # speaker statistics of the chosen layers only
                self.__dict__.pop(attr, None)
            x, seg_utt = self._pooled(data)
            self.C_ = None  # one C per committee member
        else:
            self.layers_ = self._layers(n_layers)  # the head contract names them
            found = select(x[:, None], y, groups, seg_utt, [[0]], cs, len(self.classes), folds, seed,
                           max_iter) if len(cs) > 1 else None
            self.C_ = found[0].c if found is not None else cs[0]
            if found is not None:
                self.cv_scores_ = {c: s for (_, c), s in found[0].scores.items()}
                self.inner_cv_ = found[1].how
            self.c_rule_ = ("given: Cs holds one value" if len(cs) == 1 else
                            "no inner CV: nothing to hold out, the first of Cs" if found is None else
                            "inner CV on training speakers" if "speaker-grouped" in found[1].how
                            else f"inner CV: {found[1].how}")
        self.mean_ = x.mean(0)
        self.scale_ = x.std(0) + 1e-5
        xs = self._standardise(x)
        if auto:
            self.coef_, self.intercept_ = self._fit_committee(xs, y, max_iter)
        else:
            self.clf_ = LogisticRegression(C=self.C_, max_iter=max_iter).fit(xs, y)
            self.coef_, self.intercept_ = self._expand(self.clf_)
        return self

    def _fit_committee(self, xs: np.ndarray, y: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
        """``layer=auto``: each member fitted on its own layers' columns, their logits averaged.

        The mean of linear logits is linear in the union of the members' layers, so the committee is
        one ordinary head (softmax of the mean logit = the members' normalised geometric-mean
        posterior): ``predict``, the pooled head and the ONNX export see a plain logreg model.
        """
        from sklearn.linear_model import LogisticRegression

        dim = xs.shape[1] // len(self.layers_)
        coef, icpt = np.zeros((len(self.classes), xs.shape[1])), np.zeros(len(self.classes))
        for layers, c in self.committee_:
            cols = np.concatenate([self.layers_.index(v) * dim + np.arange(dim) for v in layers])
            w, b = self._expand(LogisticRegression(C=c, max_iter=max_iter).fit(xs[:, cols], y))
            coef[:, cols] += w / len(self.committee_)
            icpt += b / len(self.committee_)
        return coef, icpt

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
        d = {"pooling": f"{self.params['pooling']} ({self.params['stats']})"}
        if is_auto(self.params["layer"]):
            d.update(auto_description(self))
        else:
            # the key says how C was chosen: with one training speaker the inner CV is over its utterances
            rule = getattr(self, "c_rule_", "inner CV on training speakers")
            d = {f"logreg C ({rule})": getattr(self, "C_", None), **d}
        if getattr(self, "inner_cv_", None):
            d["inner CV"] = self.inner_cv_
        return {**d, **adaptation.describe_speaker(self)}

    def _state_config(self) -> dict:
        state = {"C": self.C_, "layers": list(getattr(self, "layers_", []))}
        return {**state, **auto_state(self)}

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
        self.coef_, self.intercept_ = t["coef"], t["intercept"]
        # fit keeps the pooled features' float32 statistics (stored as float64): the same arithmetic after loading
        self.mean_, self.scale_ = t["mean"].astype(np.float32), t["scale"].astype(np.float32)
        if "spk_mean" in t:
            self.spk_ = SpeakerNorm(int(self.params["min_speaker_utts"]))
            self.spk_.mean_, self.spk_.std_ = t["spk_mean"].astype(np.float32), t["spk_std"].astype(np.float32)
        adaptation.load_arrays(self, t)
        self.C_ = state.get("C")
        load_auto_state(self, state)
