"""``emoboost benchmark``: several methods × encoders on identical folds, one table."""

from __future__ import annotations

import argparse

from emoboost.cli.corpora import add_cross_corpus_args
from emoboost.experiment.benchmark import DEFAULT_METHODS


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", help="one corpus (default emodb)")
    p.add_argument("--data-root")
    p.add_argument("--manifest")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, help="method specs, e.g. linear:layer=4 msemoboost:guidance=both")
    p.add_argument("--upstreams", nargs="+", default=["whisper-base"])
    p.add_argument("--protocol",
                   choices=["loso", "loso-session", "group-kfold", "stratified-group-kfold", "stratified-kfold"])
    p.add_argument("--folds", type=int)
    p.add_argument("--classes", nargs="+", help="keep only these classes (common names, e.g. anger sadness, when "
                   "several corpora are named)")
    p.add_argument("--store", choices=["auto", "frames", "pooled"],
                   help="what the feature store keeps: auto (frames only when a method reads them), frames, pooled")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--segment-length", type=float, default=3.0)
    p.add_argument("--segment-encoding", choices=["utterance", "segment"], default="utterance",
                   help="SSL store: encode each clip on its own frames (default) or each segment alone (the paper's way)")
    p.add_argument("--out", default=None, help="benchmark directory (default runs/benchmark-<corpus>)")
    p.add_argument("--cache-dir")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 folds, 2 epochs, no t-SNE")
    p.add_argument("--no-save-models", action="store_true")
    p.add_argument("--tsne", action="store_true", help="also plot a t-SNE per entry (off by default: it can cost "
                   "more than the fit)")
    p.add_argument("--plots", action="store_true", help="also draw each entry's confusion.png")
    p.add_argument("--device", default="auto", help="encoder and torch methods: auto (cuda when visible), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-tsne", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--paired", nargs=2, action="append", metavar=("A", "B"), default=[],
                   help="also report A − B per (fold, seed) with a 95%% bootstrap CI and wins; A and B are "
                        "entry labels (label=spec, or the method name; 'label @ upstream' with several upstreams)")
    g = add_cross_corpus_args(p)
    g.add_argument("--corpora", nargs="+", metavar="CORPUS",
                   help="one table over several corpora, each under its own default speaker-independent protocol "
                        "(runs in --out/<corpus>/), with the mean over corpora")
    g.add_argument("--cross-corpus", nargs="+", metavar="CORPUS",
                   help="each corpus as the test corpus, trained on each other one and on all others together, "
                        "beside its in-corpus speaker-independent CV, over the classes all of them share")


def main(args: argparse.Namespace) -> int:
    if args.corpora and args.cross_corpus:
        raise ValueError("--corpora (in-corpus table) and --cross-corpus are two benchmarks; run one at a time")
    if args.corpora or args.cross_corpus:
        from emoboost.experiment.multicorpus import run_corpora, run_cross_corpus

        return run_corpora(args) if args.corpora else run_cross_corpus(args)
    from emoboost.experiment.benchmark import run

    return run(args)
