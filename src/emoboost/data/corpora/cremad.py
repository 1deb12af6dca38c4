"""CREMA-D: 7442 clips from 91 actors (48 m, 43 f), 12 English sentences, 6 emotions.

Layout: ``AudioWAV/1001_DFA_ANG_XX.wav`` = actor, sentence code, emotion (ANG DIS FEA HAP NEU SAD),
intensity level (LO MD HI, or XX = unspecified, stored as ``intensity=None`` with the raw code in
``extra["level"]``). Gender is not in the file name; it is read from ``VideoDemographics.csv`` (as in
the release repository) when found next to ``AudioWAV`` or given with ``demographics=``.

Known upstream problems are left to the header check rather than hard-coded: clips that cannot be
read (e.g. git-lfs pointer files when the clone skipped LFS) are reported as skipped; the near-empty
``1076_MTI_SAD_XX`` is kept when its header is valid, and callers may drop it by id.
"""

from __future__ import annotations

import csv
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

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": None, "X": None}
SENTENCES = ("DFA", "IEO", "IOM", "ITH", "ITS", "IWL", "IWW", "MTI", "TAI", "TIE", "TSI", "WSI")
PATTERN = re.compile(r"(?P<actor>1\d\d\d)_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{1,2})")

INFO = CorpusInfo(
    name="cremad",
    classes=tuple(sorted(EMOTIONS.values())),
    default_protocol="group-kfold",
    default_folds=5,
    url="https://github.com/CheyneyComputerScience/CREMA-D",
    citation="H. Cao, D. G. Cooper, M. K. Keutmann, R. C. Gur, A. Nenkova, R. Verma. CREMA-D: Crowd-sourced "
             "Emotional Multimodal Actors Dataset. IEEE Trans. Affective Computing 5(4): 377-390, 2014.",
    description="CREMA-D: 7442 acted English clips, 91 actors, 6 emotions with intensity levels; "
                "5 speaker-grouped folds.",
)


def read_demographics(path: Path) -> dict[str, str]:
    """ActorID -> 'f'/'m' from VideoDemographics.csv (columns ActorID, Age, Sex, ...)."""
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "ActorID" not in reader.fieldnames or "Sex" not in reader.fieldnames:
            raise ValueError(f"{path}: expected columns ActorID and Sex, found {reader.fieldnames}")
        for row in reader:
            sex = (row.get("Sex") or "").strip().lower()
            if sex in ("male", "female"):
                out[str(row["ActorID"]).strip()] = sex[0]
    return out


def _find_demographics(root: Path, audio_dir: Path) -> Path | None:
    for folder in dict.fromkeys((root, audio_dir, audio_dir.parent, root.parent)):
        p = folder / "VideoDemographics.csv"
        if p.is_file():
            return p
    return None


def scan(root: str | Path, classes: Iterable[str] | None = None,
         demographics: str | Path | None = None) -> tuple[Manifest, Skipped]:
    """Parse CREMA-D (the release folder holding ``AudioWAV/``, or ``AudioWAV/`` itself)."""
    root = check_root(root, "CREMA-D")
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "CREMA-D"))
    audio_dir = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    demo_path = Path(demographics) if demographics is not None else _find_demographics(root, audio_dir)
    if demographics is not None and not demo_path.is_file():
        raise FileNotFoundError(f"CREMA-D demographics file {demo_path} does not exist")
    genders = read_demographics(demo_path) if demo_path is not None else {}

    def add(path: Path, m: re.Match[str]) -> bool:
        emo, level = m["emotion"], m["level"]
        if emo not in EMOTIONS or level not in LEVELS:
            col.skip(path, f"unknown CREMA-D emotion {emo!r} or level {level!r}")
            return False
        actor = m["actor"]
        col.add(path, id=path.stem, speaker=actor, label=EMOTIONS[emo], gender=genders.get(actor),
                intensity=LEVELS[level], text=m["sentence"], extra={"level": "XX" if level == "X" else level})
        return True

    return scan_named(root, find_audio(audio_dir, recursive=False), col, PATTERN,
                      "CREMA-D (e.g. 1001_DFA_ANG_XX.wav)", "CREMA-D wav files (AudioWAV/1001_DFA_ANG_XX.wav, ...)",
                      add)


def prepare(root: str | Path, **options) -> Manifest:
    """CREMA-D manifest; unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "CREMA-D", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """CREMA-D is distributed through git-lfs; this raises with instructions unless ``url`` is given."""
    return download_corpus(INFO.name, dest, url=url, force=force)
