"""IEMOCAP: 5 dyadic sessions (one actress, one actor each), improvised and scripted dialogues.

Release layout: ``IEMOCAP_full_release/Session{1..5}/sentences/wav/<dialog>/<utt>.wav``; the labels
come from ``Session*/dialog/EmoEvaluation/*.txt`` lines like
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`` (valence,
activation, dominance). The *utterance's* speaker is the first letter of the id's last part
(``..._M003`` is the man even in ``Ses01F`` dialogues, where F is the marker-wearing actor), so
speakers are ``Ses01_F`` / ``Ses01_M``, sessions ``Ses01``..``Ses05``.

``classes=4`` (default) is the usual benchmark: angry, happy (hap + exc merged), neutral, sad; all other
labels are dropped. ``classes="all"`` keeps every majority label with its own name (exc stays
``excited``); ``xxx`` (no majority) is always dropped. An iterable of names from the "all" set keeps
just those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from emoboost.data.corpora.base import (
    Collector,
    CorpusInfo,
    CorpusLayoutError,
    Skipped,
    check_root,
    normalise_classes,
    prepare_with,
)
from emoboost.data.download import download_corpus
from emoboost.data.manifest import Manifest

ALL_LABELS = {"ang": "angry", "hap": "happy", "exc": "excited", "sad": "sad", "neu": "neutral",
              "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgusted", "oth": "other"}
FOUR_CLASS = {"ang": "angry", "hap": "happy", "exc": "happy", "sad": "sad", "neu": "neutral"}
EVAL_LINE = re.compile(r"\[(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\]\s+(?P<utt>\S+)\s+(?P<emo>\w+)\s+"
                       r"\[(?P<v>[\d.]+),\s*(?P<a>[\d.]+),\s*(?P<d>[\d.]+)\]")
UTT_ID = re.compile(r"(?P<session>Ses0[1-5])[FM]_(?P<rest>.+)_(?P<gender>[FM])\d+")
TRANSCRIPT_LINE = re.compile(r"(?P<utt>Ses\S+)\s+\[[^\]]*\]:\s*(?P<text>.*)")

INFO = CorpusInfo(
    name="iemocap",
    classes=tuple(sorted(set(FOUR_CLASS.values()))),
    default_protocol="loso-session",
    default_folds=5,
    url="https://sail.usc.edu/iemocap/",
    citation="C. Busso, M. Bulut, C.-C. Lee, A. Kazemzadeh, E. Mower, S. Kim, J. N. Chang, S. Lee, "
             "S. S. Narayanan. IEMOCAP: Interactive emotional dyadic motion capture database. "
             "Language Resources and Evaluation 42(4): 335-359, 2008.",
    description="IEMOCAP: ~12 h of dyadic English speech, 10 actors in 5 sessions; 4-class benchmark "
                "(angry, happy+excited, neutral, sad: 5531 utterances), leave-one-session-out.",
)


def _label_map(classes: int | str | Iterable[str] | None) -> dict[str, str]:
    """Emotion code -> label for the requested class set."""
    if classes is None or str(classes) == "4":
        return dict(FOUR_CLASS)
    if isinstance(classes, str) and classes.lower() == "all":
        return dict(ALL_LABELS)
    if isinstance(classes, (int, str)):
        raise ValueError(f"IEMOCAP: classes must be 4, 'all' or a list of labels, got {classes!r}")
    keep = normalise_classes(classes, ALL_LABELS.values(), "IEMOCAP")
    return {code: name for code, name in ALL_LABELS.items() if name in keep}


def find_sessions(root: Path) -> list[Path]:
    """Session folders with annotations, in the root or in ``root/IEMOCAP_full_release``."""
    for base in (root, root / "IEMOCAP_full_release"):
        sessions = [base / f"Session{i}" for i in range(1, 6)]
        found = [s for s in sessions if (s / "dialog" / "EmoEvaluation").is_dir()]
        if found:
            return found
    raise CorpusLayoutError(f"no IEMOCAP sessions (Session1..5/dialog/EmoEvaluation) under {root} "
                            f"or {root / 'IEMOCAP_full_release'}")


def _transcripts(session: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    folder = session / "dialog" / "transcriptions"
    if not folder.is_dir():
        return out
    for f in sorted(folder.glob("*.txt")):
        if f.name.startswith("."):
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = TRANSCRIPT_LINE.match(line.strip())
            if m:
                out[m["utt"]] = m["text"].strip()
    return out


def scan(root: str | Path, classes: int | str | Iterable[str] | None = 4) -> tuple[Manifest, Skipped]:
    """Parse an IEMOCAP release: one utterance per annotated turn whose label is in ``classes``."""
    root = check_root(root, "IEMOCAP")
    mapping = _label_map(classes)
    col = Collector(INFO.name)
    annotated = 0
    for session in find_sessions(root):
        transcripts = _transcripts(session)
        for ev in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            if ev.name.startswith("."):
                continue
            for line in ev.read_text(encoding="utf-8", errors="replace").splitlines():
                m = EVAL_LINE.match(line.strip())
                if m is None:
                    continue
                annotated += 1
                utt = m["utt"]
                label = mapping.get(m["emo"].lower())
                if label is None:
                    continue  # other class, or no majority (xxx)
                um = UTT_ID.fullmatch(utt)
                dialog = utt.rsplit("_", 1)[0]
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                if um is None:
                    col.skip(wav, f"utterance id {utt!r} in {ev} does not follow the IEMOCAP convention")
                    continue
                if not wav.is_file():
                    col.skip(wav, f"annotated in {ev} but the wav file is missing")
                    continue
                sess = um["session"]
                col.add(wav, id=utt, speaker=f"{sess}_{um['gender']}", label=label, session=sess,
                        gender=um["gender"].lower(),
                        extra={"emotion_code": m["emo"].lower(), "dialog": dialog,
                               "mode": "impro" if "_impro" in dialog else "script",
                               "start": float(m["start"]), "end": float(m["end"]),
                               "valence": float(m["v"]), "activation": float(m["a"]),
                               "dominance": float(m["d"]),
                               **({"transcript": transcripts[utt]} if utt in transcripts else {})})
    if annotated == 0:
        raise CorpusLayoutError(f"no IEMOCAP annotation lines in Session*/dialog/EmoEvaluation/*.txt under {root}")
    return col.result()


def prepare(root: str | Path, **options) -> Manifest:
    """IEMOCAP manifest (4 classes by default); missing/unreadable files are skipped with a warning."""
    return prepare_with(scan, root, "IEMOCAP", **options)


def download(dest: str | Path, force: bool = False, url: str | None = None) -> Path:
    """IEMOCAP needs a signed licence; this raises with instructions unless ``url`` is given."""
    return download_corpus(INFO.name, dest, url=url, force=force)
