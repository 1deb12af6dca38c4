"""Corpus registry: name -> module with ``INFO`` and ``prepare(root) -> Manifest``.

Modules are imported lazily so a missing optional dependency of one corpus never breaks the rest.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

from emoboost.data.corpora.base import CorpusInfo

CORPORA: dict[str, str] = {
    "emodb": "emoboost.data.corpora.emodb",
    "ravdess": "emoboost.data.corpora.ravdess",
    "emovo": "emoboost.data.corpora.emovo",
    "iemocap": "emoboost.data.corpora.iemocap",
    "shemo": "emoboost.data.corpora.shemo",
    "tess": "emoboost.data.corpora.tess",
    "cremad": "emoboost.data.corpora.cremad",
    "casia": "emoboost.data.corpora.casia",
    "folder": "emoboost.data.corpora.folder",
    "csv": "emoboost.data.corpora.csvcorpus",
}


def get_corpus(name: str) -> ModuleType:
    """The corpus module for ``name`` (it has ``INFO`` and ``prepare``; maybe ``download``)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}")
    return importlib.import_module(CORPORA[key])


def corpus_options(name: str) -> list[str]:
    """The options corpus ``name``'s ``scan`` accepts besides the root (e.g. folder: ``speaker_regex``)."""
    params = list(inspect.signature(get_corpus(name).scan).parameters)
    return params[1:]


def scan_corpus(name: str, root: str | Path, options: dict[str, Any] | None = None):
    """``get_corpus(name).scan(root, **options)`` -> (Manifest, skipped), refusing unknown option names.

    The one entry point for the command line and the runner, so that corpus-specific settings
    (``speaker_regex`` for a folder-per-label corpus, ``demographics`` for CREMA-D, ...) reach the
    scan from ``data prepare`` flags and from a run's ``corpus_options`` alike, and a misspelt
    option is an error instead of being ignored.
    """
    options = dict(options or {})
    valid = corpus_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"corpus {name!r}: unknown option(s) {unknown}; it accepts: {', '.join(valid) or 'none'}")
    return get_corpus(name).scan(root, **options)


def locate_corpus(name: str) -> tuple[str, Path | None]:
    """Where a run without ``--data-root`` finds corpus ``name``, without downloading anything.

    -> (how, folder): ``"EMOBOOST_DATA"`` or ``"shared"`` (a local copy), ``"downloaded"`` (an earlier
    official download in the cache), ``"download"`` (fetched from its official URL on first use, no
    folder yet) or ``"not here"`` (licensed corpora: pass ``--data-root``).
    """
    import os

    from emoboost.data.download import COMPLETE_MARKER, SOURCES, corpus_root
    from emoboost.utils import default_cache_dir, shared_root

    key = name.lower().replace("-", "").replace("_", "")
    env = os.environ.get("EMOBOOST_DATA")
    names = list(dict.fromkeys((name, key)))  # the name as given (a folder RAVDESS/), then the registry key
    for how, base in (("EMOBOOST_DATA", Path(env) if env else None), ("shared", shared_root() / "data")):
        for folder_name in names if base is not None else ():
            if (base / folder_name).exists():
                return how, base / folder_name
    cached = Path(default_cache_dir()) / "corpora" / key
    if (cached / COMPLETE_MARKER).is_file():
        return "downloaded", corpus_root(cached)
    return ("download", None) if key in SOURCES else ("not here", None)


__all__ = ["CORPORA", "CorpusInfo", "corpus_options", "get_corpus", "locate_corpus", "scan_corpus"]
