"""ShEMO (Sharif Emotional Speech Database): 3000 Persian utterances from radio plays, 87 speakers.

Layout: ``root/{female,male}/<file>.wav`` with names like ``F01A01``: gender letter (F/M), speaker
number, emotion letter (A anger, H happiness, N neutral, S sadness, W surprise, F fear) and the
utterance's number within that speaker and emotion (not a sentence id: the speech is semi-natural).
Speaker ids are gender + number (``F01``), since female and male numbering overlap.
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

EMOTIONS = {"A": "anger", "H": "happiness", "N": "neutral", "S": "sadness", "W": "surprise", "F": "fear"}
PATTERN = re.compile(r"(?P<gender>[FM])(?P<number>\d\d)(?P<emotion>[AHNSWF])(?P<index>\d\d)")
GENDER_FOLDERS = {"female": "F", "male": "M"}

INFO = CorpusInfo(
    name="shemo",
    classes=tuple(sorted(EMOTIONS.values())),
    default_protocol="group-kfold",
    default_folds=5,
    url="https://github.com/pariajm/ShEMO",
    citation="O. Mohamad Nezami, P. Jamshid Lou, M. Karami. ShEMO: a large-scale validated database for "
             "Persian speech emotion detection. Language Resources and Evaluation 53(1): 1-16, 2019.",
    description="ShEMO: 3000 semi-natural Persian utterances, 87 speakers (31 f, 56 m), 6 classes; "
                "5 speaker-grouped folds.",
)


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse a ShEMO folder (``female/`` and ``male/`` with ``F01A01.wav``-style files)."""
    root = check_root(root, "ShEMO")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "ShEMO"))

    def add(path: Path, m: re.Match[str]) -> bool:
        g = m["gender"]
        folder_gender = GENDER_FOLDERS.get(path.parent.name.lower())
        if folder_gender is not None and folder_gender != g:
            col.skip(path, f"gender letter {g} contradicts the folder {path.parent.name}/")
            return True
        col.add(path, id=path.stem, speaker=f"{g}{m['number']}", label=EMOTIONS[m["emotion"]], gender=g.lower(),
                extra={"index": int(m["index"])})
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "ShEMO (e.g. F01A01.wav)",
                      "ShEMO wav files (female/F01A01.wav, male/M01N01.wav, ...)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """ShEMO manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "ShEMO", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """ShEMO comes as two archives; this raises with instructions unless ``url`` is given."""
    return download_corpus(INFO.name, dest, url=url, force=force)
