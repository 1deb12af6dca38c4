"""Is clip duration the cue that unmasked padding hands the last layer? A test with pooled logreg.

Why: MS-EmoBoost's uniform-weight baseline averages each 3 s window over all 150 frames, padding
included, so a short clip's window mean is its real-frame mean scaled by the fraction of real frames
(a duration cue). Masking the padding removes that cue: it helps at hidden state 3 and hurts at the
last layer (``by_duration.py``). If the explanation holds, duration should add more at the last layer
than at layer 3, also for a pooled classifier that never saw padding.

Each variant is the store's pooled logreg (standardise, L2 logistic regression, C from {0.01, 0.1, 1}
by 3-fold speaker-grouped inner CV on the training speakers) on EmoDB's 10 leave-one-speaker-out folds,
on the clip's own frame mean of one hidden state:

- ``mean``: the clip mean (what masking gives);
- ``mean x fraction``: the clip mean times the real-frame fraction of its 3 s windows (what the padding
  gives a uniform window average, here at the utterance level);
- ``mean + log duration``: the clip mean and log(duration) as an explicit feature;
- ``log duration``: duration alone.

    python benchmarks/duration_cue.py                 # EmoDB, Whisper-base, hidden states 3 and 6 (~1-2 min)
    python benchmarks/duration_cue.py --layers 2 3 4 5 6 --json cue.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # before numpy loads: on a shared small machine more BLAS threads cost ~10x

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emoboost.evaluation.metrics import unweighted_accuracy, weighted_accuracy  # noqa: E402

CS = (0.01, 0.1, 1.0)
WINDOW_S = 3.0


def fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, g_tr: np.ndarray, x_te: np.ndarray) -> np.ndarray:
    """logreg as the store baseline fits it: standardise on training, C by speaker-grouped inner CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-5
    xs, xt = (x_tr - mu) / sd, (x_te - mu) / sd
    scores = {}
    for c in CS:
        s = []
        for tr, va in GroupKFold(n_splits=3).split(xs, y_tr, g_tr):
            clf = LogisticRegression(C=c, max_iter=2000).fit(xs[tr], y_tr[tr])
            s.append(unweighted_accuracy(y_tr[va], clf.predict(xs[va])))
        scores[c] = float(np.mean(s))
    best = max(scores, key=scores.get)
    return LogisticRegression(C=best, max_iter=2000).fit(xs, y_tr).predict(xt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="emodb")
    ap.add_argument("--upstream", default="whisper-base")
    ap.add_argument("--layers", type=int, nargs="+", default=[3, 6])
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)

    from pooled_corpus import load_pooled

    data = load_pooled(args.corpus, args.upstream, list(args.layers))
    manifest, view, y, groups, folds = data.manifest, data.view, data.y, data.groups, data.folds
    dur = np.array([u.duration for u in manifest])
    frac = dur / (np.ceil(dur / WINDOW_S) * WINDOW_S)  # real share of the clip's 3 s windows
    results: dict = {"corpus": args.corpus, "upstream": args.upstream, "folds": len(folds), "rows": {}}
    for layer in args.layers:
        mean = view.pooled([layer])[:, 0]
        variants = {"mean": mean, "mean x fraction": mean * frac[:, None],
                    "mean + log duration": np.concatenate([mean, np.log(dur)[:, None]], 1),
                    "log duration": np.log(dur)[:, None]}
        for name, x in variants.items():
            ua, wa = [], []
            for f in folds:
                tr = np.concatenate([f.train, f.valid])
                pred = fit_predict(x[tr], y[tr], groups[tr], x[f.test])
                ua.append(unweighted_accuracy(y[f.test], pred))
                wa.append(weighted_accuracy(y[f.test], pred))
            results["rows"][f"{layer}|{name}"] = {"layer": layer, "variant": name, "UA": 100 * float(np.mean(ua)),
                                                  "UA_std": 100 * float(np.std(ua)), "WA": 100 * float(np.mean(wa)),
                                                  "UA_per_fold": [100 * v for v in ua]}
            print(f"layer {layer}  {name:<20} UA {100 * np.mean(ua):6.2f} ± {100 * np.std(ua):5.2f}  "
                  f"WA {100 * np.mean(wa):6.2f}", flush=True)
    print(f"\n{args.corpus}, {args.upstream}, {len(folds)} speaker-independent folds, seed-free (deterministic fits)\n")
    print("| hidden state | mean | mean × fraction | mean + log duration | log duration |")
    print("|---|---|---|---|---|")
    for layer in args.layers:
        r = [results["rows"][f"{layer}|{v}"] for v in ("mean", "mean x fraction", "mean + log duration", "log duration")]
        print(f"| {layer} | " + " | ".join(f"{x['UA']:.2f} ± {x['UA_std']:.2f}" for x in r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
