"""How much of the loo gain can ten enrolment clips keep at best? The speaker-adaptation estimator against the
same estimator told the true emotion of every clip.

The estimator (:mod:`emoboost.methods.adaptation`) takes each clip's expected emotion offset out of the
speaker's mean, weighted by the population head's posteriors and by λ (chosen by inner CV on the training
speakers). Its **oracle** replaces those posteriors by the clip's true emotion and sets λ = 1: the speaker
mean is then the mean of ``x_i - e_{y_i}`` (the training emotion effects), shrunk as before — the best any
emotion correction of this kind can do, and a bound no deployable model reaches (it needs labels).

Both run the same pipeline on each corpus's default speaker-independent folds: Whisper-base hidden states 2, 3,
4 pooled and concatenated, training speakers normalised as the protocol treats test speakers (the oracle with
their true emotions too), standardised logistic regression with C chosen by inner speaker-grouped CV
(``emoboost.methods.inner_cv.select``, as ``logreg`` chooses it). ``loo``: every test utterance adapted with
its speaker's other utterances; ``enrol:10``: 10 random utterances per test speaker enrol and are not scored,
draws 0-4 of the test enrolment (the training speakers' normalisation is drawn once, seed 0, as ``run``
fits it once per fold). Rows: UA %
(mean over draws of the fold-mean UA) and the paired gain over no adaptation on the same scored utterances;
the shares are enrol:10's gain over the estimator's loo gain (the target's reference), with or without
the true emotions.

    python benchmarks/speaker_adaptation_bound.py [--corpora emodb ravdess casia] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LAYERS = [2, 3, 4]
DRAWS = (0, 1, 2, 3, 4)


def head(z_tr: np.ndarray, y: np.ndarray, g: np.ndarray, n_classes: int):
    """Standardised L2 logistic regression, C by inner speaker-grouped CV -> predict function."""
    from sklearn.linear_model import LogisticRegression

    from emoboost.methods.inner_cv import CS, select

    found = select(z_tr[:, None], y, g, np.arange(len(y)), [[0]], list(CS), n_classes)
    c = found[0].c if found is not None else CS[0]
    m, s = z_tr.mean(0), z_tr.std(0) + 1e-5
    clf = LogisticRegression(C=c, max_iter=2000).fit((z_tr - m) / s, y)
    return lambda z: clf.predict((z - m) / s)


def adapted(x, y, g, tr, te, protocol, seeds, n_classes: int, oracle: bool):
    """{seed: (scored test rows, predictions)} of the adapted model under ``protocol``, one test draw per seed."""
    from emoboost.methods.adapt_protocol import plan
    from emoboost.methods.adaptation import SpeakerAdapter

    eye = np.eye(n_classes)
    if oracle:  # the true emotions as posteriors, full correction; prior strength on the corrected residuals
        a = SpeakerAdapter(protocol)
        a.n_classes, a.oof_ = n_classes, eye[y[tr]]
        a._population(x[tr], y[tr], g[tr], 1.0)
        p_tr, p_te = eye[y[tr]], eye[y[te]]
    else:
        a = SpeakerAdapter(protocol).fit(x[tr], y[tr], g[tr], n_classes)
        p_tr, p_te = a.oof_, a.population_proba(x[te])
    predict = head(a.train_inputs(x[tr], g[tr], p_tr), y[tr], g[tr], n_classes)
    xt, gt, yt = x[te], g[te], y[te]
    out = {}
    for seed in seeds:
        pl = plan(protocol, gt, yt, seed, n_classes)
        mu = a.speaker_mean(pl.positions, np.stack([xt[i].sum(0) for i in pl.sources]),
                            np.stack([p_te[i].sum(0) for i in pl.sources]))
        out[seed] = (pl.scored, predict(a.normalise(xt[pl.scored], mu)))
    return out


def corpus_rows(corpus: str) -> dict:
    from pooled_corpus import load_pooled

    from emoboost.evaluation.metrics import unweighted_accuracy as ua
    from emoboost.methods.adapt_protocol import parse_adapt

    data = load_pooled(corpus, "whisper-base", LAYERS)
    x, y, g, n_classes = data.x(LAYERS), data.y, data.groups.astype(str), len(data.classes)
    rows: dict[str, list[tuple[float, float]]] = {}
    for f in data.folds:
        tr, te = np.concatenate([f.train, f.valid]), f.test
        none = head(x[tr], y[tr], g[tr], n_classes)(x[te])
        for name, spec, seeds in (("loo", "loo", (0,)), ("enrol:10", "enrol:10", DRAWS)):
            for oracle in (False, True):
                key = name + (", true emotions (oracle)" if oracle else "")
                for seed, (scored, pred) in adapted(x, y, g, tr, te, parse_adapt(spec), seeds, n_classes,
                                                    oracle).items():
                    a, b = 100 * ua(y[te][scored], pred), 100 * ua(y[te][scored], none[scored])
                    rows.setdefault(key, []).append((seed, a, a - b))
        print(f"{corpus}: fold {f.index} done", file=sys.stderr, flush=True)
    out = {}
    for key, vals in rows.items():
        v = np.array(vals)
        per_draw = [v[v[:, 0] == s] for s in np.unique(v[:, 0])]
        out[key] = {"UA": float(np.mean([d[:, 1].mean() for d in per_draw])),
                    "gain": float(np.mean([d[:, 2].mean() for d in per_draw])), "units": len(v)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", nargs="+", default=["emodb", "ravdess", "casia"])
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    results = {c: corpus_rows(c) for c in args.corpora}
    print("\n| corpus | loo | enrol:10 | enrol:10 / loo | loo, true emotions | enrol:10, true emotions "
          "| enrol:10 true emotions / loo |\n|---|---|---|---|---|---|---|")
    for c, r in results.items():
        lo, en = r["loo"]["gain"], r["enrol:10"]["gain"]
        lo_o, en_o = r["loo, true emotions (oracle)"]["gain"], r["enrol:10, true emotions (oracle)"]["gain"]
        print(f"| {c} | {lo:+.2f} | {en:+.2f} | {100 * en / lo:.0f} % | {lo_o:+.2f} | {en_o:+.2f} | "
              f"{100 * en_o / lo:.0f} % |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
