"""The evaluation protocols of speaker adaptation (``-p adapt=...``): which clips of a test speaker form the
profile each scored utterance is adapted with, and which are scored.

* ``loo``: every utterance is scored, adapted with its speaker's other utterances;
* ``enrol:K``: K utterances per test speaker, drawn with the run's seed, are unlabelled enrolment and not
  scored; the others are adapted with them (the runner's seeds are the repetitions);
* ``online``: a test speaker's utterances in a random order (the run's seed), each adapted with the ones
  before it — the first, with nothing heard, by the population head (no adaptation), as a live session;
* ``:skewed``: the enrolment (online: the first clips) is drawn from one emotion, topped up from the next one
  in class order: the seed names the emotion, so seeds 0..C-1 take every emotion in turn.

Profiles are :class:`~emoboost.methods.adaptation.Profile` sums, the objects ``emoboost enrol``, ``predict
--profile`` and the server's live sessions use, so a session reproduces the ``online`` numbers clip for clip.
"""

from __future__ import annotations

import numpy as np

from emoboost.methods.adapt_protocol import Plan, parse_adapt, plan
from emoboost.methods.adaptation import Profile, adapter_for, pooled_rows, predict_adapted
from emoboost.methods.base import Method, UtteranceSet


def profiles_for(method: Method, data: UtteranceSet, p: Plan) -> list[Profile]:
    """One profile per scored row, summed from the method's own terms of the source rows."""
    adapter = adapter_for(method)
    x = pooled_rows(method, data).astype(np.float64)
    prob = adapter.population_proba(x)
    fp = adapter.fingerprint()
    return [Profile(len(src), {fp: (x[src].sum(0), prob[src].sum(0))}) for src in p.sources]


def adapted_predict(method: Method, test: UtteranceSet, seed: int) -> tuple[UtteranceSet, np.ndarray]:
    """(scored utterances, their posteriors) under the method's ``adapt`` protocol; without one (or for the
    transductive switch, which reads the test speakers' groups itself) every utterance, as ``predict_proba``."""
    protocol = parse_adapt(method.params.get("adapt", "none"))
    if not protocol.adapts:
        return test, method.predict_proba(test)
    p = plan(protocol, test.groups, test.y, seed, len(method.classes))
    scored = test.subset(p.scored)
    scored.profiles = profiles_for(method, test, p)
    return scored, predict_adapted(method, scored)
