"""Method protocol (scikit-learn style) and the data every method receives.

A method is built fresh per fold and seed: ``__init__`` only stores parameters, ``fit`` learns
(attributes ending in ``_``), ``predict_proba`` returns utterance posteriors. Methods declare the
features they need in ``requires``; the runner computes them once (through the cache) for the whole
corpus, so every fold, seed and method shares them.

Feature names the runner knows:
- ``ssl``: upstream hidden states per utterance, [S, L, T', D] (segments, layers, frames, dims)
- ``mfcc``: [S, T, 40] HTK MFCC per segment
- ``spec``: [S, T, 200] MS-EmoBoost log spectrogram per segment
- ``logmel``: [S, T, 80] log-mel per segment
- ``egemaps`` / ``compare`` / ``mfcc_stats``: [F] utterance-level functionals
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass
class UtteranceSet:
    """Utterances of one split with their labels, speakers and precomputed features."""

    ids: list[str]
    y: np.ndarray  # int class index per utterance (-1 = unknown)
    groups: np.ndarray  # speaker per utterance
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: np.ndarray | list[int]) -> UtteranceSet:
        idx = np.asarray(idx, dtype=int)
        return UtteranceSet(
            ids=[self.ids[i] for i in idx],
            y=self.y[idx],
            groups=self.groups[idx],
            features={k: [v[i] for i in idx] for k, v in self.features.items()},
        )

    @classmethod
    def concat(cls, sets: list[UtteranceSet]) -> UtteranceSet:
        names = set.intersection(*(set(s.features) for s in sets))
        return cls(
            ids=[i for s in sets for i in s.ids],
            y=np.concatenate([s.y for s in sets]),
            groups=np.concatenate([s.groups for s in sets]),
            features={n: [a for s in sets for a in s.features[n]] for n in names},
        )

    def feature(self, name: str) -> list[np.ndarray]:
        if name not in self.features:
            raise KeyError(f"feature {name!r} was not computed; available: {sorted(self.features)}")
        return self.features[name]

    def segments(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Stack per-utterance segment arrays: (X [N_seg, ...], seg_utt [N_seg] utterance index)."""
        arrs = self.feature(name)
        seg_utt = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrs)]).astype(int)
        return np.concatenate(arrs, axis=0), seg_utt


class Method(ABC):
    """Base class: a classifier over :class:`UtteranceSet`."""

    name: ClassVar[str] = "method"
    requires: ClassVar[tuple[str, ...]] = ("ssl",)

    def __init__(self, classes: list[str], **params: Any):
        self.classes = list(classes)
        self.params = dict(params)

    # -- the scikit-learn-like core -------------------------------------------------------
    @abstractmethod
    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> Method:
        """Learn on ``train``; ``valid`` (training speakers only) drives early stopping."""

    @abstractmethod
    def predict_proba(self, data: UtteranceSet) -> np.ndarray:
        """[N_utt, C] posteriors; utterance = mean of its segments' posteriors."""

    def predict(self, data: UtteranceSet) -> np.ndarray:
        return self.predict_proba(data).argmax(axis=1)

    def predict_segments(self, data: UtteranceSet) -> list[np.ndarray]:
        """Per-utterance [S, C] segment posteriors (timeline); utterance-level methods give S=1."""
        return [p[None] for p in self.predict_proba(data)]

    def embed(self, data: UtteranceSet) -> np.ndarray | None:
        """[N_utt, E] utterance embeddings for t-SNE (None if the method has none)."""
        return None

    def num_parameters(self) -> int:
        return 0

    def describe(self) -> dict:
        """Extra facts the report must print (e.g. which AlexNet weights were used)."""
        return {}

    # -- persistence: weights + config, never code ------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = {
            "method": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "classes": self.classes,
            "params": self.params,
            "requires": list(self.requires),
            "state": self._state_config(),
        }
        self._save_weights(directory)
        from emoboost.utils import atomic_write_text

        atomic_write_text(directory / "method.json", json.dumps(cfg, indent=2, default=_json_default))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Method:
        directory = Path(directory)
        cfg = json.loads((directory / "method.json").read_text())
        from emoboost.methods import get_method

        klass = get_method(cfg["method"])
        obj = klass(cfg["classes"], **cfg["params"])
        obj._load_weights(directory, cfg.get("state", {}))
        return obj

    def _state_config(self) -> dict:
        return {}

    def _save_weights(self, directory: Path) -> None:
        raise NotImplementedError(f"{self.name} cannot be saved")

    def _load_weights(self, directory: Path, state: dict) -> None:
        raise NotImplementedError(f"{self.name} cannot be loaded")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def import_attr(spec: str) -> Any:
    """'pkg.module:attr' -> attr (lazy registry imports)."""
    mod, _, attr = spec.partition(":")
    return getattr(importlib.import_module(mod), attr)
