"""What every corpus module declares, and the helpers every loader shares.

Every corpus module follows one pattern:

* ``INFO = CorpusInfo(...)``;
* ``scan(root, **options) -> (Manifest, [(path, problem), ...])`` parses the public layout and reads
  durations from the file headers (no decoding). Files whose header cannot be read, whose name does
  not follow the corpus convention or that duplicate another file's id are *not* fatal: they are
  returned in the second element so a corpus run can report them;
* ``prepare(root, **options) -> Manifest`` calls ``scan``, logs one warning listing the skipped files
  and raises when nothing usable is left.

A missing layout (wrong folder) raises :class:`CorpusLayoutError` naming the folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from emoboost.audio import AudioError, audio_info
from emoboost.data.manifest import Manifest, Utterance

log = logging.getLogger("emoboost.data.corpora")

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac")
"""Extensions the named corpora are looked up with: the original releases are WAV; FLAC copies
(e.g. the RAVDESS in ../shared) are common and read the same way."""

Skipped = list[tuple[str, str]]
"""(path, problem) for every file a scan could not use."""


@dataclass(frozen=True)
class CorpusInfo:
    """Static facts about a corpus: its classes and its speaker-independent default protocol.

    ``default_protocol`` is one of ``"loso"`` (leave-one-speaker-out), ``"loso-session"``
    (leave-one-session-out, IEMOCAP), ``"group-kfold"`` (k folds grouped by speaker) or
    ``"stratified-group-kfold"`` (k folds grouped by speaker, every class in every test fold).
    """

    name: str
    classes: tuple[str, ...]
    default_protocol: str = "loso"
    default_folds: int | None = None
    url: str | None = None
    citation: str = ""
    description: str = ""


class CorpusLayoutError(FileNotFoundError):
    """The folder given for a corpus does not hold that corpus's layout; the message names the folder."""


def check_root(root: str | Path, corpus: str) -> Path:
    """Absolute, normalised corpus root (``..`` collapsed, symlinks kept as the user gave them)."""
    path = absolute(root)
    if not path.exists():
        raise CorpusLayoutError(f"{corpus} root {path} does not exist")
    if not path.is_dir():
        raise CorpusLayoutError(f"{corpus} root {path} is not a folder")
    return path


def absolute(path: str | Path) -> Path:
    """Absolute path with ``..`` collapsed but symlinks not resolved (stable, readable manifests)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_audio(root: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS, recursive: bool = True) -> list[Path]:
    """Audio files under ``root`` (sorted, extension case-insensitive).

    Hidden files and folders are ignored: macOS archives carry ``._name.wav`` AppleDouble files
    that look like audio by name but are metadata.
    """
    exts = {e.lower() for e in extensions}
    it = root.rglob("*") if recursive else root.iterdir()
    found = [p for p in it if p.suffix.lower() in exts and not _hidden(p, root) and p.is_file()]
    return sorted(found)


def normalise_classes(classes: Iterable[str] | str | None, valid: Iterable[str], corpus: str) -> set[str] | None:
    """Validate a ``classes=`` filter against the corpus labels (None = keep all)."""
    if classes is None:
        return None
    wanted = {classes} if isinstance(classes, str) else set(classes)
    valid = set(valid)
    unknown = sorted(wanted - valid)
    if unknown:
        raise ValueError(f"{corpus}: unknown class(es) {unknown}; this corpus has {sorted(valid)}")
    if not wanted:
        raise ValueError(f"{corpus}: classes= is empty")
    return wanted


class Collector:
    """Accumulates utterances and skipped files during a scan.

    Reads each kept file's header once (duration, native rate, channels); a label filter is
    applied *before* the header read so filtered-out files cost nothing and are not reported.
    """

    def __init__(self, corpus: str, classes: set[str] | None = None):
        self.corpus = corpus
        self.classes = classes
        self.utterances: list[Utterance] = []
        self.skipped: Skipped = []
        self._seen: dict[str, str] = {}

    def skip(self, path: str | Path, problem: str) -> None:
        self.skipped.append((str(path), problem))

    def add(
        self,
        path: Path,
        *,
        id: str,
        speaker: str,
        label: str | None,
        session: str | None = None,
        gender: str | None = None,
        intensity: str | None = None,
        text: str | None = None,
        extra: dict | None = None,
    ) -> Utterance | None:
        """Add one file; returns the utterance, or None when filtered out or skipped."""
        if self.classes is not None and label not in self.classes:
            return None
        if id in self._seen:
            self.skip(path, f"duplicate utterance id {id!r} (already taken by {self._seen[id]})")
            return None
        try:
            duration, sr, channels = audio_info(path)
        except AudioError as e:
            self.skip(path, e.problem)
            return None
        self._seen[id] = str(path)
        utt = Utterance(
            id=id,
            path=str(path),
            speaker=speaker,
            label=label,
            duration=round(duration, 6),
            corpus=self.corpus,
            session=session,
            gender=gender,
            intensity=intensity,
            text=text,
            extra={"sample_rate": sr, "channels": channels, **(extra or {})},
        )
        self.utterances.append(utt)
        return utt

    def result(self) -> tuple[Manifest, Skipped]:
        """Manifest sorted by id (stable whatever the folder order) and the skipped list."""
        return Manifest(sorted(self.utterances, key=lambda u: u.id)), list(self.skipped)


def report_skipped(corpus: str, root: Path, skipped: Skipped, show: int = 5) -> None:
    """One warning that lists the first few skipped files and says how to get all of them."""
    if not skipped:
        return
    head = "; ".join(f"{p}: {why}" for p, why in skipped[:show])
    more = f" (+{len(skipped) - show} more)" if len(skipped) > show else ""
    log.warning("%s: skipped %d file(s) under %s: %s%s; call scan() for the full list",
                corpus, len(skipped), root, head, more)


def prepare_with(
    scan: Callable[..., tuple[Manifest, Skipped]], root: str | Path, display_name: str, /, **options
) -> Manifest:
    """The shared body of every ``prepare``: scan, warn about skipped files, refuse an empty result."""
    manifest, skipped = scan(root, **options)
    report_skipped(display_name, absolute(root), skipped)
    if len(manifest) == 0:
        why = (f"all {len(skipped)} candidate file(s) were skipped, first: {skipped[0][0]}: {skipped[0][1]}"
               if skipped else f"no file matched the options {options!r}")
        raise ValueError(f"{display_name}: no usable utterances under {absolute(root)}: {why}")
    return manifest


def match_or_skip(pattern: re.Pattern[str], path: Path, col: Collector, convention: str) -> re.Match[str] | None:
    """Match the file stem against the corpus naming convention; a mismatch is recorded as skipped."""
    m = pattern.fullmatch(path.stem)
    if m is None:
        col.skip(path, f"name does not follow the {convention} convention")
    return m


def scan_named(root: Path, files: Iterable[Path], col: Collector, pattern: re.Pattern[str], convention: str,
               expected: str, add: Callable[[Path, re.Match[str]], bool]) -> tuple[Manifest, Skipped]:
    """The loop of every corpus whose file names carry the labels.

    Each file's stem is matched against ``pattern`` (a mismatch is skipped, naming ``convention``);
    ``add(path, match)`` records the file through ``col`` and returns whether it is one of the
    corpus's own files (True even when it then skips it as inconsistent; False for files that are not
    part of the corpus, such as RAVDESS songs). A tree with none of the corpus's own files is a layout
    error naming ``root`` and ``expected`` (what the files look like), not an empty manifest.
    """
    files = list(files)
    matched = 0
    for path in files:
        m = match_or_skip(pattern, path, col, convention)
        if m is not None and add(path, m):
            matched += 1
    if matched == 0:
        raise CorpusLayoutError(f"no {expected} under {root}"
                                + (f" ({len(files)} other audio file(s) found)" if files else ""))
    return col.result()
