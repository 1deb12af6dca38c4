"""Method registry: name -> "module:Class", imported lazily."""

from __future__ import annotations

from emoboost.methods.base import Method, UtteranceSet, import_attr

METHODS: dict[str, str] = {
    "linear": "emoboost.methods.linear:LinearProbe",
    "logreg": "emoboost.methods.logreg:LogRegProbe",
    "msemoboost": "emoboost.methods.msemoboost:MSEmoBoost",
    "ssl_cnn": "emoboost.methods.ssl_cnn:SSLCNN",
    "svm": "emoboost.methods.svm:FunctionalsSVM",
    "spec_cnn": "emoboost.methods.spec_cnn:SpectrogramCNN",
}


def get_method(name: str) -> type[Method]:
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return import_attr(METHODS[key])


__all__ = ["METHODS", "Method", "UtteranceSet", "get_method"]
