"""The methods: :class:`Method`, :class:`UtteranceSet` and the registry (:func:`get_method`)."""

from __future__ import annotations

from emoboost.methods.base import Method, UtteranceSet
from emoboost.methods.registry import METHODS, get_method

__all__ = ["METHODS", "Method", "UtteranceSet", "get_method"]
