"""Korean emotiontts open DB, emotional part (the public 5 %): 300 clips, 15 speaker folders, 4 emotions.

Layout as released: ``Dataset/SpeechCorpus/Emotional/{plain-to-emotional,emotional-to-emotional}/
<spk>/wav/<spk>NNNNN.wav`` (22.05 kHz). The emotion is the index range: 00001-00100 neutral,
00101-00200 joy, 00201-00300 anger, 00301-00400 sad. Only files below one of the two part folders
are read: the repository's ``Main/`` and ``Personality/`` corpora use the same ``<spk>/wav/`` shape
without emotion labels. The root may be the repository or any folder down to a part folder.

Speaker folders are ``em<L>`` (plain script read with an emotion) and ``ne<L>`` (emotional script);
the release describes both ``ema`` and ``nea`` as "speaker A (female)", and the letters A-E are the
female, F-O the male speakers. The letter is therefore the speaker id, so a speaker who recorded
both parts (A, B) is never on both sides of a fold; were they different people, merging them would
only make the folds coarser. The public part then has 13 speakers (5 f, 8 m); the default protocol
is 5 speaker-grouped folds, balanced by gender.
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

EMOTIONS = ("neutral", "joy", "anger", "sad")
"""In index order: 100 sentences each."""
PARTS = ("plain-to-emotional", "emotional-to-emotional")
PATTERN = re.compile(r"(?P<folder>(?P<part>em|ne)(?P<letter>[a-z]))(?P<index>\d{5})", re.IGNORECASE)
FEMALE = "abcde"

INFO = CorpusInfo(
    name="emotiontts",
    classes=tuple(sorted(EMOTIONS)),
    default_protocol="group-kfold",
    default_folds=5,
    url="https://github.com/emotiontts/emotiontts_open_db",
    citation="emotiontts open DB (SELVAS AI / KAIST), Ministry of Trade, Industry & Energy (MOTIE, Korea) "
             "Industrial Technology Innovation Program No. 10080667.",
    description="Korean emotiontts open DB, emotional part (public 5 %): 300 clips, 13 speakers (5 f, 8 m), "
                "4 emotions; 5 speaker-grouped folds.",
)


def corpus_files(root: Path) -> list[Path]:
    """``<part>/<spk>/wav/*.wav|flac`` files: the emotional corpus, not the repository's other corpora."""
    return [p for p in find_audio(root)
            if p.parent.name.lower() == "wav" and p.parent.parent.parent.name.lower() in PARTS]


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse the emotional part of the emotiontts open DB (see the module docstring for the layout)."""
    root = check_root(root, "emotiontts")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "emotiontts"))

    def add(path: Path, m: re.Match[str]) -> bool:
        folder, index = m["folder"].lower(), int(m["index"])
        if folder != path.parent.parent.name.lower():
            col.skip(path, f"file of speaker folder {folder} lies in {path.parent.parent.name}/")
            return True
        if not 1 <= index <= 100 * len(EMOTIONS):
            col.skip(path, f"index {m['index']} outside 00001-00400")
            return True
        letter = m["letter"].lower()
        col.add(path, id=path.stem.lower(), speaker=letter.upper(), label=EMOTIONS[(index - 1) // 100],
                gender="f" if letter in FEMALE else "m",
                extra={"part": path.parent.parent.parent.name.lower(), "index": index})
        return True

    return scan_named(root, corpus_files(root), col, PATTERN, "emotiontts (e.g. nea00001.wav)",
                      "emotiontts files (Emotional/{plain-to-emotional,emotional-to-emotional}/<spk>/wav/"
                      "<spk>NNNNN.wav)", add)


def prepare(root: str | Path, **options) -> Manifest:
    """emotiontts manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "emotiontts", **options)
