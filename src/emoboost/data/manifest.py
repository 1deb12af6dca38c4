"""Manifests: a corpus as plain data (one row per utterance), serialised as JSONL or CSV.

Emotion corpora are small, so manifests are eager lists. Paths are stored as given (absolute by
default) so a manifest written on one machine can be re-rooted with :meth:`Manifest.rebase`, but
normalised (``./x``, ``a/../b`` and ``a//b`` become ``x``, ``b`` and ``a/b``, as the corpus scans write
them): every later step (skipped lists, the store, the reports) names a file by one spelling.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from emoboost.utils import atomic_write_text

REQUIRED = ("id", "path", "speaker", "label", "duration", "corpus")
OPTIONAL = ("session", "gender", "intensity", "text")


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``speaker`` is the grouping unit for speaker-independent folds."""

    id: str
    path: str
    speaker: str
    label: str | None
    duration: float
    corpus: str
    session: str | None = None
    gender: str | None = None
    intensity: str | None = None
    text: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Utterance:
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ValueError(f"manifest row {d.get('id', '?')!r} lacks required field(s) {missing}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known and k != "extra"}
        extra = dict(d.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        for k in OPTIONAL + ("label",):
            if kwargs.get(k) in ("", None):
                kwargs[k] = None
            elif kwargs.get(k) is not None:
                kwargs[k] = str(kwargs[k])
        kwargs["id"] = str(kwargs["id"])
        kwargs["speaker"] = str(kwargs["speaker"])
        try:
            kwargs["duration"] = float(kwargs["duration"])
        except (TypeError, ValueError):
            raise ValueError(f"manifest row {kwargs['id']!r}: duration {kwargs['duration']!r} is not a number") from None
        kwargs["path"] = normalise_path(kwargs["path"], kwargs["id"])
        return cls(**kwargs, extra=extra)


def normalise_path(path: object, utt_id: str = "?") -> str:
    """A manifest path in one spelling (``os.path.normpath``: ``.``, ``..`` and repeated ``/`` collapsed,
    as :func:`emoboost.data.corpora.base.absolute` does for scanned corpora); empty paths are refused."""
    text = "" if path is None else str(path).strip()
    if not text:
        raise ValueError(f"manifest row {utt_id!r} has an empty path")
    return os.path.normpath(os.path.expanduser(text))


class Manifest:
    """An ordered, id-unique list of :class:`Utterance`."""

    def __init__(self, utterances: Iterable[Utterance]):
        self.utterances: list[Utterance] = list(utterances)
        seen: set[str] = set()
        for u in self.utterances:
            if u.id in seen:
                raise ValueError(f"duplicate utterance id {u.id!r} in manifest")
            seen.add(u.id)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, i: int) -> Utterance:
        return self.utterances[i]

    def __repr__(self) -> str:
        corpora = sorted({u.corpus for u in self})
        return f"Manifest({len(self)} utterances, corpora={corpora}, speakers={len(self.speakers())})"

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self]

    def filter(self, fn: Callable[[Utterance], bool]) -> Manifest:
        return Manifest(u for u in self if fn(u))

    def digest(self) -> str:
        """SHA-256 of every field of every utterance, in order: equal digests, equal manifests (a label
        edited in a CSV under the same path changes it)."""
        import hashlib

        h = hashlib.sha256()
        for u in self:
            h.update(json.dumps(u.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
        return h.hexdigest()

    def subset(self, ids: Iterable[str]) -> Manifest:
        wanted = set(ids)
        return Manifest(u for u in self if u.id in wanted)

    def groups(self, key: str = "speaker") -> np.ndarray:
        vals = [getattr(u, key) if hasattr(u, key) else u.extra.get(key) for u in self]
        if any(v is None for v in vals):
            raise ValueError(f"some utterances have no {key!r}; cannot group by it")
        return np.asarray(vals, dtype=object).astype(str)

    def labels(self) -> list[str]:
        """Sorted distinct labels (the class order every method and report uses)."""
        return sorted({u.label for u in self if u.label is not None})

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self})

    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(u.label for u in self).items(), key=lambda kv: str(kv[0])))

    def map_labels(self, mapping: dict[str, str | None]) -> Manifest:
        """Relabel; labels mapped to ``None`` are dropped (e.g. IEMOCAP 'fru' in 4-class)."""
        out = []
        for u in self:
            new = mapping.get(u.label, u.label) if u.label is not None else None
            if new is not None:
                out.append(replace(u, label=new))
        return Manifest(out)

    def rebase(self, old_root: str, new_root: str) -> Manifest:
        return Manifest(replace(u, path=u.path.replace(old_root, new_root, 1)) for u in self)

    # ---- serialisation -------------------------------------------------------------------
    def write(self, path: str | Path) -> Path:
        """Atomic write (an OSError names ``path``); format from suffix (.jsonl or .csv)."""
        path = Path(path)
        buf = io.StringIO(newline="")
        if path.suffix == ".csv":
            cols = list(REQUIRED + OPTIONAL)
            w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for u in self:
                w.writerow({k: ("" if v is None else v) for k, v in u.to_dict().items()})
        else:
            for u in self:
                buf.write(json.dumps(u.to_dict(), ensure_ascii=False) + "\n")
        return atomic_write_text(path, buf.getvalue())

    @classmethod
    def read(cls, path: str | Path, skipped: list[tuple[str, str]] | None = None) -> Manifest:
        """A manifest file (.jsonl or .csv). A bad row (not JSON, a required field missing, an empty path,
        a duration that is not a number, an id given twice) raises one line naming the file and line, or,
        when a ``skipped`` list is given, is left out and listed there as ``("<file>:<line>", problem)``,
        so a corpus run finishes the good rows and reports the bad ones."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"manifest {path} does not exist")
        utts: list[Utterance] = []
        seen: dict[str, int] = {}

        def problem(line: int, what: str) -> None:
            if skipped is None:
                raise ValueError(f"{path}:{line}: {what}")
            skipped.append((f"{path}:{line}", what))

        for n, row in _rows(path):
            if isinstance(row, str):
                problem(n, row)
                continue
            try:
                u = Utterance.from_dict(row)
            except ValueError as e:
                problem(n, str(e))
                continue
            if u.id in seen and skipped is not None:
                problem(n, f"duplicate utterance id {u.id!r} (already on line {seen[u.id]})")
                continue
            seen[u.id] = n
            utts.append(u)
        return cls(utts)

    @classmethod
    def concat(cls, manifests: Iterable[Manifest]) -> Manifest:
        return cls(u for m in manifests for u in m)


def _rows(path: Path) -> Iterator[tuple[int, dict | str]]:
    """(line number, row dict) of a .csv or .jsonl manifest; a line that is no row gives its problem instead."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            yield from enumerate(csv.DictReader(f), start=2)
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield n, f"not valid JSON ({e})"
                continue
            yield n, row if isinstance(row, dict) else f"not a JSON object ({type(row).__name__})"


def warn_duration_outliers(manifest: Manifest, factor: float = 20.0) -> list[str]:
    """Warn about clips far longer than the corpus's median (a 1-hour file among 3 s utterances)."""
    import logging

    log = logging.getLogger("emoboost")
    d = np.array([u.duration or 0.0 for u in manifest])
    med = float(np.median(d)) if len(d) else 0.0
    if not med > 0:
        return []
    out = [f"{u.path} ({u.duration:.0f} s)" for u in manifest if (u.duration or 0) > factor * max(med, 1.0)]
    if out:
        log.warning("%d clip(s) are over %gx the median duration (%.1f s): %s; segment methods use at most "
                    "max_segments_per_utt training windows per clip, pooled methods weight every clip equally",
                    len(out), factor, med, "; ".join(out[:5]))
    return out
