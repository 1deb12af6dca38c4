"""EMOVO: Italian acted emotional speech, 6 actors (f1-f3, m1-m3), 14 sentences, 7 emotions.

Layout: one folder per actor, files ``emo-actor-sentence.wav`` (``dis-f1-b1.wav``); the emotion
codes are Italian (dis gio neu pau rab sor tri). The actor in the file name is authoritative; a file
sitting in another actor's folder is reported, since that means a mixed-up copy.
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

EMOTIONS = {"dis": "disgust", "gio": "joy", "neu": "neutral", "pau": "fear", "rab": "anger", "sor": "surprise",
            "tri": "sadness"}
ACTORS = ("f1", "f2", "f3", "m1", "m2", "m3")
PATTERN = re.compile(r"(?P<emotion>[a-z]{3})-(?P<actor>[fm][1-3])-(?P<sentence>[a-z]\d)", re.IGNORECASE)

INFO = CorpusInfo(
    name="emovo",
    classes=tuple(sorted(EMOTIONS.values())),
    default_protocol="loso",
    default_folds=6,
    url="http://voice.fub.it/activities/corpora/emovo/index.html",
    citation="G. Costantini, I. Iaderola, A. Paoloni, M. Todisco. EMOVO Corpus: an Italian Emotional Speech "
             "Database. Proc. LREC 2014, pp. 3501-3504.",
    description="EMOVO: 588 acted Italian utterances, 6 actors (3 f, 3 m), 7 emotions; leave-one-speaker-out.",
)


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse an EMOVO folder (``<actor>/<emo>-<actor>-<sentence>.wav``)."""
    root = check_root(root, "EMOVO")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "EMOVO"))

    def add(path: Path, m: re.Match[str]) -> bool:
        emo, actor, sentence = m["emotion"].lower(), m["actor"].lower(), m["sentence"].lower()
        if emo not in EMOTIONS:
            col.skip(path, f"unknown EMOVO emotion code {emo!r} (expected one of {sorted(EMOTIONS)})")
            return False
        folder = path.parent.name.lower()
        if folder in ACTORS and folder != actor:
            col.skip(path, f"file of actor {actor} lies in the folder of actor {folder}")
            return True
        col.add(path, id=f"{emo}-{actor}-{sentence}", speaker=actor, label=EMOTIONS[emo], gender=actor[0],
                text=sentence)
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "EMOVO (e.g. dis-f1-b1.wav)",
                      "EMOVO wav files (named like dis-f1-b1.wav)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """EMOVO manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "EMOVO", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """EMOVO has no public direct download; this raises with instructions unless ``url`` is given."""
    return download_corpus(INFO.name, dest, url=url, force=force)
