"""URDU: 400 Urdu utterances cut from TV talk shows, 4 emotions (100 each), unbalanced speakers.

Layout as released: ``{Angry,Happy,Neutral,Sad}/S<G><id>_F<n>_<E><nn>.wav``: speaker ``S<G><id>``
(G = M/F, the release says the id stays the same for a speaker across emotions), the speaker's file
number ``n``, the emotion letter ``E`` (A H N S) and the file's number within its emotion. The file
name is authoritative; a file whose letter contradicts its emotion folder is reported.

The file names hold 29 speaker ids (the paper counts 38 speakers), and most of them occur in one
emotion only: anger comes from 4 speakers, one of whom holds 72 of the 100 neutral clips. Plain
speaker-grouped folds then leave a class out of some test folds, so the default protocol is
``stratified-group-kfold``: 4 speaker-grouped folds in which every test fold holds every class (4 is
the most the 4 angry speakers allow). The speech is spontaneous, so there is no text id.
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
from emoboost.data.manifest import Manifest

EMOTIONS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
PATTERN = re.compile(r"S(?P<gender>[MF])(?P<number>\d+)_F(?P<file>\d+)_(?P<emotion>[AHNS])(?P<index>\d+)",
                     re.IGNORECASE)

INFO = CorpusInfo(
    name="urdu",
    classes=tuple(sorted(EMOTIONS.values())),
    default_protocol="stratified-group-kfold",
    default_folds=4,
    url="https://github.com/siddiquelatif/URDU-Dataset",
    citation="S. Latif, A. Qayyum, M. Usman, J. Qadir. Cross lingual speech emotion recognition: Urdu vs. "
             "Western languages. Proc. FIT 2018, pp. 88-93.",
    description="URDU: 400 Urdu talk-show utterances, 29 speaker ids (very unbalanced), 4 emotions; 4 "
                "speaker-grouped folds with every class in every test fold.",
)


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse an URDU folder (``Angry/SM1_F1_A01.wav``, any depth)."""
    root = check_root(root, "URDU")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "URDU"))
    folders = {label: label for label in EMOTIONS.values()}

    def add(path: Path, m: re.Match[str]) -> bool:
        label = EMOTIONS[m["emotion"].upper()]
        folder = folders.get(path.parent.name.lower())
        if folder is not None and folder != label:
            col.skip(path, f"emotion letter {m['emotion']} contradicts the folder {path.parent.name}/")
            return True
        gender = m["gender"].upper()
        col.add(path, id=path.stem, speaker=f"S{gender}{int(m['number'])}", label=label, gender=gender.lower(),
                extra={"file": int(m["file"]), "index": int(m["index"])})
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "URDU (e.g. SM1_F1_A01.wav)",
                      "URDU files ({Angry,Happy,Neutral,Sad}/S<G><id>_F<n>_<E><nn>.wav)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """URDU manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "URDU", **options)
