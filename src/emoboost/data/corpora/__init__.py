"""Corpus registry: name -> module with ``INFO`` and ``prepare(root) -> Manifest``.

Modules are imported lazily so a missing optional dependency of one corpus never breaks the rest.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from emoboost.data.corpora.base import CorpusInfo

CORPORA: dict[str, str] = {
    "emodb": "emoboost.data.corpora.emodb",
    "ravdess": "emoboost.data.corpora.ravdess",
    "emovo": "emoboost.data.corpora.emovo",
    "iemocap": "emoboost.data.corpora.iemocap",
    "shemo": "emoboost.data.corpora.shemo",
    "tess": "emoboost.data.corpora.tess",
    "cremad": "emoboost.data.corpora.cremad",
    "folder": "emoboost.data.corpora.folder",
    "csv": "emoboost.data.corpora.csvcorpus",
}


def get_corpus(name: str) -> ModuleType:
    """The corpus module for ``name`` (it has ``INFO`` and ``prepare``; maybe ``download``)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}")
    return importlib.import_module(CORPORA[key])


__all__ = ["CORPORA", "CorpusInfo", "get_corpus"]
