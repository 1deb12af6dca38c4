"""CASIA (Mandarin, acted), public subset: 4 actors x 6 emotions x the same 50 sentences = 1200 clips.

Layout as released: ``<speaker>/<emotion>/<201..250>.wav`` (FLAC copies are read the same way). The
speaker and the emotion are folder names; the file name is the sentence number, the same 50
sentences for every speaker and emotion, so it serves as the text id. Both labels are read from each
file's own two parent folders, so the root may be the corpus folder or any folder above it. Folder
names are matched case-insensitively (copies differ, e.g. ``Angry/``); speaker ids keep the spelling
of the release (``ZhaoZuoxiang``).

Gender follows the corpus description (two female, two male actors). With four speakers, the default
protocol is leave-one-speaker-out: 4 folds, each training on 3 actors.
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

EMOTIONS = ("angry", "fear", "happy", "neutral", "sad", "surprise")
SPEAKERS = {"liuchanhg": "f", "wangzhe": "m", "zhaoquanyin": "f", "ZhaoZuoxiang": "m"}
PATTERN = re.compile(r"(?P<sentence>\d+)")
LAYOUT = "<speaker>/<emotion>/<201..250>.flac|.wav"

INFO = CorpusInfo(
    name="casia",
    classes=EMOTIONS,
    default_protocol="loso",
    default_folds=4,
    url="https://aistudio.baidu.com/aistudio/datasetdetail/209512",
    citation="J. Tao, F. Liu, M. Zhang, H. Jia. Design of speech corpus for Mandarin text to speech. "
             "Proc. Blizzard Challenge 2008 workshop.",
    description="CASIA public subset: 1200 acted Mandarin utterances, 4 speakers (2 f, 2 m), 6 emotions, "
                "the same 50 sentences; leave-one-speaker-out (4 folds).",
)

_EMOTION_FOLDERS = {e: e for e in EMOTIONS}
_SPEAKER_FOLDERS = {s.lower(): s for s in SPEAKERS}


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse a CASIA folder (``<speaker>/<emotion>/<sentence>.wav|flac``, at any depth below ``root``)."""
    root = check_root(root, "CASIA")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "CASIA"))

    def add(path: Path, m: re.Match[str]) -> bool:
        emotion = _EMOTION_FOLDERS.get(path.parent.name.lower())
        if emotion is None:
            col.skip(path, f"not in a CASIA emotion folder ({LAYOUT})")
            return False
        folder = path.parent.parent.name
        speaker = _SPEAKER_FOLDERS.get(folder.lower(), folder)
        sentence = m["sentence"]
        col.add(path, id=f"{speaker}_{emotion}_{sentence}", speaker=speaker, label=emotion,
                gender=SPEAKERS.get(speaker), text=sentence)
        return True

    return scan_named(root, find_audio(root), col, PATTERN, "CASIA (<sentence number>.wav, e.g. 201.flac)",
                      f"CASIA files ({LAYOUT}; emotion folders {' '.join(EMOTIONS)})", add)


def prepare(root: str | Path, **options) -> Manifest:
    """CASIA manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "CASIA", **options)
