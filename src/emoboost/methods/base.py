"""Method protocol (scikit-learn style) and the data every method receives.

A method is built fresh per fold and seed: ``__init__`` only stores parameters (declared once, in the
class's ``PARAMS``, and every value checked there: :mod:`emoboost.methods.params`), ``fit`` learns
(attributes ending in ``_``), ``predict_proba`` returns utterance posteriors. ``requires`` says which
features the configuration reads (a property of the parameters); the runner computes them once
(through the cache) for the whole corpus, so every fold, seed and method shares them. Prediction
inputs carry no labels and no speakers (``UtteranceSet(ids, features=..., ssl=...)``).

Feature names the runner knows:
- ``ssl``: upstream hidden states, served by the feature store as :attr:`UtteranceSet.ssl` (an
  :class:`~emoboost.features.views.SSLView`: pooled statistics, or frame windows drawn lazily)
- ``mfcc``: [S, T, 40] HTK MFCC per segment
- ``spec``: [S, T, 200] MS-EmoBoost log spectrogram per segment
- ``logmel``: [S, T, 80] log-mel per segment
- ``egemaps`` / ``compare`` / ``mfcc_stats``: [F] utterance-level functionals
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from emoboost.methods.params import Param, declared, resolve

if TYPE_CHECKING:
    from emoboost.features.views import SSLView


def speaker_rows(groups: np.ndarray | None) -> Iterator[tuple[Any, np.ndarray]]:
    """(speaker, row indices) of every named speaker in ``groups``.

    Rows whose speaker is None belong to no speaker: clips at inference are never pooled into one
    "speaker" because they happen to arrive in the same batch, so per-speaker statistics come only from
    clips the caller said share a voice (methods then use their training statistics). ``groups=None``:
    no row has a known speaker.
    """
    if groups is None:
        return
    groups = np.asarray(groups, dtype=object)
    known = np.array([g is not None for g in groups], dtype=bool)
    for g in sorted({str(v) for v in groups[known]}):
        yield g, np.flatnonzero(known & (groups.astype(str) == g))


@dataclass
class UtteranceSet:
    """Utterances of one split with their labels, speakers and precomputed features.

    SSL features live in ``ssl`` (a view on the feature store, never the corpus's frames in RAM);
    ``features`` holds the small acoustic ones. For convenience (tests, predict), ``features["ssl"]``
    given as a list of ``[L, T, D]`` clip frames or ``[S, L, T', D]`` segment frames becomes an
    in-memory view.

    A prediction input has no labels (``y=None``: :meth:`labels` refuses to fit on it) and may name no
    speakers (``groups=None`` becomes one None per utterance: unknown speakers, each normalised with the
    training statistics, never with its batch-mates'; see :func:`speaker_rows`).
    """

    ids: list[str]
    y: np.ndarray | None = None  # int class index per utterance; None: unlabelled (a prediction input)
    groups: np.ndarray | None = None  # speaker per utterance (None: unknown, e.g. a clip at inference)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)
    ssl: SSLView | None = None
    # per utterance: the speaker profile it is adapted with (methods.adaptation.Profile) or None; given
    # explicitly by the caller, never inferred from the other utterances of the set
    profiles: list | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.y is not None:
            self.y = np.asarray(self.y)
            if len(self.y) != n:
                raise ValueError(f"{len(self.y)} labels for {n} utterances")
        self.groups = np.full(n, None, dtype=object) if self.groups is None else np.asarray(self.groups)
        if len(self.groups) != n:
            raise ValueError(f"{len(self.groups)} speakers for {n} utterances")
        if "ssl" in self.features:
            from emoboost.features.views import ArraySource, SSLView

            arrs = self.features.pop("ssl")
            if self.ssl is None and len(arrs):
                nd = {np.asarray(a).ndim for a in arrs}
                if nd == {4}:
                    src = ArraySource.from_segments(arrs)
                elif nd == {3}:
                    src = ArraySource(arrs)
                else:
                    raise ValueError(f"ssl features must be [L, T, D] or [S, L, T', D] per utterance, got ndim {nd}")
                self.ssl = SSLView(src)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: np.ndarray | list[int]) -> UtteranceSet:
        idx = np.asarray(idx, dtype=int)
        return UtteranceSet(
            ids=[self.ids[i] for i in idx],
            y=self.y[idx] if self.y is not None else None,
            groups=self.groups[idx],  # type: ignore[index]
            features={k: [v[i] for i in idx] for k, v in self.features.items()},
            ssl=self.ssl.subset(idx) if self.ssl is not None else None,
            profiles=[self.profiles[i] for i in idx] if self.profiles is not None else None,
        )

    @classmethod
    def concat(cls, sets: list[UtteranceSet]) -> UtteranceSet:
        names = set.intersection(*(set(s.features) for s in sets))
        ssl = None
        views = [s.ssl for s in sets]
        if all(v is not None for v in views):
            if len({id(v.source) for v in views}) != 1:  # type: ignore[union-attr]
                raise ValueError("cannot concatenate utterance sets backed by different feature stores")
            from emoboost.features.views import SSLView

            ssl = SSLView(views[0].source, np.concatenate([v.idx for v in views]))  # type: ignore[union-attr]
        return cls(
            ids=[i for s in sets for i in s.ids],
            y=None if any(s.y is None for s in sets) else np.concatenate([s.y for s in sets]),  # type: ignore[misc]
            groups=np.concatenate([s.groups for s in sets]),  # type: ignore[misc]
            features={n: [a for s in sets for a in s.features[n]] for n in names},
            ssl=ssl,
            profiles=None if all(s.profiles is None for s in sets) else
            [p for s in sets for p in (s.profiles if s.profiles is not None else [None] * len(s))],
        )

    def labels(self) -> np.ndarray:
        """The class indices, for fitting; a prediction input (``y=None``) has none."""
        if self.y is None:
            raise ValueError("these utterances have no labels (a prediction input): a method cannot be fitted on them")
        return self.y

    def feature(self, name: str) -> list[np.ndarray]:
        if name not in self.features:
            raise KeyError(f"feature {name!r} was not computed; available: {sorted(self.features)}")
        return self.features[name]

    def ssl_view(self) -> SSLView:
        if self.ssl is None:
            raise KeyError("SSL features were not computed for these utterances (the method must require 'ssl')")
        return self.ssl

    def segments(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Stack per-utterance segment arrays: (X [N_seg, ...], seg_utt [N_seg] utterance index)."""
        arrs = self.feature(name)
        seg_utt = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrs)]).astype(int)
        return np.concatenate(arrs, axis=0), seg_utt


class Method(ABC):
    """Base class: a classifier over :class:`UtteranceSet`.

    Parameters are declared once, in the class's ``PARAMS`` (name -> :class:`~emoboost.methods.params.Param`,
    or a plain value: a new default for a parameter a base class declares, e.g. the training loop's
    ``lr``); the declarations of the class and its bases are merged when the class is created
    (:meth:`declared_params`), a user's values onto them once, in ``__init__``, every value checked by
    its rule. ``ALIASES`` maps other names onto declared ones.
    """

    name: ClassVar[str] = "method"
    PARAMS: ClassVar[dict[str, Any]] = {}
    ALIASES: ClassVar[dict[str, str]] = {}
    _declared: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bases = [b._declared for b in reversed(cls.__bases__) if issubclass(b, Method)]
        cls._declared = declared(bases, vars(cls).get("PARAMS", {}), cls.__qualname__)

    def __init__(self, classes: list[str], **params: Any):
        self.classes = list(classes)
        self.params = resolve(self.name, self._declared, params, self.ALIASES)
        self.check_params()

    @classmethod
    def declared_params(cls) -> dict[str, Param]:
        """Every parameter the method accepts (its own and its bases'), with its default and rule.

        A typo'd ``-p lyaer=2`` would otherwise be ignored and the run silently use the default layer,
        so names outside these are refused when the method is built.
        """
        return dict(cls._declared)

    def check_params(self) -> None:  # noqa: B027 - a hook: most methods have no rule between parameters
        """Rules between parameters (each value alone is checked by its rule): raise one line naming them."""

    @property
    def requires(self) -> tuple[str, ...]:
        """The features this configuration reads, computed from its parameters (the runner extracts them)."""
        return ("ssl",)

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

    def to_device(self, device: str) -> Method:
        """Run later inference on ``device`` (a resolved name); methods without torch weights ignore it."""
        return self

    def num_parameters(self) -> int:
        return 0

    # -- what the feature store must hold for this configuration --------------------------------
    def ssl_layers(self, num_layers: int) -> list[int]:
        """Hidden-state indices the method reads (the deepest bounds how far the encoder runs)."""
        from emoboost.methods.layer_choice import parse_layer

        layer = self.params.get("layer", "weighted")
        one = parse_layer(layer, num_layers) if not isinstance(layer, (list, tuple)) else None
        return list(range(num_layers)) if one in (None, "weighted") or isinstance(one, str) else [int(one)]

    def needs_frames(self) -> bool:
        """Whether the method reads frame windows (True) or only pooled statistics (False)."""
        return "ssl" in self.requires

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
        """Rebuild a saved method; a broken ``method.json`` or weight file raises one line naming it."""
        from emoboost.methods.registry import get_method
        from emoboost.utils import read_json

        directory = Path(directory)
        cfg_path = directory / "method.json"
        cfg = read_json(cfg_path, "method config")
        _check_method_config(cfg, cfg_path)
        try:
            klass = get_method(cfg["method"])
            obj = klass(cfg["classes"], **cfg["params"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{cfg_path}: broken method config: {e.args[0] if e.args else e}") from e
        weights = directory / "model.safetensors"
        try:
            obj._load_weights(directory, cfg.get("state", {}))
        except FileNotFoundError as e:
            missing = e.filename or (weights if not weights.exists() else directory)
            raise FileNotFoundError(f"{missing}: model weights missing (the model directory is incomplete)") from e
        except Exception as e:  # noqa: BLE001 - safetensors' SafetensorError, torch shape errors, missing state
            what = weights if weights.exists() else directory
            raise ValueError(f"{what}: cannot load the model weights ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'}); the file is truncated, "
                             f"corrupt or does not match {cfg_path.name}") from e
        return obj

    def _state_config(self) -> dict:
        return {}

    def _save_weights(self, directory: Path) -> None:
        raise NotImplementedError(f"{self.name} cannot be saved")

    def _load_weights(self, directory: Path, state: dict) -> None:
        raise NotImplementedError(f"{self.name} cannot be loaded")


def accepts_param(method_cls: type[Method], name: str) -> bool:
    """Whether ``method_cls`` takes parameter ``name`` (e.g. only trained methods take ``max_epochs``)."""
    return name in method_cls.declared_params()


def _check_method_config(cfg: Any, path: Path) -> None:
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: broken method config: expected a JSON object, got {type(cfg).__name__}")
    missing = [k for k in ("method", "classes", "params") if k not in cfg]
    if missing:
        raise ValueError(f"{path}: broken method config: missing key(s) {', '.join(missing)}")
    if not isinstance(cfg["method"], str):
        raise ValueError(f"{path}: broken method config: 'method' must be a name, got {cfg['method']!r}")
    if not isinstance(cfg["classes"], list) or len(cfg["classes"]) < 2 or not all(isinstance(c, str) for c in cfg["classes"]):
        raise ValueError(f"{path}: broken method config: 'classes' must be a list of at least 2 class names")
    if not isinstance(cfg["params"], dict):
        raise ValueError(f"{path}: broken method config: 'params' must be an object")
    if not isinstance(cfg.get("state", {}), dict):
        raise ValueError(f"{path}: broken method config: 'state' must be an object")


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
