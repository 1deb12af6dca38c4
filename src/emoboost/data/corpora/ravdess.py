"""RAVDESS speech: 24 actors (12 f, 12 m), 2 English statements, 8 emotions at 2 intensities.

File names ``03-01-EE-II-SS-RR-AA`` = modality (03 audio-only), vocal channel (01 speech, 02 song),
emotion, intensity, statement, repetition, actor; odd actors are male. Only audio-only speech is
loaded (song files in the same tree are ignored on purpose, not reported). The original release is
48 kHz WAV; converted FLAC copies (as in ../shared) are accepted too.

Default protocol: 6 speaker-grouped folds of 4 actors each (every actor is tested exactly once,
with 20 training actors per fold); leave-one-actor-out (24 folds) is selectable in the protocol
layer.
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

EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
            "07": "disgust", "08": "surprised"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
PATTERN = re.compile(r"(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>0[1-8])-(?P<intensity>0[12])"
                     r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d\d)")

INFO = CorpusInfo(
    name="ravdess",
    classes=tuple(sorted(EMOTIONS.values())),
    default_protocol="group-kfold",
    default_folds=6,
    url="https://zenodo.org/records/1188976",
    citation="S. R. Livingstone, F. A. Russo. The Ryerson Audio-Visual Database of Emotional Speech and Song "
             "(RAVDESS). PLoS ONE 13(5): e0196391, 2018.",
    description="RAVDESS audio-only speech: 1440 utterances, 24 actors, 8 emotions (normal/strong intensity); "
                "actor-independent 6-fold grouped CV (4 actors per fold).",
)


def speaker_of(actor: str) -> str:
    """Speaker id as the release folder names it (``Actor_01``), distinct from other corpora's ids."""
    return f"Actor_{actor}"


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse a RAVDESS speech folder (``Actor_NN/*.wav|flac``, any depth)."""
    root = check_root(root, "RAVDESS")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "RAVDESS"))

    def add(path: Path, m: re.Match[str]) -> bool:
        if m["modality"] != "03" or m["channel"] != "01":
            return False  # song or audio-visual material: not part of the speech corpus
        actor = m["actor"]
        if not 1 <= int(actor) <= 24:
            col.skip(path, f"actor {actor} outside 01..24")
            return True
        col.add(path, id=path.stem, speaker=speaker_of(actor), label=EMOTIONS[m["emotion"]],
                gender="m" if int(actor) % 2 == 1 else "f", intensity=INTENSITIES[m["intensity"]],
                text=m["statement"], extra={"repetition": int(m["repetition"])})
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "RAVDESS (e.g. 03-01-05-01-02-01-12)",
                      "RAVDESS speech files (03-01-EE-II-SS-RR-AA.wav|.flac)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """RAVDESS speech manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "RAVDESS", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """Fetch and unpack Audio_Speech_Actors_01-24.zip from Zenodo under ``dest/ravdess``."""
    return download_corpus(INFO.name, dest, url=url, force=force)
