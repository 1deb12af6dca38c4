"""Every registered method through the same checks (scikit-learn's ``check_estimator``, for emoboost's Method).

Fit on a tiny synthetic set holding only the features the method ``requires``; posteriors of the right
shape that sum to 1; a save/load round trip that predicts identically; every declared parameter refuses
its rule's bad values when the method is built (one line naming it); ``requires`` computed from the
parameters; prediction on utterances with no labels and no speakers. A new method registers a tiny case
in ``CASES`` (the first test fails until it does).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pytest

from builders import clips, functionals_set, guided_segments, logmel_images, synthetic
from emoboost.methods import METHODS, Method, UtteranceSet, get_method

CLASSES = ["a", "b", "c"]


def _guided() -> UtteranceSet:
    return guided_segments([1, 2] * 6, L=3, T=10, D=8, frames=64, bins=64, y=np.arange(12) % 3,
                           speakers=[f"s{i % 4}" for i in range(12)])


# name -> (tiny data, parameters that keep the fit fast); every registered method has one
CASES: dict[str, tuple[Callable[[], UtteranceSet], dict]] = {
    "linear": (lambda: clips(n_utt=24, L=3, D=8)[0], {"max_epochs": 2}),
    "logreg": (lambda: clips(n_utt=24, L=3, D=8)[0], {"Cs": [0.1, 1.0], "inner_folds": 2}),
    "msemoboost": (_guided, {"lstm_hidden": 4, "branch_dim": 8, "max_epochs": 1, "batch_size": 8}),
    "ssl_cnn": (lambda: synthetic(n_utt=24, L=3, T=8, D=8), {"channels": [4], "proj_dim": 4, "max_epochs": 1}),
    "svm": (lambda: functionals_set(n_spk=4, per_class=2, F=6), {"C_grid": [1.0], "gamma_grid": [1.0],
                                                                  "inner_folds": 2}),
    "spec_cnn": (lambda: logmel_images(n_utt=12, T=16, M=8), {"max_epochs": 1, "image_size": None}),
}
# parameters that change what a method reads, with the features it then requires
REQUIRES = [
    ("msemoboost", {"guidance": "none"}, ("ssl",)),
    ("msemoboost", {"guidance": "mfcc"}, ("ssl", "mfcc")),
    ("msemoboost", {"guidance": "spec"}, ("ssl", "spec")),
    ("svm", {"features": "compare"}, ("compare",)),
    ("svm", {"features": "mfcc_stats"}, ("mfcc_stats",)),
]


def only_required(data: UtteranceSet, requires: tuple[str, ...], labels: bool = True) -> UtteranceSet:
    """The set with only the features ``requires`` names (a method reading anything else fails), and
    without labels and speakers when ``labels`` is False (a prediction input)."""
    feats = {k: v for k, v in data.features.items() if k in requires}
    ssl = data.ssl if "ssl" in requires else None
    if labels:
        return UtteranceSet(data.ids, data.y, data.groups, feats, ssl=ssl)
    return UtteranceSet(data.ids, features=feats, ssl=ssl)


_FITTED: dict[str, tuple[Method, UtteranceSet]] = {}


@pytest.fixture(params=sorted(CASES))
def fitted(request) -> tuple[Method, UtteranceSet]:
    """(the method fitted on its tiny set, that set), fitted once per method for every check below."""
    name = request.param
    if name not in _FITTED:
        make, params = CASES[name]
        method = get_method(name)(CLASSES, **params)
        data = only_required(make(), method.requires)
        assert method.fit(data, seed=0) is method  # fit returns the method itself
        _FITTED[name] = method, data
    return _FITTED[name]


def test_every_registered_method_has_a_case():
    assert set(CASES) == set(METHODS)


def test_posteriors_have_one_row_per_utterance_summing_to_one(fitted):
    method, data = fitted
    proba = method.predict_proba(data)
    assert proba.shape == (len(data), len(CLASSES))
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(method.predict(data), proba.argmax(axis=1))
    segments = method.predict_segments(data)
    assert len(segments) == len(data)
    for s in segments:
        assert s.ndim == 2 and s.shape[1] == len(CLASSES) and len(s) >= 1
        np.testing.assert_allclose(s.sum(axis=1), 1.0, atol=1e-6)


def test_save_and_load_give_identical_posteriors(fitted, tmp_path):
    method, data = fitted
    loaded = Method.load(method.save(tmp_path / "model"))
    assert type(loaded) is type(method) and loaded.classes == method.classes
    assert loaded.params == method.params and loaded.requires == method.requires
    np.testing.assert_array_equal(loaded.predict_proba(data), method.predict_proba(data))


def test_prediction_needs_no_labels_and_no_speakers(fitted):
    method, data = fitted
    bare = only_required(data, method.requires, labels=False)
    assert bare.y is None and all(g is None for g in bare.groups)
    np.testing.assert_array_equal(method.predict_proba(bare), method.predict_proba(data))
    with pytest.raises(ValueError, match="no labels"):
        get_method(method.name)(CLASSES, **CASES[method.name][1]).fit(bare)


@pytest.mark.parametrize("name", sorted(n for n in CASES if "speaker_norm" in get_method(n).declared_params()))
def test_unknown_speakers_get_the_training_statistics(name):
    """``groups=None`` means unknown speakers: each clip normalised with the training set's statistics,
    exactly as a speaker of its own too small for statistics (never pooled with its batch-mates)."""
    make, params = CASES[name]
    method = get_method(name)(CLASSES, **params, speaker_norm="speaker", min_speaker_utts=2)
    data = only_required(make(), method.requires)
    method.fit(data, seed=0)
    bare = only_required(data, method.requires, labels=False)
    lone = UtteranceSet(data.ids, groups=np.array([f"lone{i}" for i in range(len(data))]),
                        features=bare.features, ssl=bare.ssl)
    np.testing.assert_array_equal(method.predict_proba(bare), method.predict_proba(lone))
    np.testing.assert_array_equal(method.embed(bare), method.embed(lone))  # what the classifier sees
    assert not np.allclose(method.embed(bare), method.embed(data))  # named speakers: their own statistics


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_parameter_is_checked_when_the_method_is_built(name):
    klass = get_method(name)
    declared = klass.declared_params()
    built = klass(CLASSES)
    assert built.params == {k: p.rule(p.default) for k, p in declared.items()}  # defaults merged once, checked
    with pytest.raises(ValueError, match=rf"^{name}: unknown parameter\(s\) 'nosuch'; valid: "):
        klass(CLASSES, nosuch=1)
    for param, p in declared.items():
        bad_values = p.rule.invalid()
        assert bad_values, f"{name}.{param}: its rule names no value it refuses"
        for bad in bad_values:
            with pytest.raises(ValueError) as e:
                klass(CLASSES, **{param: bad})
            msg = str(e.value)
            assert msg.startswith(f"{name}: {param} must be ") and msg.endswith(f", got {bad!r}"), msg
            assert "\n" not in msg


@pytest.mark.parametrize("name,params,says", [
    ("logreg", {"speaker_norm": "bogus"}, "speaker_norm must be one of 'none', 'speaker'"),
    ("linear", {"pooling": "bogus"}, "pooling must be one of 'utterance', 'segment'"),
    ("linear", {"lr": float("inf")}, "lr must be a finite number >= 0"),
    ("linear", {"lr": float("nan")}, "lr must be a finite number >= 0"),
    ("ssl_cnn", {"batch_size": 0}, "batch_size must be an integer >= 1"),
    ("ssl_cnn", {"kernel": 4}, "kernel must be an odd integer >= 1"),
    ("logreg", {"layer": "weighted"}, "layer must be one layer or a list"),
    ("logreg", {"Cs": [1.0, -1.0]}, "Cs must be a non-empty list of [a finite number > 0]"),
    ("msemoboost", {"layer": [1, 2]}, "layer must be a layer index (-1 = the last) or 'weighted'"),
    ("msemoboost", {"finetune_top": 1, "layer": "weighted"}, "finetune_top needs one output layer"),
    ("msemoboost", {"enh": "softmax", "enh_residual": True}, "enh_residual applies to enh='linear' only"),
    ("svm", {"features": "gemaps"}, "features must be one of 'egemaps', 'compare', 'mfcc_stats'"),
    ("spec_cnn", {"image_size": [0, None]}, "image_size must be a list of 2"),
])
def test_values_that_used_to_fail_only_in_a_fold_are_refused_when_built(name, params, says):
    with pytest.raises(ValueError, match=rf"^{name}: ") as e:
        get_method(name)(CLASSES, **params)
    assert says in str(e.value)


@pytest.mark.parametrize("name,given,stored", [
    ("linear", {"layer": "2,3"}, [2, 3]),
    ("linear", {"layer": " Weighted"}, "weighted"),
    ("logreg", {"layer": "-1"}, -1),
    ("ssl_cnn", {"layer": "channels"}, "channels"),
    ("msemoboost", {"layer": "3"}, 3),
    ("svm", {"C_grid": "1,10"}, [1, 10]),
])
def test_one_layer_and_list_syntax(name, given, stored):
    """``-p layer=2,3`` and ``-p C_grid=1,10`` arrive as text: stored as what the method uses, once."""
    key = next(iter(given))
    assert get_method(name)(CLASSES, **given).params[key] == stored


@pytest.mark.parametrize("name", sorted(CASES))
def test_requires_is_computed_from_the_parameters(name):
    klass = get_method(name)
    assert isinstance(inspect.getattr_static(klass, "requires"), property)
    m = klass(CLASSES)
    assert "requires" not in vars(m)  # never stored on the instance
    assert m.requires and all(isinstance(f, str) for f in m.requires)
    if "ssl" not in m.requires:
        assert not m.needs_frames()


@pytest.mark.parametrize("name,params,requires", REQUIRES)
def test_requires_follows_the_parameters_and_is_all_the_method_reads(name, params, requires):
    make, tiny = CASES[name]
    method = get_method(name)(CLASSES, **tiny, **params)
    assert method.requires == requires
    data = make()
    if name == "svm":  # the tiny set's functionals under the name this configuration reads
        data = UtteranceSet(data.ids, data.y, data.groups, {requires[0]: data.features["egemaps"]})
    data = only_required(data, requires)
    proba = method.fit(data, seed=0).predict_proba(only_required(data, requires, labels=False))
    assert proba.shape == (len(data), len(CLASSES))


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_utterance_alone_and_among_the_others_gets_the_same_posteriors(name):
    """Prediction input (no speakers): each utterance's posteriors do not depend on its batch-mates, for
    every method and, where the method has it, with per-speaker normalisation switched on."""
    make, params = CASES[name]
    extra = {"speaker_norm": "speaker", "min_speaker_utts": 2} if "speaker_norm" in get_method(name).declared_params() \
        else {}
    method = get_method(name)(CLASSES, **params, **extra)
    data = only_required(make(), method.requires)
    method.fit(data, seed=0)
    bare = only_required(data, method.requires, labels=False)
    together = method.predict_proba(bare)
    alone = np.concatenate([method.predict_proba(bare.subset([i])) for i in range(len(bare))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)  # float rounding of batched matmuls only
