"""nEMO (Polish, acted): 4481 utterances, 9 actors, 6 emotional states, 24 kHz.

Layout as released (the GitHub repository): ``data.tsv`` beside ``samples/<SPK>_<emotion>_<n>.wav``.
The TSV has columns ``file_id emotion raw_text normalized_text speaker_id gender age``; its speaker
ids carry leading spaces, so every field is stripped. Labels, speaker, gender and age come from the
TSV; ``n`` (the same sentence for every actor and emotion) is the text id and the transcripts go to
``extra``. A row whose file name contradicts its speaker or emotion column, or whose file is missing,
is reported, as is any audio file in ``samples/`` that the TSV does not list.

The root may be the release folder, its ``samples/`` folder, or a folder holding the release folder
(e.g. ``nEMO-main/`` unpacked from an archive). The Hugging Face copy stores the audio in Parquet
files and is not read; use the GitHub release.

Default protocol: leave-one-speaker-out (9 folds). The speakers are not quite balanced: MK0 recorded
no ``surprised`` clips (its fold tests 5 classes) and MP0 only 256 clips.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

from emoboost.data.corpora.base import (
    Collector,
    CorpusInfo,
    CorpusLayoutError,
    Skipped,
    check_root,
    find_audio,
    normalise_classes,
    prepare_with,
)
from emoboost.data.manifest import Manifest

EMOTIONS = ("anger", "fear", "happiness", "neutral", "sadness", "surprised")
GENDERS = {"female": "f", "male": "m"}
REQUIRED_COLUMNS = ("file_id", "emotion", "speaker_id")
PATTERN = re.compile(r"(?P<speaker>[A-Za-z0-9]+)_(?P<emotion>[a-z]+)_(?P<sentence>\d+)")
LAYOUT = "data.tsv beside samples/<SPK>_<emotion>_<n>.wav"

INFO = CorpusInfo(
    name="nemo",
    classes=EMOTIONS,
    default_protocol="loso",
    default_folds=9,
    url="https://github.com/amu-cai/nEMO",
    citation="I. Christop. nEMO: Dataset of Emotional Speech in Polish. Proc. LREC-COLING 2024 "
             "(aclanthology.org/2024.lrec-main.1059).",
    description="nEMO: 4481 acted Polish utterances, 9 speakers (4 f, 5 m), 6 emotional states; "
                "leave-one-speaker-out (9 folds).",
)


def find_release(root: Path) -> Path:
    """The folder holding ``data.tsv`` and ``samples/``: the root, its parent, or one of its sub-folders."""
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in (root, root.parent, *subfolders):
        if (folder / "data.tsv").is_file() and (folder / "samples").is_dir():
            return folder
    raise CorpusLayoutError(f"no nEMO release ({LAYOUT}) in {root}, its parent or its sub-folders")


def read_rows(tsv: Path) -> list[dict[str, str]]:
    """data.tsv rows with every field stripped (tab-separated; quotes are text, not quoting)."""
    with open(tsv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{tsv}: missing column(s) {missing}; found {header}")
        reader.fieldnames = header
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def scan(root: str | Path, classes: Iterable[str] | None = None) -> tuple[Manifest, Skipped]:
    """Parse an nEMO release (``data.tsv`` + ``samples/``); see the module docstring for the roots accepted."""
    release = find_release(check_root(root, "nEMO"))
    col = Collector(INFO.name, normalise_classes(classes, INFO.classes, "nEMO"))
    tsv, samples = release / "data.tsv", release / "samples"
    rows = read_rows(tsv)
    if not rows:
        raise CorpusLayoutError(f"{tsv}: no rows below the header")
    listed = set()
    for line, row in enumerate(rows, start=2):
        name, label, speaker = row["file_id"], row["emotion"], row["speaker_id"]
        path = samples / name
        listed.add(name)
        where = f"{tsv.name}:{line}"
        m = PATTERN.fullmatch(Path(name).stem)
        if m is None or label not in EMOTIONS or m["speaker"] != speaker or m["emotion"] != label:
            col.skip(path, f"{where}: file name, speaker_id {speaker!r} and emotion {label!r} disagree or the "
                           f"emotion is not one of {list(EMOTIONS)}")
            continue
        if col.classes is not None and label not in col.classes:
            continue
        if not path.is_file():
            col.skip(path, f"listed in {where} but the file is missing")
            continue
        extra = {k: row[k] for k in ("raw_text", "normalized_text") if row.get(k)}
        if row.get("age", "").isdigit():
            extra["age"] = int(row["age"])
        col.add(path, id=Path(name).stem, speaker=speaker, label=label,
                gender=GENDERS.get(row.get("gender", "").lower()), text=m["sentence"], extra=extra)
    for path in find_audio(samples, recursive=False):
        if path.name not in listed:
            col.skip(path, f"not listed in {tsv.name}")
    return col.result()


def prepare(root: str | Path, **options) -> Manifest:
    """nEMO manifest; unusable rows and files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "nEMO", **options)
