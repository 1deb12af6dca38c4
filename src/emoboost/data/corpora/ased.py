"""ASED (Amharic Speech Emotion Dataset) v1: 2474 judged recordings, 65 speakers, 5 emotions.

Layout as released: ``01Neutral 02Fearful 03Happy 04Sad 05Angry`` with files
``<e><k>-<ss>-<rr>-<gg>-<bb>.wav``: emotion letter ``e`` (n f h s a) and its folder number ``k``,
sentence ``ss``, repetition ``rr``, gender ``gg`` (01 female, 02 male) and speaker ``bb`` (01..65).
Letters are matched case-insensitively (one released file is named ``S4-...``); ids are the
lower-cased file names.

The speaker is the number ``bb`` alone, not gender + number. The release numbers its 65 speakers
(25 f, 40 m) 01..65, and the five numbers that occur under both gender codes (09 15 21 23 25) do so
with exactly one file under the minority code: a typo in that file's gender, not a second person.
Gender + number would split each of those speakers into two, so one person could be trained and
tested on in the same fold, and add five one-file "speakers". Each utterance's ``gender`` is
therefore its speaker's majority code; the code in the file name is kept in ``extra["gender_code"]``.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
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

EMOTIONS = {"n": ("neutral", 1), "f": ("fearful", 2), "h": ("happy", 3), "s": ("sad", 4), "a": ("angry", 5)}
GENDERS = {"01": "f", "02": "m"}
PATTERN = re.compile(r"(?P<emotion>[nfhsa])(?P<folder>\d)-(?P<sentence>\d\d)-(?P<repetition>\d\d)-"
                     r"(?P<gender>0[12])-(?P<speaker>\d\d)", re.IGNORECASE)
FOLDER = re.compile(r"0(?P<number>[1-5])(?P<name>[a-z]+)", re.IGNORECASE)

INFO = CorpusInfo(
    name="ased",
    classes=tuple(sorted(label for label, _ in EMOTIONS.values())),
    default_protocol="group-kfold",
    default_folds=5,
    url="https://github.com/wgwangang/ASED_V1",
    citation="E. A. Retta, E. Almekhlafi, R. Sutcliffe, M. Mhamed, H. Ali, J. Feng. A new Amharic speech "
             "emotion dataset and classification benchmark. ACM Trans. Asian and Low-Resource Language "
             "Information Processing 22(1), 2023. doi:10.1145/3529759",
    description="ASED v1: 2474 Amharic recordings, 65 speakers (25 f, 40 m), 5 emotions; 5 speaker-grouped "
                "folds.",
)


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse an ASED folder (``05Angry/a5-03-01-02-50.wav``, any depth)."""
    root = check_root(root, "ASED")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "ASED"))

    def add(path: Path, m: re.Match[str]) -> bool:
        label, number = EMOTIONS[m["emotion"].lower()]
        folder = FOLDER.fullmatch(path.parent.name)
        if int(m["folder"]) != number or (folder is not None and int(folder["number"]) != number):
            col.skip(path, f"emotion {m['emotion']}{m['folder']} contradicts its folder number or the folder "
                           f"{path.parent.name}/")
            return True
        col.add(path, id=path.stem.lower(), speaker=m["speaker"], label=label, gender=GENDERS[m["gender"]],
                extra={"sentence": m["sentence"], "repetition": int(m["repetition"]), "gender_code": m["gender"]})
        return True

    manifest, skipped = scan_named(root, find_audio(root), col, PATTERN, "ASED (e.g. a5-03-01-02-50.wav)",
                                   "ASED files (05Angry/a5-03-01-02-50.wav, ...)", add)
    return speaker_gender(manifest), skipped


def speaker_gender(manifest: Manifest) -> Manifest:
    """Every utterance gets its speaker's majority gender (see the module docstring)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for u in manifest:
        votes[u.speaker][u.gender] += 1
    return Manifest([dataclasses.replace(u, gender=votes[u.speaker].most_common(1)[0][0]) for u in manifest])


def prepare(root: str | Path, **options) -> Manifest:
    """ASED manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "ASED", **options)
