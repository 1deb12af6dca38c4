"""Speaker adaptation of pooled inputs: a speaker's offset from unlabelled clips, shrunk toward the training population.

Per-speaker normalisation is the largest accuracy lever of the pooled probes, but the old switch
(``speaker_norm=speaker``, now ``adapt=transductive``) z-normalises a test speaker with all of its
utterances, the scored ones included. This module adapts from clips the model has *heard* before —
enrolment clips, or the earlier clips of a live session — and is built for the two ways that fails:

* **few clips**: the speaker's mean is estimated from ``n`` clips under a conjugate normal prior
  centred on the training population, ``mu = (sum_i r_i + kappa * mu0) / (n + kappa)`` per input
  dimension, with ``kappa = within-speaker variance / between-speaker variance of speaker means``
  estimated from the training speakers (empirical Bayes): 0 clips give the population, 1 clip moves
  ``1 / (1 + kappa)`` of the way, and many clips converge to the speaker's own mean;
* **clips that lean to one emotion** (an angry caller): the naive mean of angry clips is the speaker
  *plus anger*, and subtracting it removes the anger. Each clip's contribution is therefore
  ``r_i = x_i - lam * sum_c p_ic e_c``: its expected emotion offset (``e_c``: class mean minus the
  speaker's class-balanced mean, averaged over training speakers) weighted by the posteriors ``p_i`` of
  a population head (the same pooled inputs, no adaptation) is taken out before averaging.
  ``lam`` in {0, 0.5, 1} is chosen by inner speaker-grouped CV on the training speakers, which scores
  the inner validation speakers under the model's own protocol and, for ``enrol:K`` and ``online``,
  weighs its skewed variant (the profile from clips of one or two emotions, every emotion in turn) as
  much as the balanced draws, scoring there the clips at risk: those of the emotions the profile leans
  to. The population head's posteriors are reliable on some corpora (EmoDB) and biased by the speaker
  on others (CASIA), and only training speakers may say which (never the test fold). With only two training
  speakers an inner fold would keep one (no between-speaker variance), so ``lam`` is 0 there.

Only the mean adapts: the scale is the population's within-speaker standard deviation (per-speaker
standard deviations from a handful of clips added noise and no accuracy on EmoDB and RAVDESS inner
folds). Measured on inner folds of the training speakers (Whisper-base layers 2-4, logistic
regression), alternatives behaved as follows: a naive mean from 1-5 clips cost up to 29 UA; shrinkage
alone fixed few clips but skewed enrolments still cost EmoDB up to 3 UA; the posterior correction at
``lam = 1`` protected skewed enrolments on EmoDB but halved the gain on RAVDESS and CASIA, where the
population head's posteriors lean toward each speaker's typical class; removing the offset only in
directions orthogonal to the emotion effects removed the whole gain (the gain lives in those directions);
a full within-speaker covariance under the per-dimension prior (a Gaussian posterior that trusts the
clips less along correlated content directions) lost about half the gain on RAVDESS; and choosing
``lam`` for the best balanced score subject to skewed enrolments not losing, instead of the average of
both, lowered EmoDB balanced and skewed alike.

With no clip heard (an unknown speaker, the first clip of a live session) the population head answers
(:func:`predict_adapted`): the adapted head on population statistics never met such inputs in training,
while the population head is a logistic regression on the same inputs without speaker normalisation (for
logreg, the plain model), so a model trained with ``adapt=`` answers like a plain one until it hears the
speaker.

A :class:`Profile` is what one speaker's clips add up to — the clip count and, per adapter, the sum
of the pooled inputs and of the population posteriors — so it is updated clip by clip (a live
session) and equals the same clips enrolled at once. Training speakers are normalised the way the
protocol treats test speakers (:class:`Protocol`), with posteriors from population heads that never
saw them (out-of-fold).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emoboost.methods.adapt_protocol import Protocol, parse_adapt, plan, selection_sums, speaker_rng
from emoboost.methods.inner_cv import CS

LAMBDAS = (0.0, 0.5, 1.0)
PREFIX = "adapt_"  # array names in a method's weight file


@dataclass
class Profile:
    """What one speaker's clips add up to: ``n`` clips and, per adapter fingerprint, the sum of their pooled
    inputs ``x`` and of their population-head posteriors ``p``. Sums, so a live session updated clip by clip
    equals the same clips enrolled at once, and a clip's own contribution can be taken out again."""

    n: int = 0
    sums: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def add(self, terms: dict[str, tuple[np.ndarray, np.ndarray]], sign: int = 1, count: int = 1) -> Profile:
        """A new profile with ``terms`` (fingerprint -> (sum x, sum p) of ``count`` clips) added (or removed)."""
        if self.sums and set(terms) != set(self.sums):
            raise ValueError("the clips were measured by another model than this profile's")
        sums = {fp: (self.sums[fp][0] + sign * tx, self.sums[fp][1] + sign * tp) if fp in self.sums
                else (sign * np.asarray(tx, np.float64), sign * np.asarray(tp, np.float64))
                for fp, (tx, tp) in terms.items()}
        return Profile(self.n + sign * int(count), sums)


class SpeakerAdapter:
    """Population statistics, the population head and the shrinkage that turn a :class:`Profile` into a
    speaker mean for one model's pooled inputs (see the module docstring). Numpy only after fitting."""

    ARRAYS = ("mean", "std", "kappa", "effects", "lam", "pop_mean", "pop_scale", "pop_coef", "pop_intercept")

    def __init__(self, protocol: Protocol, seed: int = 0):
        self.protocol = protocol
        self.seed = int(seed)

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, Cs=CS,
            folds: int = 3, max_iter: int = 2000) -> SpeakerAdapter:
        """Learn from labelled training rows (at least two named speakers); keeps the out-of-fold posteriors of
        the rows for :meth:`train_inputs`."""
        from sklearn.model_selection import GroupKFold

        x = np.asarray(x, np.float64)
        g = np.asarray(groups, dtype=object).astype(str)
        if len(set(g)) < 2:
            raise ValueError("speaker adaptation needs at least two training speakers (between-speaker variance)")
        self.n_classes = int(n_classes)
        splits = list(GroupKFold(n_splits=min(int(folds), len(set(g)))).split(x, y, g))
        self.oof_, self.C_ = self._population_head(x, y, splits, Cs, max_iter)
        scores = {}
        # an inner fold must keep two speakers for a between-speaker variance: with two training speakers
        # the correction cannot be chosen on them, and is left out (lam 0: the speaker's plain shrunk mean)
        for lam in LAMBDAS if len(set(g)) > 2 else ():
            vals = []
            for tr, va in splits:
                vals.append(self._inner_score(x, y, g, tr, va, lam, max_iter))
            scores[lam] = float(np.mean(vals))
        self.inner_scores_ = scores
        self._population(x, y, g, max(scores, key=scores.get) if scores else 0.0)
        return self

    def _population_head(self, x, y, splits, Cs, max_iter) -> tuple[np.ndarray, float]:
        """Standardised logistic regression on the pooled inputs (C by the grouped folds); -> out-of-fold posteriors."""
        from sklearn.linear_model import LogisticRegression

        best = None
        for c in Cs:  # as logreg chooses its C: the mean UA of the grouped folds
            oof = np.zeros((len(x), self.n_classes))
            for tr, va in splits:
                m, s = x[tr].mean(0), x[tr].std(0) + 1e-5
                clf = LogisticRegression(C=c, max_iter=max_iter).fit((x[tr] - m) / s, y[tr])
                oof[np.ix_(va, clf.classes_)] = clf.predict_proba((x[va] - m) / s)
            ua = float(np.mean([_ua(y[va], oof[va].argmax(1)) for _, va in splits]))
            if best is None or ua > best[0]:
                best = (ua, oof, c)
        m, s = x.mean(0), x.std(0) + 1e-5
        clf = LogisticRegression(C=best[2], max_iter=max_iter).fit((x - m) / s, y)
        self.pop_mean_, self.pop_scale_ = m, s
        self.pop_coef_ = np.zeros((self.n_classes, x.shape[1]))
        self.pop_intercept_ = np.full(self.n_classes, -1e9)
        if len(clf.classes_) == 2:
            self.pop_intercept_[clf.classes_[0]] = 0.0
            self.pop_coef_[clf.classes_[1]], self.pop_intercept_[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
        else:
            self.pop_coef_[clf.classes_], self.pop_intercept_[clf.classes_] = clf.coef_, clf.intercept_
        return best[1], float(best[2])

    def _population(self, x, y, g, lam) -> None:
        """Population mean and scale, emotion effects and the empirical-Bayes prior strength, from labelled rows."""
        self.lam_ = float(lam)
        speakers = sorted(set(g))
        effects, counts, bal, var = np.zeros((self.n_classes, x.shape[1])), np.zeros(self.n_classes), [], []
        for s in speakers:
            xs, ys = x[g == s], y[g == s]
            cs = np.unique(ys)
            means = np.stack([xs[ys == c].mean(0) for c in cs])
            b = means.mean(0)
            effects[cs] += means - b
            counts[cs] += 1
            w = 1.0 / (len(cs) * np.bincount(ys, minlength=self.n_classes)[ys])
            bal.append(b)
            var.append((w[:, None] * (xs - b) ** 2).sum(0))
        effects /= np.maximum(counts, 1)[:, None]
        self.effects_ = effects - effects[counts > 0].mean(0)  # a uniform posterior corrects nothing
        self.mean_ = np.mean(bal, axis=0)
        self.std_ = np.sqrt(np.mean(var, axis=0)) + 1e-5
        r = x - self.lam_ * self.oof_ @ self.effects_
        within = np.mean([r[g == s].var(0, ddof=1) if (g == s).sum() > 1 else r[g == s].var(0) for s in speakers], 0)
        sizes = np.array([(g == s).sum() for s in speakers])
        means = np.stack([r[g == s].mean(0) for s in speakers])
        between = means.var(0, ddof=1) - within * np.mean(1.0 / sizes)
        self.kappa_ = np.clip(within / np.maximum(between, 1e-3 * within + 1e-12), 1e-2, 1e4)

    def _inner_score(self, x, y, g, tr, va, lam, max_iter) -> float:
        """Mean UA of the inner validation speakers over balanced and skewed enrolments, at ``lam``."""
        from sklearn.linear_model import LogisticRegression

        inner = SpeakerAdapter(self.protocol, self.seed)
        inner.n_classes, inner.oof_ = self.n_classes, self.oof_[tr]  # _population's prior strength reads them
        inner._population(x[tr], y[tr], g[tr], lam)
        z = inner.train_inputs(x[tr], g[tr], self.oof_[tr])
        m, s = z.mean(0), z.std(0) + 1e-5
        clf = LogisticRegression(C=self.C_, max_iter=max_iter).fit((z - m) / s, y[tr])
        xv, yv, gv, pv = x[va], y[va], g[va], self.oof_[va]
        balanced = Protocol(self.protocol.kind, self.protocol.k)
        conditions = [(balanced, r) for r in range(1 if balanced.kind == "loo" else 2)]
        if balanced.kind != "loo":  # a live speaker may lean to one emotion: every emotion in turn
            conditions += [(Protocol(balanced.kind, balanced.k, True), c) for c in range(self.n_classes)]
        out: dict[bool, list[float]] = {False: [], True: []}
        for protocol, seed in conditions:
            p = plan(protocol, gv, yv, seed, self.n_classes)
            mu = inner.speaker_mean(p.positions, np.stack([xv[i].sum(0) for i in p.sources]),
                                    np.stack([pv[i].sum(0) for i in p.sources]))
            pred = clf.predict((inner.normalise(xv[p.scored], mu) - m) / s)
            # skewed: the clips at risk, those of the emotions the profile leans to (an always-angry caller's anger)
            risk = np.isin(yv[p.scored], [seed % self.n_classes, (seed + 1) % self.n_classes]) if protocol.skewed \
                else np.ones(len(pred), dtype=bool)
            if risk.any():
                out[protocol.skewed].append(_ua(yv[p.scored][risk], pred[risk]))
        return float(np.mean(out[False]) if not out[True] else 0.5 * (np.mean(out[False]) + np.mean(out[True])))

    # -- using it ---------------------------------------------------------------------------------
    def population_proba(self, x: np.ndarray) -> np.ndarray:
        """[N, C] posteriors of the population head (no adaptation)."""
        z = (np.asarray(x, np.float64) - self.pop_mean_) / self.pop_scale_ @ self.pop_coef_.T + self.pop_intercept_
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def speaker_mean(self, n: Any, sum_x: np.ndarray, sum_p: np.ndarray) -> np.ndarray:
        """The shrunk speaker mean(s) from ``n`` clips' sums (``n`` may be an array of counts, one per row)."""
        n = np.asarray(n, np.float64)[..., None]
        r = np.asarray(sum_x, np.float64) - self.lam_ * np.asarray(sum_p, np.float64) @ self.effects_
        return (r + self.kappa_ * self.mean_) / (n + self.kappa_)

    def normalise(self, x: np.ndarray, mu: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - mu) / self.std_).astype(np.float32)

    def terms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the clips ``x`` [N, F] add to a profile: (sum of x, sum of population posteriors)."""
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        return x.sum(0), self.population_proba(x).sum(0)

    def profile_mean(self, profile: Profile) -> np.ndarray:
        """[F] speaker mean from a profile made with this adapter."""
        fp = self.fingerprint()
        if profile.n == 0:
            return self.mean_.copy()
        if fp not in profile.sums:
            raise ValueError(f"the speaker profile was made with another model (it has no statistics for model "
                             f"{fp}); enrol the speaker again with this model")
        return self.speaker_mean(profile.n, *profile.sums[fp])

    def train_inputs(self, x: np.ndarray, groups: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """Rows of named speakers normalised the way the protocol treats test speakers, each speaker's rows among
        themselves (others: the population); ``proba``: the rows' posteriors (out-of-fold for training rows)."""
        x, p = np.asarray(x, np.float64), np.asarray(proba, np.float64)
        g = np.asarray(groups, dtype=object)
        mu = np.repeat(self.mean_[None], len(x), 0)
        for s in sorted({str(v) for v in g if v is not None}):
            rows = np.flatnonzero(np.array([v is not None and str(v) == s for v in g]))
            n, sx, sp = selection_sums(self.protocol.kind, rows, self.protocol.k, speaker_rng(self.seed, s), x, p)
            mu[rows] = self.speaker_mean(n, sx, sp)
        return self.normalise(x, mu)

    def transform(self, x: np.ndarray, groups: np.ndarray, profiles: Any = None) -> np.ndarray:
        """Rows with a profile use it; rows of named speakers without one are normalised among themselves as in
        training (:meth:`train_inputs`); the others (unknown speakers) with the population."""
        x = np.asarray(x, np.float64)
        prof = list(profiles) if profiles is not None else [None] * len(x)
        g = np.array([None if p is not None else v for v, p in zip(np.asarray(groups, dtype=object), prof)],
                     dtype=object)
        out = self.train_inputs(x, g, proba=self.population_proba(x))
        for i, p in enumerate(prof):
            if p is not None:
                out[i] = self.normalise(x[i], self.profile_mean(p))
        return out

    # -- persistence ---------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Everything prediction needs, float64, under :data:`PREFIX` names."""
        vals = {"mean": self.mean_, "std": self.std_, "kappa": self.kappa_, "effects": self.effects_,
                "lam": np.array([self.lam_]), "pop_mean": self.pop_mean_, "pop_scale": self.pop_scale_,
                "pop_coef": self.pop_coef_, "pop_intercept": self.pop_intercept_}
        return {PREFIX + k: np.ascontiguousarray(v, dtype=np.float64) for k, v in vals.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], protocol: Protocol) -> SpeakerAdapter:
        a = {k: np.asarray(arrays[PREFIX + k], np.float64) for k in cls.ARRAYS}
        obj = cls(protocol)
        obj.mean_, obj.std_, obj.kappa_, obj.effects_ = a["mean"], a["std"], a["kappa"], a["effects"]
        obj.lam_, obj.n_classes = float(a["lam"].reshape(-1)[0]), len(a["effects"])
        obj.pop_mean_, obj.pop_scale_, obj.pop_coef_, obj.pop_intercept_ = (a["pop_mean"], a["pop_scale"],
                                                                             a["pop_coef"], a["pop_intercept"])
        return obj

    def fingerprint(self) -> str:
        """16 hex digits of the arrays a profile's meaning depends on (the same for a model and its ONNX form)."""
        h = hashlib.sha256()
        for k, v in sorted(self.arrays().items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(v, dtype="<f8").tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        lam = self.lam_ if getattr(self, "inner_scores_", True) else \
            f"{self.lam_:g} (not chosen: two training speakers leave an inner fold a single one)"
        return {"speaker adaptation": self.protocol.describe(),
                "emotion correction lam (inner CV on training speakers)": lam,
                "prior strength kappa (median over dimensions, clips)": round(float(np.median(self.kappa_)), 1)}


def _ua(y: np.ndarray, pred: np.ndarray) -> float:
    from emoboost.evaluation.metrics import unweighted_accuracy

    return float(unweighted_accuracy(np.asarray(y), np.asarray(pred)))


def adapter_for(method: Any) -> SpeakerAdapter | None:
    """The fitted adapter of a method (None when it does not adapt to speakers)."""
    return getattr(method, "adapter_", None)


def pooled_rows(method: Any, data: Any) -> np.ndarray:
    """[N, F] float64: the method's pooled inputs (before speaker normalisation), one row per utterance."""
    from emoboost.methods.pooling import pooled_inputs

    x, _ = pooled_inputs(data, method.ssl_layers(data.ssl_view().num_layers), "utterance", method.params["stats"])
    return x.reshape(len(x), -1).astype(np.float64)


def predict_adapted(method: Any, data: Any) -> np.ndarray:
    """[N, C] posteriors of ``method`` with the speaker profiles of ``data``: rows whose profile holds clips get the
    adapted head; rows without (an unknown speaker, the first clip of a live session) the population head. With
    nothing heard, the model trained without speaker normalisation is the right one, not the adapted head on the
    population's statistics (which never saw them in training)."""
    adapter = adapter_for(method)
    if adapter is None:
        return method.predict_proba(data)
    heard = np.array([p is not None and p.n > 0 for p in (data.profiles or [None] * len(data))], dtype=bool)
    out = np.empty((len(data), len(method.classes)))
    if heard.any():
        out[heard] = method.predict_proba(data.subset(np.flatnonzero(heard)))
    if not heard.all():
        out[~heard] = adapter.population_proba(pooled_rows(method, data.subset(np.flatnonzero(~heard))))
    return out


def clip_terms(method: Any, data: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What the utterances of ``data`` add to a speaker profile of ``method``: {fingerprint: (sum x, sum p)}."""
    adapter = adapter_for(method)
    return {adapter.fingerprint(): adapter.terms(pooled_rows(method, data))}


def check_method_params(params: dict, name: str) -> Protocol:
    """The method's protocol from ``adapt`` and the older ``speaker_norm`` (one of them), with what it supports."""
    protocol = parse_adapt(params.get("adapt", "none"))
    if params.get("speaker_norm", "none") == "speaker":  # values are checked by the parameter's rule
        if protocol.kind not in ("none", "transductive"):
            raise ValueError(f"{name}: speaker_norm=speaker is adapt=transductive; give adapt={protocol} alone")
        return Protocol("transductive")
    if protocol.adapts and params.get("pooling", "utterance") != "utterance":
        raise ValueError(f"{name}: adapt={protocol} needs pooling=utterance (a speaker profile adapts pooled "
                         f"utterance inputs)")
    return protocol


# -- the hooks the pooled methods (logreg, linear) call -------------------------------------------------
def adapts(method: Any) -> bool:
    """Whether the method's protocol fits a :class:`SpeakerAdapter` (not none, not transductive)."""
    return check_method_params(method.params, method.name).adapts


def speaker_inputs(method: Any, x: np.ndarray, data: Any, seg_utt: np.ndarray) -> np.ndarray:
    """The method's pooled inputs ``x`` after its speaker normalisation: none, the old per-speaker z-norm
    (``transductive``), or this module's adapter — fitted on the first call of a fit (labelled training
    rows), applied afterwards (explicit profiles in ``data.profiles``, else as :meth:`SpeakerAdapter.transform`)."""
    protocol = check_method_params(method.params, method.name)
    groups = data.groups[seg_utt]
    if protocol.kind == "transductive":
        from emoboost.methods.pooling import SpeakerNorm

        if not hasattr(method, "spk_"):
            method.spk_ = SpeakerNorm(int(method.params["min_speaker_utts"])).fit(x, groups)
        return method.spk_.transform(x, groups)
    if not protocol.adapts:
        return x
    flat = x.reshape(len(x), -1)
    if getattr(method, "adapter_", None) is None:
        method.adapter_ = SpeakerAdapter(protocol).fit(flat, data.labels()[seg_utt], groups, len(method.classes),
                                                       Cs=method.params.get("Cs", CS))
        return method.adapter_.train_inputs(flat, groups, method.adapter_.oof_).reshape(x.shape)
    profiles = [data.profiles[i] for i in seg_utt] if data.profiles is not None else None
    return method.adapter_.transform(flat, groups, profiles).reshape(x.shape)


def describe_speaker(method: Any) -> dict:
    """What a report says about the method's speaker normalisation."""
    protocol = check_method_params(method.params, method.name)
    if protocol.kind == "transductive":
        return {"speaker normalisation": "per-speaker z-norm of pooled features; test speakers use their own "
                                         "unlabelled statistics (transductive: adapt=transductive)"}
    adapter = adapter_for(method)
    if protocol.adapts:
        return adapter.describe() if adapter is not None else {"speaker adaptation": protocol.describe()}
    return {}


def save_arrays(method: Any) -> dict[str, np.ndarray]:
    """The adapter's arrays for the method's weight file (empty when it has none)."""
    adapter = adapter_for(method)
    return adapter.arrays() if adapter is not None else {}


def load_arrays(method: Any, arrays: dict[str, Any]) -> None:
    """Rebuild the method's adapter from its weight file's arrays, when they are there."""
    if PREFIX + "mean" in arrays:
        arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in arrays.items()
                  if k.startswith(PREFIX)}
        method.adapter_ = SpeakerAdapter.from_arrays(arrays, parse_adapt(method.params.get("adapt", "none")))
