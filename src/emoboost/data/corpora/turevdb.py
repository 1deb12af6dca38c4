"""TurEV-DB (Turkish Emotion-Voice Database): 1735 single words, 6 speakers, 4 emotions.

Layout as released: ``Sound Source/{Angry,Calm,Happy,Sad}/<speaker>_<code>_<word>.wav`` with the
emotion code ``kz`` (angry), ``sk`` (calm), ``mt`` (happy) or ``hl`` (sad); the code must agree with
the folder. The release repository also holds high- and low-pass *filtered copies* of the test words
under the same names (``Model Output for Test Data/.../sound/Angry/...``): when a ``Sound Source``
folder exists below the root, only the files in it are read, so those copies never replace or
duplicate the originals. Without one (the emotion folders copied on their own), every emotion folder
below the root is read.

The speakers are not balanced: ``1157`` recorded only angry and sad words, ``7895`` 29 happy ones.
Leave-one-speaker-out would test 1157 on 2 of the 4 classes, so the default protocol is
``stratified-group-kfold``: 5 speaker-grouped folds, each test fold holding every class (one of the 5
speakers with happy words per fold; 1157 shares a fold with one of them).
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

CODES = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}
PATTERN = re.compile(r"(?P<speaker>\d+)_(?P<code>[a-z]{2})_(?P<word>[^_\s]+)", re.IGNORECASE)
SOURCE = "sound source"

INFO = CorpusInfo(
    name="turevdb",
    classes=tuple(sorted(CODES.values())),
    default_protocol="stratified-group-kfold",
    default_folds=5,
    url="https://github.com/Xeonen/TurEV-DB",
    citation="S. F. Canpolat, Z. Ormanoglu, D. Zeyrek. Turkish Emotion Voice Database (TurEV-DB). Proc. SLTU-CCURL "
             "2020, pp. 368-375.",
    description="TurEV-DB: 1735 acted Turkish single words, 6 speakers, 4 emotions (angry, calm, happy, sad); "
                "5 speaker-grouped folds with every class in every test fold.",
)


def corpus_files(root: Path) -> list[Path]:
    """Audio in emotion folders; only those under a ``Sound Source`` folder when the root has one."""
    files = [p for p in find_audio(root) if p.parent.name.lower() in CODES.values()]
    source = [p for p in files if p.parent.parent.name.lower() == SOURCE]
    return source or files


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse TurEV-DB (the repository, its ``Sound Source`` folder, or the emotion folders)."""
    root = check_root(root, "TurEV-DB")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "TurEV-DB"))

    def add(path: Path, m: re.Match[str]) -> bool:
        code = m["code"].lower()
        if code not in CODES:
            col.skip(path, f"unknown TurEV-DB emotion code {code!r} (expected one of {sorted(CODES)})")
            return False
        if CODES[code] != path.parent.name.lower():
            col.skip(path, f"emotion code {code} ({CODES[code]}) contradicts the folder {path.parent.name}/")
            return True
        col.add(path, id=path.stem, speaker=m["speaker"], label=CODES[code], text=m["word"].lower())
        return True

    return scan_named(root, corpus_files(root), col, PATTERN, "TurEV-DB (e.g. 1157_kz_acik.wav)",
                      "TurEV-DB files (Sound Source/{Angry,Calm,Happy,Sad}/<speaker>_<code>_<word>.wav)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """TurEV-DB manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "TurEV-DB", **options)
