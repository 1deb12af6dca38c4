"""Method registry: name -> "module:Class", imported lazily (a leaf: the methods import it, not the reverse)."""

from __future__ import annotations

from typing import Any

from emoboost.utils import import_attr

METHODS: dict[str, str] = {
    "linear": "emoboost.methods.linear:LinearProbe",
    "logreg": "emoboost.methods.logreg:LogRegProbe",
    "msemoboost": "emoboost.methods.msemoboost:MSEmoBoost",
    "ssl_cnn": "emoboost.methods.ssl_cnn:SSLCNN",
    "svm": "emoboost.methods.svm:FunctionalsSVM",
    "spec_cnn": "emoboost.methods.spec_cnn:SpectrogramCNN",
}


def get_method(name: str) -> Any:
    """The method class registered as ``name`` (``-`` and ``_`` are the same); unknown names list the known."""
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return import_attr(METHODS[key])
