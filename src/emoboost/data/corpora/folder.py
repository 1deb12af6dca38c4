"""Any corpus stored folder-per-label: ``root/<label>/**/*.wav|flac|ogg|aiff``.

The label is the name of the first folder under ``root`` (as written). A speaker is required for
speaker-independent evaluation, so it must come from one of:

* ``speaker_regex``: searched in the file name (without extension); the group named ``speaker``,
  else group 1, else the whole match is the speaker;
* ``speaker_level``: the name of the folder that many levels below the label folder
  (``root/<label>/<speaker>/x.wav`` -> ``speaker_level=1``);
* ``speaker="file"``: every file is its own speaker. Speaker-independent folds are then impossible,
  which is why this must be asked for explicitly.

Files that do not yield a speaker, or that lie directly in ``root``, are reported as skipped.
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
    find_audio,
    prepare_with,
)
from emoboost.data.manifest import Manifest

EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")

INFO = CorpusInfo(
    name="folder",
    classes=(),
    default_protocol="group-kfold",
    default_folds=5,
    url=None,
    citation="",
    description="Generic folder-per-label corpus (root/<label>/**/*.wav); classes are the folder names.",
)


def _speaker_rule(speaker_regex: str | None, speaker_level: int | None, speaker: str | None):
    given = [x is not None for x in (speaker_regex, speaker_level, speaker)]
    if sum(given) == 0:
        raise ValueError("folder corpus: no speaker source given. Pass speaker_regex= (a regex on the file "
                         "name), speaker_level= (folder level below the label folder) or, knowing that "
                         "speaker-independent evaluation then becomes impossible, speaker='file'")
    if sum(given) > 1:
        raise ValueError("folder corpus: give only one of speaker_regex=, speaker_level=, speaker=")
    if speaker is not None and speaker != "file":
        raise ValueError(f"folder corpus: speaker= only accepts 'file', got {speaker!r}")
    if speaker_level is not None and (not isinstance(speaker_level, int) or speaker_level < 1):
        raise ValueError(f"folder corpus: speaker_level must be an integer >= 1, got {speaker_level!r}")
    if speaker_regex is not None:
        if not isinstance(speaker_regex, str):
            raise ValueError(f"folder corpus: speaker_regex must be a string, got {speaker_regex!r} (quote it: "
                             "a value like [0-9]+ in -o/--option is read as YAML)")
        try:
            return re.compile(speaker_regex)
        except re.error as e:
            raise ValueError(f"folder corpus: invalid speaker_regex {speaker_regex!r} ({e})") from e
    return None


def speaker_of(pattern: re.Pattern[str], path: str | Path) -> str | None:
    """The speaker a file name yields under ``pattern`` (the rule of ``speaker_regex``; None: no match)."""
    return _regex_speaker(pattern, Path(path).stem) or None


def _regex_speaker(pattern: re.Pattern[str], stem: str) -> str | None:
    m = pattern.search(stem)
    if m is None:
        return None
    if "speaker" in pattern.groupindex:
        return m["speaker"]
    return m.group(1) if pattern.groups else m.group(0)


def scan(
    root: str | Path,
    speaker_regex: str | None = None,
    speaker_level: int | None = None,
    speaker: str | None = None,
    classes: Iterable[str] | None = None,
    extensions: Iterable[str] = EXTENSIONS,
    corpus: str | None = None,
) -> tuple[Manifest, Skipped]:
    """Parse ``root/<label>/**``; ids are the paths relative to ``root`` without extension.

    ``corpus`` names the corpus in the manifest rows (default: the root folder's name).
    """
    root = check_root(root, "folder corpus")
    pattern = _speaker_rule(speaker_regex, speaker_level, speaker)
    keep = None if classes is None else ({classes} if isinstance(classes, str) else set(classes))
    col = Collector(corpus or root.name, keep)
    files = find_audio(root, extensions)
    labelled = [p for p in files if len(p.relative_to(root).parts) >= 2]
    for path in files:
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            col.skip(path, "lies directly in the corpus root, not in a label folder")
            continue
        label = rel.parts[0]
        utt_id = rel.with_suffix("").as_posix()
        if pattern is not None:
            spk = _regex_speaker(pattern, path.stem)
            if not spk:
                col.skip(path, f"speaker_regex {pattern.pattern!r} does not match the file name")
                continue
        elif speaker_level is not None:
            folders = rel.parts[1:-1]
            if len(folders) < speaker_level:
                col.skip(path, f"no folder at speaker_level {speaker_level} below the label folder {label}/")
                continue
            spk = folders[speaker_level - 1]
        else:
            spk = utt_id
        col.add(path, id=utt_id, speaker=spk, label=label)
    if not labelled:
        exts = "|".join(e.lstrip(".") for e in extensions)
        raise CorpusLayoutError(f"no audio files in label folders (<label>/**/*.{{{exts}}}) under {root}")
    if keep is not None:
        found = {p.relative_to(root).parts[0] for p in labelled}
        unknown = sorted(keep - found)
        if unknown:
            raise ValueError(f"folder corpus: unknown class(es) {unknown}; label folders under {root}: "
                             f"{sorted(found)}")
    return col.result()


def prepare(root: str | Path, **options) -> Manifest:
    """Folder-per-label manifest; unusable files are skipped with a warning (see :func:`scan`)."""
    return prepare_with(scan, root, "folder corpus", **options)
