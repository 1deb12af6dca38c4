"""TESS (Toronto Emotional Speech Set): 2 actresses (aged 26 and 64), 200 words, 7 emotions.

Layout: folders ``OAF_angry``, ``YAF_pleasant_surprised``, ... with files ``OAF_back_angry.wav``
(speaker, word, emotion). Pleasant surprise is written ``ps`` in file names and
``pleasant_surprise(d)`` in folder names; both become ``surprise``. Folder names vary in case between
copies (``OAF_Fear``), so matching is case-insensitive. The label is read from the file name and
checked against the folder when the folder names an emotion.

With two speakers the only speaker-independent protocol is train on one, test on the other.
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

EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "sad": "sad", "ps": "surprise", "pleasant_surprise": "surprise", "pleasant_surprised": "surprise"}
PATTERN = re.compile(r"(?P<speaker>OAF|YAF)_(?P<word>[A-Za-z']+)_(?P<emotion>[A-Za-z_]+)", re.IGNORECASE)
FOLDER = re.compile(r"(?P<speaker>OAF|YAF)_(?P<emotion>[A-Za-z_ -]+)", re.IGNORECASE)

INFO = CorpusInfo(
    name="tess",
    classes=tuple(sorted(set(EMOTIONS.values()))),
    default_protocol="loso",
    default_folds=2,
    url="https://doi.org/10.5683/SP2/E8H2MF",
    citation="K. Dupuis, M. K. Pichora-Fuller. Toronto emotional speech set (TESS). University of Toronto, "
             "Psychology Department, 2010. doi:10.5683/SP2/E8H2MF",
    description="TESS: 2800 utterances ('Say the word ...'), 2 female speakers (OAF, YAF), 7 emotions; "
                "leave-one-speaker-out (2 folds).",
)


def _emotion(code: str) -> str | None:
    return EMOTIONS.get(code.lower().replace("-", "_").replace(" ", "_"))


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse a TESS folder (``OAF_angry/OAF_back_angry.wav``, any depth)."""
    root = check_root(root, "TESS")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "TESS"))

    def add(path: Path, m: re.Match[str]) -> bool:
        label = _emotion(m["emotion"])
        if label is None:
            col.skip(path, f"unknown TESS emotion {m['emotion']!r} in the file name")
            return False
        speaker = m["speaker"].upper()
        fm = FOLDER.fullmatch(path.parent.name)
        if fm is not None and _emotion(fm["emotion"]) is not None:
            if _emotion(fm["emotion"]) != label or fm["speaker"].upper() != speaker:
                col.skip(path, f"file name ({speaker}, {label}) contradicts its folder {path.parent.name}/")
                return True
        col.add(path, id=f"{speaker}_{m['word'].lower()}_{m['emotion'].lower()}", speaker=speaker, label=label,
                gender="f", text=m["word"].lower(), extra={"age_group": "older" if speaker == "OAF" else "younger"})
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "TESS (e.g. OAF_back_angry.wav)",
                      "TESS wav files (OAF_angry/OAF_back_angry.wav, ...)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """TESS manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "TESS", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """TESS has no stable direct download; this raises with instructions unless ``url`` is given."""
    return download_corpus(INFO.name, dest, url=url, force=force)
