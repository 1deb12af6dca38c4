"""Any corpus described by a CSV file with columns ``path,label,speaker`` (plus optional others).

Relative paths are resolved against the CSV's own folder, so a corpus folder with its CSV can be
moved as a whole; they are normalised (``./x``, ``a/../b``, ``a//b``), so two spellings of one file are
one utterance id (the second is skipped as a duplicate). Optional columns ``id``, ``session``, ``gender``, ``intensity``, ``text`` fill the
manifest fields of the same name; any other column goes to ``extra``. Durations are always read
from the audio headers (a ``duration`` column is ignored: it could be stale). An empty label means
unlabelled (``label=None``, useful for prediction or pretraining lists). Comma, semicolon and tab
delimiters are detected.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from emoboost.data.corpora.base import (
    Collector,
    CorpusInfo,
    CorpusLayoutError,
    Skipped,
    absolute,
    prepare_with,
)
from emoboost.data.manifest import Manifest

REQUIRED_COLUMNS = ("path", "label", "speaker")
FIELD_COLUMNS = ("session", "gender", "intensity", "text")
IGNORED_COLUMNS = ("id", "duration", "corpus")

INFO = CorpusInfo(
    name="csv",
    classes=(),
    default_protocol="group-kfold",
    default_folds=5,
    url=None,
    citation="",
    description="Generic CSV corpus (path,label,speaker[,...]); classes are the distinct labels.",
)


def _read_rows(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(8192)
        f.seek(0)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(f, dialect=dialect)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = list(reader)
    return header, rows


def scan(
    root: str | Path,
    classes: Iterable[str] | None = None,
    corpus: str | None = None,
) -> tuple[Manifest, Skipped]:
    """Parse the CSV at ``root``; ``corpus`` names the rows' corpus (default: the CSV's file stem)."""
    csv_path = absolute(root)
    if not csv_path.exists():
        raise CorpusLayoutError(f"CSV corpus file {csv_path} does not exist")
    if csv_path.is_dir():
        raise CorpusLayoutError(f"CSV corpus expects a .csv file with columns path,label,speaker; {csv_path} "
                                "is a folder")
    header, rows = _read_rows(csv_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{csv_path}: missing required column(s) {missing}; found {header}")
    if not rows:
        raise CorpusLayoutError(f"{csv_path}: no rows below the header")
    keep = None if classes is None else ({classes} if isinstance(classes, str) else set(classes))
    col = Collector(corpus or csv_path.stem, keep)
    base = csv_path.parent
    extra_cols = [c for c in header if c not in REQUIRED_COLUMNS + FIELD_COLUMNS + IGNORED_COLUMNS and c]
    for line, row in enumerate(rows, start=2):
        raw_path = (row.get("path") or "").strip()
        where = f"{csv_path}:{line}"
        if not raw_path:
            col.skip(where, "empty path")
            continue
        path = absolute(base / Path(raw_path).expanduser())
        speaker = (row.get("speaker") or "").strip()
        label = (row.get("label") or "").strip() or None
        # one spelling per file: "./a/x.wav", "b/../a/x.wav" and "a//x.wav" are all the id "a/x"
        utt_id = (row.get("id") or "").strip() or Path(os.path.normpath(raw_path)).with_suffix("").as_posix()
        if not speaker:
            col.skip(path, f"no speaker ({where})")
            continue
        if keep is not None and label not in keep:
            continue
        if not path.is_file():
            col.skip(path, f"file does not exist ({where})")
            continue
        fields = {k: ((row.get(k) or "").strip() or None) for k in FIELD_COLUMNS}
        extra = {k: row[k] for k in extra_cols if row.get(k) not in (None, "")}
        col.add(path, id=utt_id, speaker=speaker, label=label, extra=extra, **fields)
    if keep is not None:
        found = {(r.get("label") or "").strip() for r in rows}
        unknown = sorted(keep - found)
        if unknown:
            raise ValueError(f"{csv_path}: unknown class(es) {unknown}; labels in the CSV: "
                             f"{sorted(found - {''})}")
    return col.result()


def prepare(root: str | Path, **options) -> Manifest:
    """CSV corpus manifest; missing/unreadable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "CSV corpus", **options)
