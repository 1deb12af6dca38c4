"""Several corpora as one manifest: labels mapped to common names, the shared classes, prefixed ids.

Cross-corpus experiments (train on some corpora, test on another) need one vocabulary: RAVDESS says
``angry`` where EmoDB says ``anger``. :data:`BUILTIN` maps the usual names to one common name each
(anger/angry, happiness/happy/joy, sadness/sad, neutral, fear/fearful, disgust/disgusted,
surprise/surprised, calm, boredom/bored). A user map file (YAML or JSON) adds or overrides entries,
for every corpus or per corpus::

    excited: happiness          # every corpus
    frustrated: null            # null drops the label
    iemocap:                    # this corpus only (wins over the lines above)
      exc: happiness

Only the classes every merged corpus has are kept (calm and boredom therefore only where both sides
have them; calm is never folded into neutral). What each corpus lost is recorded, so every report can
say which labels were left out. Ids, speakers and sessions are prefixed with the corpus name
(``ravdess/Actor_01``): two corpora can never collide, and speaker independence across corpora
follows from it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from emoboost.data.manifest import Manifest

SYNONYMS: dict[str, tuple[str, ...]] = {
    "anger": ("angry", "ang"),
    "happiness": ("happy", "joy", "hap"),
    "sadness": ("sad",),
    "neutral": ("neu",),
    "fear": ("fearful", "fea"),
    "disgust": ("disgusted", "dis"),
    "surprise": ("surprised", "sur"),
    "calm": (),
    "boredom": ("bored",),
}
BUILTIN: dict[str, str] = {s: common for common, names in SYNONYMS.items() for s in (common, *names)}
"""Corpus label (lower case) -> common name."""

SEPARATOR = "/"
"""Between the corpus name and an utterance id, speaker or session (``emodb/03a01Wa``)."""


@dataclass(frozen=True)
class LabelMap:
    """The built-in map, optionally extended by a user file (``source``): global and per-corpus entries."""

    source: str | None = None
    common: dict[str, str | None] = field(default_factory=dict)
    per_corpus: dict[str, dict[str, str | None]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How reports name the map."""
        return "built-in" if self.source is None else f"{self.source} over the built-in map"

    def lookup(self, corpus: str, label: str) -> str | None:
        """Common name of ``label`` in ``corpus`` (None: dropped); unknown labels keep their own name."""
        key = label.strip().lower()
        for table in (self.per_corpus.get(corpus, {}), self.common):
            if key in table:
                return table[key]
        return BUILTIN.get(key, label)

    def unused(self, labels: dict[str, set[str]]) -> list[str]:
        """User entries that matched no label of the merged corpora (a typo in the file?)."""
        seen = {lab.strip().lower() for labs in labels.values() for lab in labs}
        out = [k for k in self.common if k not in seen]
        for corpus, table in self.per_corpus.items():
            have = {lab.strip().lower() for lab in labels.get(corpus, ())}
            out += [f"{corpus}: {k}" for k in table if k not in have]
        return out


def _entries(table: dict, where: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k, v in table.items():
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{where}: {k!r} must map to a class name or null, got {v!r}")
        out[str(k).strip().lower()] = v.strip() if isinstance(v, str) else None
    return out


def load_label_map(path: str | Path | None) -> LabelMap:
    """The built-in map, plus the entries of a YAML/JSON file (label -> common name, or corpus -> {label: name})."""
    if path is None:
        return LabelMap()
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: label map file does not exist") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{p}: not a valid label map ({' '.join(str(e).split())})") from e
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{p}: a label map is a mapping of label -> common name (or corpus -> mapping), "
                         f"got {type(data).__name__ if data else 'nothing'}")
    common = _entries({k: v for k, v in data.items() if not isinstance(v, dict)}, str(p))
    per_corpus = {str(c).lower(): _entries(v, f"{p}: {c}") for c, v in data.items() if isinstance(v, dict)}
    return LabelMap(str(p), common, per_corpus)


@dataclass
class MergeReport:
    """What merging did: the map, the classes kept, and per corpus the renamed and the dropped labels."""

    label_map: str
    classes: list[str]
    renamed: dict[str, dict[str, str]]
    left_out: dict[str, dict[str, int]]
    unused_entries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"label map": self.label_map, "classes": self.classes, "renamed": self.renamed,
                "left out": self.left_out, "unused map entries": self.unused_entries}

    def map_line(self) -> str:
        renamed = "; ".join(f"{c}: " + ", ".join(f"{a}→{b}" for a, b in sorted(r.items()))
                            for c, r in self.renamed.items() if r)
        return self.label_map + (f" ({renamed})" if renamed else " (no label renamed)")

    def left_out_line(self) -> str:
        parts = [f"{c}: " + ", ".join(f"{lab} ({n})" for lab, n in sorted(d.items()))
                 for c, d in self.left_out.items() if d]
        return "; ".join(parts) or "none"


def prefixed(corpus: str, value: str | None) -> str | None:
    return None if value is None else f"{corpus}{SEPARATOR}{value}"


def merge_corpora(parts: dict[str, Manifest], label_map: LabelMap | None = None,
                  classes: list[str] | None = None) -> tuple[Manifest, MergeReport]:
    """One manifest of ``parts`` (corpus name -> its manifest) over the classes all of them share.

    ``classes`` (common names) narrows the shared set; a class some corpus lacks is refused, naming
    the corpus. Fewer than 2 shared classes is refused with every corpus's classes listed.
    """
    label_map = label_map or LabelMap()
    if len(set(parts)) != len(parts) or not parts:
        raise ValueError("merging corpora needs at least one corpus, each named once")
    mapped = {c: {lab: label_map.lookup(c, lab) for lab in m.labels()} for c, m in parts.items()}
    have = {c: {v for v in d.values() if v is not None} for c, d in mapped.items()}
    shared = set.intersection(*have.values())
    if classes:
        lacking = [f"{c} has no {k!r}" for k in classes for c in parts if k not in have[c]]
        if lacking:
            raise ValueError(f"class(es) not shared by every corpus: {'; '.join(lacking)}; "
                             + "; ".join(f"{c}: {', '.join(sorted(h))}" for c, h in have.items())
                             + " (common names; add a --label-map file for other names)")
        shared = set(classes)
    if len(shared) < 2:
        raise ValueError(f"the corpora share {len(shared)} class(es) ({', '.join(sorted(shared)) or 'none'}); "
                         "classification needs at least 2. Classes after the label map: "
                         + "; ".join(f"{c}: {', '.join(sorted(h))}" for c, h in have.items())
                         + " (a --label-map file can rename labels)")
    utts, renamed, left_out = [], {}, {}
    for corpus, m in parts.items():
        dropped: Counter = Counter()
        for u in m:
            new = mapped[corpus].get(u.label) if u.label is not None else None
            if new not in shared:
                if u.label is not None:
                    dropped[u.label] += 1
                continue
            utts.append(replace(u, id=prefixed(corpus, u.id), speaker=prefixed(corpus, u.speaker),
                                session=prefixed(corpus, u.session), corpus=corpus, label=new))
        renamed[corpus] = {a: b for a, b in mapped[corpus].items() if b is not None and b != a and b in shared}
        left_out[corpus] = dict(sorted(dropped.items()))
    unused = label_map.unused({c: set(m.labels()) for c, m in parts.items()})
    report = MergeReport(label_map.name, sorted(shared), renamed, left_out, unused)
    return Manifest(utts), report


def corpus_plan(train: list[str] | None = None, test: str | None = None,
                leave_one_corpus_out: list[str] | None = None) -> dict:
    """Experiment config keys for ``--train A B --test C`` or ``--leave-one-corpus-out A B C`` ({} for neither).

    -> ``corpora`` (training corpora first), ``test_corpora`` and ``protocol``; flags that cannot go
    together are refused here, before anything is read.
    """
    if leave_one_corpus_out:
        if train or test:
            raise ValueError("--leave-one-corpus-out tests every listed corpus in turn; it replaces --train/--test")
        if len(leave_one_corpus_out) < 2:
            raise ValueError("--leave-one-corpus-out needs at least 2 corpora")
        return {"corpora": list(leave_one_corpus_out), "protocol": "leave-one-corpus-out"}
    if bool(train) != bool(test):
        raise ValueError("--train and --test go together: --train CORPUS [CORPUS ...] --test CORPUS")
    if train:
        return {"corpora": [*train, test], "test_corpora": [test], "protocol": "cross-corpus"}
    return {}
