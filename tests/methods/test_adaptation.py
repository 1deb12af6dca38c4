"""Speaker adaptation: the shrunk and emotion-corrected speaker mean, profiles, the methods' hooks."""

from __future__ import annotations

import numpy as np
import pytest

from builders import speaker_clips
from emoboost.methods import get_method
from emoboost.methods.adapt_protocol import parse_adapt
from emoboost.methods.adaptation import LAMBDAS, Profile, SpeakerAdapter

CLASSES = ["a", "b", "c"]


def _fitted(protocol="loo", **kw):
    data, frames, offsets = speaker_clips(**kw)
    x = np.stack([f.mean(axis=1).reshape(-1) for f in frames])
    return SpeakerAdapter(parse_adapt(protocol)).fit(x, data.y, data.groups, 3, Cs=[1.0]), x, data, offsets


def test_shrinkage_moves_from_the_population_to_the_speaker():
    a, x, data, _ = _fitted()
    rows = np.flatnonzero(data.groups == "s0")
    own = x[rows].mean(0)
    dist = []
    for n in (0, 1, 3, len(rows)):
        mu = a.speaker_mean(n, x[rows[:n]].sum(0), a.population_proba(x[rows[:n]]).sum(0))
        dist.append(np.linalg.norm(mu - own))
    assert np.allclose(a.speaker_mean(0, np.zeros(x.shape[1]), np.zeros(3)), a.mean_)  # no clips: the population
    assert dist == sorted(dist, reverse=True) and dist[-1] < 0.5 * dist[0]  # each clip moves it toward the speaker
    assert np.all(a.kappa_ > 0) and a.lam_ in LAMBDAS


@pytest.mark.parametrize("protocol", ["loo", "enrol:3", "online"])
def test_two_training_speakers_fit_without_inner_cv_of_the_correction(protocol):
    """Two training speakers (a 3-speaker corpus under leave-one-speaker-out): an inner fold would keep one, whose
    between-speaker variance does not exist; the correction is then not chosen by inner CV but left out (lam 0),
    and the report says why."""
    a, x, data, _ = _fitted(protocol, n_speakers=2)
    assert a.lam_ == 0.0 and np.all(np.isfinite(a.kappa_))
    assert "two training speakers" in str(a.describe())
    assert np.all(np.isfinite(a.train_inputs(x, data.groups, a.oof_)))


def test_emotion_correction_keeps_a_one_emotion_speaker_emotional():
    """A speaker heard in class 0 only: with the correction its estimated mean is nearer its true offset than
    the naive mean of those clips (which holds class 0's effect and would erase it)."""
    a, x, data, offsets = _fitted(offset=1.0, per_class=8, seed=3)
    rows = np.flatnonzero((data.groups == "s1") & (data.y == 0))
    sx, sp = x[rows].sum(0), a.population_proba(x[rows]).sum(0)
    truth = np.concatenate([offsets["s1"], offsets["s1"]]) + a.mean_  # population mean + the speaker's offset
    a.lam_ = 1.0
    corrected = a.speaker_mean(len(rows), sx, sp)
    a.lam_ = 0.0
    naive = a.speaker_mean(len(rows), sx, sp)
    assert np.linalg.norm(corrected - truth) < 0.7 * np.linalg.norm(naive - truth)


def test_profiles_are_sums_in_any_order():
    a, x, data, _ = _fitted()
    fp = a.fingerprint()
    rows = np.flatnonzero(data.groups == "s2")
    one_by_one = Profile()
    for i in rows[::-1]:
        one_by_one = one_by_one.add({fp: a.terms(x[[i]])})
    at_once = Profile().add({fp: a.terms(x[rows])}, count=len(rows))
    assert one_by_one.n == at_once.n == len(rows)
    assert np.allclose(a.profile_mean(one_by_one), a.profile_mean(at_once))
    without = at_once.add({fp: a.terms(x[rows[:1]])}, sign=-1)
    rest = Profile().add({fp: a.terms(x[rows[1:]])}, count=len(rows) - 1)
    assert np.allclose(a.profile_mean(without), a.profile_mean(rest))
    with pytest.raises(ValueError, match="another model"):
        a.profile_mean(Profile(2, {"0" * 16: (x[:2].sum(0), np.zeros(3))}))


def test_arrays_round_trip_and_fingerprint():
    a, x, _, _ = _fitted()
    b = SpeakerAdapter.from_arrays(a.arrays(), a.protocol)
    assert b.fingerprint() == a.fingerprint()
    assert np.allclose(b.population_proba(x), a.population_proba(x))
    c = SpeakerAdapter.from_arrays({**a.arrays(), "adapt_lam": np.array([9.0])}, a.protocol)
    assert c.fingerprint() != a.fingerprint()


def test_unknown_speakers_never_use_their_batch_mates():
    a, x, _, _ = _fitted()
    lone = a.transform(x[:1], np.array([None], dtype=object))
    batch = a.transform(x[:12], np.full(12, None, dtype=object))
    assert np.allclose(lone[0], batch[0])
    assert np.allclose(lone[0], a.normalise(x[0], a.mean_))


@pytest.mark.parametrize("params, match", [({"adapt": "loo", "pooling": "segment"}, "pooling=utterance"),
                                           ({"adapt": "loo", "speaker_norm": "speaker"}, "adapt=transductive"),
                                           ({"speaker_norm": "yes"}, "speaker_norm must be")])
def test_bad_combinations_are_one_line(params, match):
    data, _, _ = speaker_clips()
    with pytest.raises(ValueError, match=match):
        get_method("logreg")(CLASSES, layer=1, **params).fit(data)


def test_transductive_is_the_old_speaker_norm():
    data, _, _ = speaker_clips()
    a = get_method("logreg")(CLASSES, layer=1, Cs=[1.0], adapt="transductive").fit(data)
    b = get_method("logreg")(CLASSES, layer=1, Cs=[1.0], speaker_norm="speaker").fit(data)
    assert np.allclose(a.predict_proba(data), b.predict_proba(data))


@pytest.mark.parametrize("method", ["svm", "msemoboost", "ssl_cnn"])
def test_other_methods_say_adaptation_is_not_supported(method):
    with pytest.raises(ValueError, match="speaker adaptation \\(adapt=\\) is not supported") as e:
        get_method(method)(CLASSES, adapt="online")
    assert "\n" not in str(e.value)
