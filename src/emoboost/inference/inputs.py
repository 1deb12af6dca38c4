"""Command-line inputs: files, folders and list files -> the audio files to label."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif",
                              ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"})


LIST_EXTENSIONS = frozenset({".txt", ".lst"})


def expand_inputs(items: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Command-line inputs -> (audio files in order, without repeats; [(input, problem)] for bad inputs).

    A folder gives all audio files below it (by extension, sorted); a ``.txt`` / ``.lst`` file gives
    the paths it lists, one per line (blank lines and ``#`` comments skipped; relative paths are
    relative to the list file's folder), folders among them expanded; anything else is taken as an
    audio file and checked when it is read.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            files.append(p)

    def folder(p: Path) -> None:
        found = sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXTENSIONS and q.is_file())
        if not found:
            problems.append((str(p), f"folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"))
        for q in found:
            add(q)

    for item in items:
        p = Path(item)
        if p.is_dir():
            folder(p)
        elif p.suffix.lower() in LIST_EXTENSIONS and p.is_file():
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                problems.append((str(p), f"cannot read the list file ({e})"))
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line).expanduser()
                q = q if q.is_absolute() else p.parent / q
                if q.is_dir():
                    folder(q)
                else:
                    add(q)
        else:
            add(p)
    return files, problems
