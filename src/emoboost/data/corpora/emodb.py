"""EmoDB (Berlin Database of Emotional Speech): 10 actors, 10 German sentences, 7 emotions.

File names encode everything: ``03a01Fa.wav`` = speaker ``03``, text ``a01``, emotion letter ``F``,
version ``a``. Gender comes from the public speaker list. The release zip holds the audio in
``wav/``; ``prepare`` accepts that release folder, the ``wav/`` folder itself, or any folder above.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from emoboost.data.corpora.base import (
    Collector,
    CorpusInfo,
    Skipped,
    check_root,
    find_audio,
    normalise_classes,
    prepare_with,
    scan_named,
)
from emoboost.data.download import download_corpus
from emoboost.data.manifest import Manifest

EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
            "N": "neutral"}
GENDERS = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f", "15": "m",
           "16": "f"}
PATTERN = re.compile(r"(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<version>[a-z])")

INFO = CorpusInfo(
    name="emodb",
    classes=tuple(sorted(EMOTIONS.values())),
    default_protocol="loso",
    default_folds=10,
    url="http://emodb.bilderbar.info/",
    citation="F. Burkhardt, A. Paeschke, M. Rolfes, W. Sendlmeier, B. Weiss. A database of German emotional "
             "speech. Proc. Interspeech 2005, pp. 1517-1520.",
    description="Berlin Database of Emotional Speech: 535 acted German utterances, 10 speakers (5 f, 5 m), "
                "7 emotions; leave-one-speaker-out (10 folds).",
)


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse an EmoDB folder: (manifest, [(path, problem)] for files that could not be used)."""
    root = check_root(root, "EmoDB")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "EmoDB"))

    def add(path: Path, m: re.Match[str]) -> bool:
        spk = m["speaker"]
        col.add(path, id=path.stem, speaker=spk, label=EMOTIONS[m["emotion"]], gender=GENDERS.get(spk),
                text=m["text"], extra={"version": m["version"]})
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "EmoDB (e.g. 03a01Fa.wav)",
                      "EmoDB wav files (named like 03a01Fa.wav)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """EmoDB manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "EmoDB", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """Fetch and unpack the public EmoDB zip under ``dest/emodb``; returns the root for :func:`prepare`."""
    return download_corpus(INFO.name, dest, url=url, force=force)
