"""Hand-crafted functionals + RBF SVM: the classic SER baseline (eGeMAPS / ComParE / MFCC statistics).

One utterance-level vector per utterance (:mod:`emoboost.features.functionals`) -> StandardScaler ->
RBF SVC, in one sklearn ``Pipeline`` so the scaler is refitted inside every inner fold.

Model selection stays on training speakers: ``C`` x ``gamma`` are chosen by ``GridSearchCV`` with an
inner ``GroupKFold`` over the TRAINING speakers (groups passed explicitly, scikit-learn #7646),
scoring balanced accuracy (= UA). The ``valid`` set the runner passes holds training speakers too,
so the SVM merges it into the training data: its own inner CV replaces early stopping, and every
training speaker then counts for selection and for the final fit. ``gamma`` is searched as
multiples of 1/F (sklearn's ``"scale"`` for standardised input, F = feature count).

Posteriors: ``SVC(probability=True)`` is deprecated (scikit-learn 1.9), so, as recommended, the
chosen pipeline is wrapped in ``CalibratedClassifierCV(ensemble=False)``, calibrated on out-of-fold
decision values of the same speaker-grouped inner folds. ``calibration="temperature"`` (default):
softmax(beta * decision), monotone, so the label is the SVM's own one-vs-one vote (ties broken by
summed confidence, as sklearn's one-vs-rest decision function does). The per-class ``"sigmoid"``
(Platt) alternative's argmax can overrule the vote in favour of frequent classes: on EmoDB eGeMAPS
(10-fold LOSO) it gave pooled UA 64.1 against 65.8 with temperature scaling.

Persistence without pickle: the fitted model is a handful of arrays (imputation means, scaler
mean/scale, support vectors, dual coefficients, intercepts, per-class sigmoid a/b) stored in
safetensors + JSON. :class:`SVMArrays` evaluates them in NumPy (RBF kernel, one-vs-one decision
values, sklearn's one-vs-rest vote transform, the calibration); it is used for every prediction,
right after fitting too, so a reloaded model predicts exactly what the fitted one did. The tests
check it against sklearn's own ``predict_proba``.

Speaker normalisation (``speaker_norm="speaker"``, off by default): each speaker's functionals are
z-normalised with that speaker's own mean and standard deviation before the scaler, the usual
practice with eGeMAPS/ComParE (it removes voice and recording offsets an 8-speaker training set
cannot learn to ignore). Test speakers are normalised with their own statistics too; this uses
their *unlabelled* features (all utterances of the speaker in the set being predicted), never labels,
so it stays speaker-independent but is transductive, and the report says so. A speaker with fewer
than ``min_speaker_utts`` utterances in the set (e.g. ``emoboost predict`` on one file) falls back to
the pooled raw statistics of the training data, an approximation: pass several files of one
speaker for the intended behaviour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from emoboost.methods.base import Method, UtteranceSet, speaker_rows
from emoboost.methods.params import POSITIVE, SPEAKER_NORM, Int, ListOf, Param, one_of
from emoboost.utils import atomic_write_bytes

FEATURE_KINDS = ("egemaps", "compare", "mfcc_stats")


@dataclass
class SVMArrays:
    """A fitted scaler + RBF SVC + calibration as plain arrays, evaluated in NumPy.

    Conventions are sklearn's public ones: ``classes`` are the label indices seen in training;
    ``dual_coef`` [k-1, n_SV] and ``intercept`` [k(k-1)/2] as ``SVC.dual_coef_`` / ``SVC.intercept_``;
    ``n_support`` [k]. Calibration ``"temperature"``: ``calib_a`` = [beta], ``calib_b`` empty;
    ``"sigmoid"``: ``calib_a``/``calib_b`` one sigmoid per class (one in total when k == 2).
    """

    impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: np.ndarray
    n_support: np.ndarray
    gamma: float
    classes: np.ndarray
    calib_a: np.ndarray
    calib_b: np.ndarray
    calibration: str = "temperature"

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isfinite(x), x, self.impute[None, :])
        return (x - self.mean) / self.scale

    def kernel(self, z: np.ndarray) -> np.ndarray:
        sv = self.support_vectors
        d2 = (z**2).sum(1)[:, None] + (sv**2).sum(1)[None, :] - 2.0 * z @ sv.T
        return np.exp(-self.gamma * np.maximum(d2, 0.0))

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """sklearn ``SVC.decision_function`` (``decision_function_shape="ovr"``) on raw features."""
        k_mat = self.kernel(self.transform(x))
        k = len(self.classes)
        if k == 2:
            return k_mat @ self.dual_coef[0] + self.intercept[0]
        start = np.concatenate([[0], np.cumsum(self.n_support)])
        ovo = []
        for i in range(k):
            for j in range(i + 1, k):
                si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
                ovo.append(k_mat[:, si] @ self.dual_coef[j - 1, si] + k_mat[:, sj] @ self.dual_coef[i, sj])
        dec = np.stack(ovo, 1) + self.intercept[None, :]  # positive -> class i of pair (i, j)
        # sklearn's _ovr_decision_function(dec < 0, -dec, k): votes + squashed confidence sums.
        votes = np.zeros((len(x), k))
        conf = np.zeros((len(x), k))
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                conf[:, i] += dec[:, p]
                conf[:, j] -= dec[:, p]
                votes[:, i] += dec[:, p] >= 0
                votes[:, j] += dec[:, p] < 0
                p += 1
        return votes + conf / (3 * (np.abs(conf) + 1))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[N, k] calibrated posteriors over ``classes`` (CalibratedClassifierCV's rules)."""
        dec = self.decision_function(x)
        k = len(self.classes)
        if self.calibration == "temperature":  # CalibratedClassifierCV: softmax(beta * logits)
            logits = np.stack([-dec, dec], 1) if k == 2 else dec
            z = self.calib_a[0] * logits
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        if k == 2:
            p1 = expit(-(self.calib_a[0] * dec + self.calib_b[0]))
            return np.stack([1.0 - p1, p1], 1)
        proba = expit(-(self.calib_a[None, :] * dec + self.calib_b[None, :]))
        den = proba.sum(1, keepdims=True)
        return np.divide(proba, den, out=np.full_like(proba, 1.0 / k), where=den != 0)

    def tensors(self) -> dict[str, np.ndarray]:
        d = {k: np.ascontiguousarray(np.asarray(v)) for k, v in self.__dict__.items() if k != "calibration"}
        d["gamma"] = np.array([self.gamma], dtype=np.float64)
        return d

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], calibration: str) -> SVMArrays:
        kw = {k: t[k] for k in cls.__dataclass_fields__ if k != "calibration"}
        kw["gamma"] = float(t["gamma"][0])
        return cls(**kw, calibration=calibration)

    def num_parameters(self) -> int:
        return int(sum(v.size for v in self.tensors().values()))


def _from_sklearn(calibrated: CalibratedClassifierCV, impute: np.ndarray) -> SVMArrays:
    """Pull the arrays out of a fitted CalibratedClassifierCV(Pipeline(scaler, svc), ensemble=False)."""
    (cc,) = calibrated.calibrated_classifiers_
    pipe = cc.estimator
    scaler, svc = pipe.named_steps["scale"], pipe.named_steps["svc"]
    if calibrated.method == "temperature":
        a, b = np.array([cc.calibrators[0].beta_], dtype=np.float64), np.zeros(0)
    elif calibrated.method == "sigmoid":
        a = np.array([c.a_ for c in cc.calibrators], dtype=np.float64)
        b = np.array([c.b_ for c in cc.calibrators], dtype=np.float64)
    else:
        raise ValueError(f"svm: unsupported calibration {calibrated.method!r}")
    return SVMArrays(
        impute=impute.astype(np.float64),
        mean=scaler.mean_.astype(np.float64),
        scale=scaler.scale_.astype(np.float64),
        support_vectors=np.asarray(svc.support_vectors_, dtype=np.float64),
        dual_coef=np.asarray(svc.dual_coef_, dtype=np.float64),
        intercept=np.asarray(svc.intercept_, dtype=np.float64),
        n_support=np.asarray(svc.n_support_, dtype=np.int64),
        gamma=float(svc.gamma),
        classes=np.asarray(svc.classes_, dtype=np.int64),
        calib_a=a,
        calib_b=b,
        calibration=calibrated.method,
    )


def _column_stats(x: np.ndarray, mean_fallback, std_fallback) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std ignoring NaN; undefined means / (near-)zero stds take the fallbacks."""
    mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    return (np.where(np.isfinite(mu), mu, mean_fallback),
            np.where(np.isfinite(sd) & (sd > 1e-8), sd, std_fallback))


class FunctionalsSVM(Method):
    """Utterance functionals -> standardise -> RBF SVC; C/gamma by speaker-grouped inner CV."""

    name = "svm"
    PARAMS: ClassVar[dict[str, Any]] = {
        "features": Param("egemaps", one_of(*FEATURE_KINDS)),
        "C_grid": Param([0.1, 1.0, 10.0, 100.0], ListOf(POSITIVE)),
        "gamma_grid": Param([0.01, 0.1, 1.0], ListOf(POSITIVE)),  # multiples of 1/F
        "inner_folds": Param(5, Int(2)),
        "class_weight": Param("balanced", one_of("balanced", None)),
        "calibration": Param("temperature", one_of("temperature", "sigmoid")),  # or "sigmoid" (Platt, one-vs-rest)
        "speaker_norm": Param("none", SPEAKER_NORM),  # or "speaker": per-speaker z-normalisation (see the module docstring)
        "min_speaker_utts": Param(5, Int(1)),
    }

    @property
    def requires(self) -> tuple[str, ...]:
        return (self.params["features"],)

    def _matrix(self, data: UtteranceSet) -> np.ndarray:
        name = self.params["features"]
        rows = []
        for uid, r in zip(data.ids, data.feature(name)):
            r = np.asarray(r)
            if r.ndim == 2 and r.shape[0] == 1:  # [1, F]: one "segment" (how predict streams features)
                r = r[0]
            if r.ndim != 1:
                raise ValueError(f"svm: feature {name!r} of {uid} must be a 1-D utterance vector, got {r.shape}")
            rows.append(r)
        x = np.stack([np.asarray(r, dtype=np.float64) for r in rows]) if rows else np.zeros((0, 0))
        if hasattr(self, "model_") and x.shape[1] != self.model_.mean.shape[0]:
            raise ValueError(f"svm was trained on {self.model_.mean.shape[0]} {name} features, got {x.shape[1]}")
        return x

    def _speaker_normalise(self, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Per-speaker z-normalisation; small speakers fall back to the pooled training statistics."""
        if self.params["speaker_norm"] == "none":
            return x
        x = np.where(np.isfinite(x), x, np.nan)
        out = (x - self.pooled_mean_) / self.pooled_std_
        for _, rows in speaker_rows(groups):
            if len(rows) >= int(self.params["min_speaker_utts"]):
                mu, sd = _column_stats(x[rows], self.pooled_mean_, self.pooled_std_)
                out[rows] = (x[rows] - mu) / sd
        return out

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> FunctionalsSVM:
        t0 = time.perf_counter()
        x = self._matrix(train)
        y, groups = np.asarray(train.labels()), np.asarray(train.groups)
        if valid is not None and len(valid):  # training speakers too: merged (see module docstring)
            x = np.concatenate([x, self._matrix(valid)])
            y = np.concatenate([y, valid.labels()])
            groups = np.concatenate([groups, valid.groups])
        if len(np.unique(y)) < 2:
            raise ValueError("svm: training data holds fewer than 2 classes")
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError(f"svm: inner cross-validation needs >= 2 training speakers, got {n_groups}")
        if self.params["speaker_norm"] == "speaker":
            self.pooled_mean_, self.pooled_std_ = _column_stats(np.where(np.isfinite(x), x, np.nan), 0.0, 1.0)
            x = self._speaker_normalise(x, groups)
        impute = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)
        impute = np.where(np.isfinite(impute), impute, 0.0)
        x = np.where(np.isfinite(x), x, impute[None, :])
        p = self.params
        n_feat = x.shape[1]
        pipe = Pipeline([
            ("scale", StandardScaler()),
            ("svc", SVC(kernel="rbf", class_weight=p["class_weight"], random_state=seed)),
        ])
        inner = GroupKFold(n_splits=min(int(p["inner_folds"]), n_groups))
        grid = {"svc__C": [float(c) for c in p["C_grid"]],
                "svc__gamma": [float(g) / n_feat for g in p["gamma_grid"]]}
        search = GridSearchCV(pipe, grid, scoring="balanced_accuracy", cv=inner, refit=False, n_jobs=1)
        search.fit(x, y, groups=groups)
        self.best_params_ = {k.split("__")[1]: v for k, v in search.best_params_.items()}
        self.inner_cv_UA_ = float(search.best_score_)
        pipe.set_params(**search.best_params_)
        splits = list(inner.split(x, y, groups))  # the same speaker-grouped folds calibrate
        calibrated = CalibratedClassifierCV(pipe, method=p["calibration"], cv=splits, ensemble=False)
        calibrated.fit(x, y)
        self.model_ = _from_sklearn(calibrated, impute)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def predict_proba(self, data: UtteranceSet) -> np.ndarray:
        x = self._speaker_normalise(self._matrix(data), np.asarray(data.groups))
        out = np.zeros((len(x), len(self.classes)))
        if len(x):
            out[:, self.model_.classes] = self.model_.predict_proba(x)
        return out

    def embed(self, data: UtteranceSet) -> np.ndarray | None:
        """Standardised functionals (what the SVM's kernel sees), for the t-SNE plot."""
        return self.model_.transform(self._speaker_normalise(self._matrix(data), np.asarray(data.groups)))

    def num_parameters(self) -> int:
        """Stored numbers: support vectors, dual coefficients, intercepts, scaler, calibration."""
        n = self.model_.num_parameters() if hasattr(self, "model_") else 0
        return n + (2 * len(self.pooled_mean_) if hasattr(self, "pooled_mean_") else 0)

    def describe(self) -> dict:
        d: dict[str, Any] = {
            "features": self.params["features"],
            "model_selection": f"GridSearchCV, inner GroupKFold({self.params['inner_folds']}) over training "
                               "speakers (validation speakers merged into training), balanced accuracy",
            "speaker_norm": "none" if self.params["speaker_norm"] == "none" else
            "per-speaker z-normalisation (test speakers with their own unlabelled statistics; "
            f"< {self.params['min_speaker_utts']} utterances: pooled training statistics)",
        }
        if hasattr(self, "model_"):
            d.update({"C": self.best_params_["C"] if hasattr(self, "best_params_") else None,
                      "gamma": self.model_.gamma, "n_support": int(self.model_.n_support.sum())})
        if hasattr(self, "inner_cv_UA_"):
            d["inner_cv_UA"] = self.inner_cv_UA_
        return d

    # -- persistence: arrays + JSON, no pickle ---------------------------------------------
    def _state_config(self) -> dict:
        return {"best_params": getattr(self, "best_params_", {}), "inner_cv_UA": getattr(self, "inner_cv_UA_", None),
                "calibration": self.model_.calibration}

    def _save_weights(self, directory: Path) -> None:
        t = self.model_.tensors()
        if hasattr(self, "pooled_mean_"):
            t.update(speaker_pooled_mean=self.pooled_mean_.astype(np.float64),
                     speaker_pooled_std=self.pooled_std_.astype(np.float64))
        atomic_write_bytes(directory / "model.safetensors", save(t, metadata={"format": "emoboost-svm", "version": "1"}))

    def _load_weights(self, directory: Path, state: dict) -> None:
        t = load_file(str(directory / "model.safetensors"))
        self.model_ = SVMArrays.from_tensors(t, state["calibration"])
        if "speaker_pooled_mean" in t:
            self.pooled_mean_, self.pooled_std_ = t["speaker_pooled_mean"], t["speaker_pooled_std"]
        self.best_params_ = state.get("best_params", {})
        if state.get("inner_cv_UA") is not None:
            self.inner_cv_UA_ = float(state["inner_cv_UA"])


__all__ = ["FEATURE_KINDS", "FunctionalsSVM", "SVMArrays"]
