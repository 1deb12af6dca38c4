"""emoboost: speech emotion recognition on self-supervised speech representations.

``import emoboost`` stays light (no torch, no numpy): :func:`load` imports what the model needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from emoboost.inference.api import Model


def load(path: str | Path, upstream: str | None = None, threads: int | None = None, device: str = "cpu",
         backend: str = "auto") -> Model:
    """Load a final-model bundle (``emoboost train``), a run directory (its fold ensemble) or an ONNX
    export (``emoboost export``); the result predicts files and waveforms (``device``: where torch
    models run; ``backend``: ``auto``, ``torch`` or ``onnx``)::

        m = emoboost.load("models/emodb-logreg")
        m.predict("a.wav").label
        m.predict(samples, sample_rate=44100).probabilities
        m.predict_many(["a.wav", "b.wav"], batch_size=8)
    """
    from emoboost.inference.api import load as _load

    return _load(path, upstream=upstream, threads=threads, device=device, backend=backend)
