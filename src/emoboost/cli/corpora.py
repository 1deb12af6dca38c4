"""The flags that name several corpora (``run`` and ``benchmark``); light: no heavy imports."""

from __future__ import annotations

import argparse


def add_cross_corpus_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--train/--test``, ``--leave-one-corpus-out`` and ``--label-map`` (docs/corpora.md, "Across corpora")."""
    g = p.add_argument_group("across corpora (each read from its default place; labels mapped to common names, "
                             "the classes all of them share kept)")
    g.add_argument("--train", nargs="+", metavar="CORPUS",
                   help="cross-corpus: train on these corpora (validation from their held-out speakers) ...")
    g.add_argument("--test", metavar="CORPUS", help="... and test on this one")
    g.add_argument("--leave-one-corpus-out", nargs="+", metavar="CORPUS",
                   help="each corpus in turn tested by a model trained on the others (one fold per corpus)")
    g.add_argument("--label-map", metavar="FILE",
                   help="YAML/JSON: corpus label -> common name (or corpus -> {label: name}; null drops a "
                        "label), over the built-in map (angry->anger, happy/joy->happiness, sad->sadness, "
                        "fearful->fear, surprised->surprise, ...)")
    return g
