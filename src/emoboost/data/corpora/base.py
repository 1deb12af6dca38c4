"""What every corpus module declares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusInfo:
    """Static facts about a corpus: its classes and its speaker-independent default protocol.

    ``default_protocol`` is one of ``"loso"`` (leave-one-speaker-out), ``"loso-session"``
    (leave-one-session-out, IEMOCAP) or ``"group-kfold"`` (k folds grouped by speaker).
    """

    name: str
    classes: tuple[str, ...]
    default_protocol: str = "loso"
    default_folds: int | None = None
    url: str | None = None
    citation: str = ""
    description: str = ""
