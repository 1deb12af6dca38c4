"""The runner's adapt= evaluation: scored utterances, their profiles, and a run under a protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builders import head_proba, save_tiny_whisper, speaker_clips, tiny_corpus
from emoboost.experiment.speaker_protocols import adapted_predict
from emoboost.methods import Method, UtteranceSet, get_method
from emoboost.methods.adaptation import pooled_rows, predict_adapted

CLASSES = ["a", "b", "c"]


@pytest.mark.parametrize("method", ["logreg", "linear"])
def test_methods_adapt_save_load_and_export_the_adapter(tmp_path, method):
    data, frames, _ = speaker_clips(n_speakers=8)
    test_rows = np.isin(data.groups, ["s6", "s7"])
    train, test = data.subset(np.flatnonzero(~test_rows)), data.subset(np.flatnonzero(test_rows))
    extra = {"Cs": [1.0]} if method == "logreg" else {"max_epochs": 30}
    m = get_method(method)(CLASSES, layer="0,1", adapt="enrol:3", **extra).fit(train, seed=0)
    scored, proba = adapted_predict(m, test, seed=1)
    assert len(scored) == len(test) - 2 * 3 and proba.shape == (len(scored), 3)
    assert all(p.n == 3 for p in scored.profiles)
    m.save(tmp_path / "m")
    back = Method.load(tmp_path / "m")
    assert back.adapter_.fingerprint() == m.adapter_.fingerprint()
    assert np.allclose(back.predict_proba(scored), proba, atol=1e-6)
    head = m.pooled_head()
    assert set(head["adaptation"]["arrays"]) == set(m.adapter_.arrays())
    # the head folds in the population profile (what a profile re-centres); an unknown speaker, nothing heard,
    # gets the adapter's population head: the model without speaker normalisation
    unknown = UtteranceSet(["x0", "x1"], np.array([0, 1]), np.array([None, None], dtype=object),
                           {"ssl": [frames[0], frames[1]]})
    assert np.allclose(head_proba(head, frames[:2]), m.predict_proba(unknown), atol=1e-5)
    pop = m.adapter_.population_proba(pooled_rows(m, unknown))
    assert np.allclose(predict_adapted(m, unknown), pop) and not np.allclose(pop, m.predict_proba(unknown), atol=1e-3)
    assert "speaker adaptation" in m.describe()


def test_adaptation_beats_none_on_speaker_shifted_clips():
    data, _, _ = speaker_clips(n_speakers=10, offset=3.0, seed=1)
    test_rows = np.isin(data.groups, ["s8", "s9"])
    train, test = data.subset(np.flatnonzero(~test_rows)), data.subset(np.flatnonzero(test_rows))
    none = get_method("logreg")(CLASSES, layer="0,1", Cs=[1.0]).fit(train)
    loo = get_method("logreg")(CLASSES, layer="0,1", Cs=[1.0], adapt="loo").fit(train)
    scored, proba = adapted_predict(loo, test, seed=0)
    assert (proba.argmax(1) == scored.y).mean() > (none.predict(test) == test.y).mean()


@pytest.mark.parametrize("adapt", ["loo", "enrol:2", "online"])
def test_two_training_speakers_adapt_and_say_why_the_correction_is_off(adapt):
    """A 3-speaker corpus under leave-one-speaker-out trains on two speakers: the fold is scored, and the report
    (JSON, as a run writes it) says the emotion correction was not chosen."""
    data, _, _ = speaker_clips(n_speakers=3, offset=3.0, seed=2)
    test_rows = data.groups == "s2"
    train, test = data.subset(np.flatnonzero(~test_rows)), data.subset(np.flatnonzero(test_rows))
    m = get_method("logreg")(CLASSES, layer="0,1", adapt=adapt).fit(train)
    scored, proba = adapted_predict(m, test, seed=0)
    assert len(scored) and np.all(np.isfinite(proba))
    assert "two training speakers" in json.dumps(m.describe())


def test_a_run_scores_only_what_the_protocol_scores_and_fits_once_per_fold(tmp_path, monkeypatch):
    from emoboost.experiment.run import ExperimentConfig, run_experiment
    from emoboost.methods.logreg import LogRegProbe

    fits = []
    real = LogRegProbe.fit
    monkeypatch.setattr(LogRegProbe, "fit", lambda self, *a, **k: (fits.append(1), real(self, *a, **k))[1])
    run = tmp_path / "run"
    run_experiment(ExperimentConfig(corpus="emodb", data_root=str(tiny_corpus(tmp_path / "emodb")),
                                    upstream=str(save_tiny_whisper(tmp_path / "w")), method="logreg",
                                    method_params={"layer": 2, "Cs": [1.0], "adapt": "enrol:2"}, seeds=[0, 1, 2],
                                    out_dir=str(run), cache_dir=str(tmp_path / "cache"), progress=False))
    folds = json.loads((run / "folds.json").read_text())
    assert len(fits) == len(folds)  # logreg ignores the seed: one fit per fold, the seeds only draw enrolments
    by_fold: dict[int, list] = {}
    for r in (json.loads(f.read_text()) for f in sorted((run / "folds").glob("*.json"))):
        f = folds[r["fold"]]
        assert len(r["test_ids"]) == f["n_test"] - 2 * len(f["test_groups"])  # 2 enrolment clips per speaker unscored
        assert set(r["test_ids"]) < set(f["test_ids"])
        by_fold.setdefault(r["fold"], []).append(frozenset(r["test_ids"]))
    assert all(len(v) == 3 for v in by_fold.values()) and any(len(set(v)) > 1 for v in by_fold.values())
    summary = (run / "summary.md").read_text()
    assert "2 utterance(s) per test speaker drawn at random as unlabelled enrolment" in summary
