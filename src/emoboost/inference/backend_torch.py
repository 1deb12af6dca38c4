"""The torch backend of the inference engine: saved methods (a fold ensemble, a final model, one model)
and their encoder, loaded from a :class:`~emoboost.inference.bundle.Bundle`.

It only encodes blocks and applies the methods' heads; every rule about audio (blocks, tails, silence,
too short, VAD, timelines) is :class:`emoboost.inference.engine.Engine`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emoboost.audio import Segmenting
from emoboost.methods import Method, UtteranceSet


def _layers_read(models: list, bundle: Any) -> list[int]:
    """The hidden states the loaded models read: what each fitted model chose (a ``layer=auto`` run's bundle
    lists every layer, its folds' models only their committees'), else what the bundle lists."""
    listed = [int(v) for v in bundle.upstream.get("layers") or []]
    n = bundle.upstream.get("num_layers")
    if not n:
        return listed
    try:
        used = sorted(set().union(*(set(int(v) for v in m.ssl_layers(int(n))) for m in models)))
    except (ValueError, AttributeError):
        return listed
    return used or listed

class TorchBackend:
    """Methods + encoder in torch (scikit-learn for pooled logreg and SVM heads)."""

    name = "torch"

    def __init__(self, models: list[Method], bundle: Any, upstream: Any = None):
        from emoboost.features.pipeline import UTTERANCE_FEATURES

        self.models = models
        self.bundle = bundle
        self.classes: list[str] = list(bundle.classes)
        self.features: list[str] = list(bundle.features)
        self.seg = Segmenting(bundle.segment_length, bundle.segment_hop)
        self.sample_rate = self.seg.sample_rate
        self.upstream = upstream
        self.frame_rate = float(upstream.frame_rate) if upstream is not None else 50.0
        self.window_samples = int(round(float(bundle.encoder_window) * self.sample_rate))
        self.ensemble_size = len(models)
        if "ssl" not in self.features:
            self.head_kind = "whole" if all(f in UTTERANCE_FEATURES for f in self.features) else "segments"
        else:
            self.head_kind = "segments" if any(m.needs_frames() for m in models) else "pooled"

    @classmethod
    def load(cls, bundle: Any, upstream: str | None = None, device: str = "cpu",
             max_models: int | None = None) -> TorchBackend:
        """The bundle's models and encoder; ``device`` runs both there (cpu by default: no CUDA start-up
        for a clip; ``auto``, ``cuda``, ``cuda:N``, ``mps`` as for ``run``)."""
        dirs = bundle.models[:max_models] if max_models else bundle.models
        if not dirs:
            raise FileNotFoundError(f"{bundle.path}: no saved model to run (export it to ONNX and predict the export)")
        models = [Method.load(d) for d in dirs]
        _check_classes(models, bundle)
        if str(device).lower() != "cpu":
            from emoboost.utils import resolve_device

            device = resolve_device(device)
            models = [m.to_device(device) for m in models]
        up = None
        if "ssl" in bundle.features:
            from emoboost.upstreams import build_upstream

            layers = _layers_read(models, bundle)  # the fingerprint is checked before any weights are read;
            up = build_upstream(upstream or bundle.upstream["spec"], expect_fingerprint=bundle.fingerprint,
                                max_layer=max(layers) if layers else None,  # the encoder cut at the deepest layer used
                                device=device)
        backend = cls(models, bundle, up)
        backend.check_layers()
        return backend

    def check_layers(self) -> None:
        """Refuse, once and clearly, an encoder cut below the deepest hidden state the models read."""
        if self.upstream is None:
            return
        n = int(self.upstream.num_layers)
        have = int(getattr(self.upstream, "layers_out", n))
        need: set[int] = set()
        for m in self.models:
            try:
                need |= {int(v) for v in m.ssl_layers(n)}
            except ValueError:
                need |= {int(v) for v in self.bundle.upstream.get("layers") or []}
        bad = sorted(v for v in need if v >= have)
        if bad:
            raise ValueError(f"the model reads hidden state(s) {bad}, but the encoder returns hidden states "
                             f"0..{have - 1} only (built with max_layer={have - 1}); build it with "
                             f"max_layer >= {bad[-1]} or without a cut")

    # -- the backend interface -----------------------------------------------------------------------
    def min_samples(self) -> int:
        if self.upstream is None:
            return 0
        from emoboost.features.encode import min_tail

        return min_tail(self.upstream.sample_rate, self.upstream.frame_rate)

    def _spec(self) -> Any:
        from emoboost.features.store import StoreSpec

        return StoreSpec(encoding=self.bundle.segment_encoding, frames="all",
                         window=float(self.bundle.encoder_window), segmenting=self.seg)

    def encode(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        from emoboost.features.encode import encode_clip

        return encode_clip(self.upstream, block, self._spec())

    def _data(self, n: int, feats: dict[str, list], ssl: Any = None) -> UtteranceSet:
        """Prediction input: no labels, and no speakers (each clip is normalised with the training
        statistics, never with its batch-mates': a clip's answer must not depend on what else is
        predicted with it)."""
        return UtteranceSet(ids=[f"x{i}" for i in range(n)], features=feats, ssl=ssl)

    def _proba(self, data: UtteranceSet, per_segment: bool) -> np.ndarray:
        """Ensemble mean over the models: [S, C] segment posteriors, or [N, C] utterance posteriors."""
        if per_segment:
            return np.mean([m.predict_segments(data)[0] for m in self.models], axis=0)
        from emoboost.methods.adaptation import predict_adapted  # adapting models: profiles, population head

        return np.mean([predict_adapted(m, data) for m in self.models], axis=0)

    def _stats_data(self, stats: Sequence[Any]) -> UtteranceSet:
        from emoboost.features.views import SSLView, StatsSource

        src = StatsSource(list(stats), self.frame_rate)
        src.num_layers = int(self.upstream.num_layers)  # layer choices (-1, weighted) resolve as in training
        return self._data(len(stats), {}, SSLView(src))

    def pooled(self, stats: Sequence[Any], profile: Any = None) -> np.ndarray:
        data = self._stats_data(stats)
        if profile is not None:  # the caller's speaker, explicitly: every utterance adapted with it
            data.profiles = [profile] * len(stats)
        return self._proba(data, False)

    def adapters(self) -> list[str]:
        """Fingerprints of the models' speaker adapters; one line when a speaker profile cannot be used."""
        from emoboost.inference.bundle import not_adaptable
        from emoboost.methods.adaptation import adapter_for

        found = [adapter_for(m) for m in self.models] if self.head_kind == "pooled" else [None]
        if any(a is None for a in found):
            raise ValueError(not_adaptable(self.bundle.path, self.bundle.method))
        return [a.fingerprint() for a in found]

    def terms(self, stats: Sequence[Any]) -> dict:
        """What these utterances add to a speaker profile, per model: {fingerprint: (sum x, sum p)}."""
        from emoboost.methods.adaptation import clip_terms

        data = self._stats_data(stats)
        return {fp: t for m in self.models for fp, t in clip_terms(m, data).items()}

    def segments(self, block: np.ndarray) -> np.ndarray:
        from emoboost.features.pipeline import wav_features

        acoustic = [f for f in self.features if f != "ssl"]
        feats = {k: [v] for k, v in wav_features(block, acoustic, self.seg).items()} if acoustic else {}
        ssl = None
        if "ssl" in self.features:
            from emoboost.features.views import ArraySource, SSLView

            frames, seg_frames = self.encode(block)
            src = ArraySource([frames], [len(block)], frame_rate=self.frame_rate, encoding=self._spec().encoding,
                              segment_frames=seg_frames or None, sample_rate=self.sample_rate)
            src.segmenting = self.seg
            src.num_layers = int(self.upstream.num_layers)
            ssl = SSLView(src)
        return self._proba(self._data(1, feats, ssl), True)

    def whole(self, wav: np.ndarray) -> np.ndarray:
        from emoboost.features.pipeline import wav_features

        feats = wav_features(wav, self.features, self.seg)
        return self._proba(self._data(1, {k: [v] for k, v in feats.items()}), False)[0]


def _check_classes(models: list[Method], bundle: Any) -> None:
    """The models answer for the bundle's classes, in its order: else one line, before any audio."""
    for m, d in zip(models, bundle.models):
        if list(m.classes) != list(bundle.classes):
            raise ValueError(f"{d}: the model's classes {list(m.classes)} are not the bundle's {list(bundle.classes)} "
                             f"({bundle.path}): a mismatched bundle would put wrong names on the answers")
