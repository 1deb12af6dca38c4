"""Corpora as manifests."""

from emoboost.data.manifest import Manifest, Utterance

__all__ = ["Manifest", "Utterance"]
