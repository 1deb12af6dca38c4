"""Run trained models on new audio: labels, class probabilities and an optional segment timeline.

A bundle is weights + config only (never code): a run directory (its ``bundle.json`` lists the fold
models; their posteriors are averaged, an ensemble of models that each saw 9/10 of the speakers) or a
single saved model directory with a ``bundle.json`` beside ``method.json``. Long audio is processed a
chunk of segments at a time, so memory does not grow with duration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoboost.audio import Segmenting, load_audio
from emoboost.methods import Method, UtteranceSet

CHUNK_SEGMENTS = 16


@dataclass
class Prediction:
    path: str
    label: str
    probabilities: dict[str, float]
    timeline: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {"path": self.path, "label": self.label, "probabilities": self.probabilities}
        if self.timeline:
            d["timeline"] = self.timeline
        return d


class Predictor:
    """Loaded bundle: models, upstream and segmenting, ready for :meth:`predict_file`."""

    def __init__(self, models: list[Method], bundle: dict, upstream=None):
        self.models = models
        self.bundle = bundle
        self.classes: list[str] = bundle["classes"]
        self.features: list[str] = bundle["features"]
        self.seg = Segmenting(bundle["segment_length"], bundle.get("segment_hop"))
        self.upstream = upstream

    @classmethod
    def load(cls, path: str | Path, upstream: str | None = None, max_models: int | None = None) -> Predictor:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run directory or model")
        bundle_path = path / "bundle.json"
        if not bundle_path.exists():
            raise FileNotFoundError(f"{path}: not a run directory or model bundle (no bundle.json)")
        bundle = json.loads(bundle_path.read_text())
        if (path / "method.json").exists():
            model_dirs = [path]
        else:
            model_dirs = [path / m for m in bundle.get("models", [])]
            if not model_dirs:
                raise FileNotFoundError(f"{path}: the run saved no models (rerun without --no-save-models)")
        if max_models:
            model_dirs = model_dirs[:max_models]
        models = [Method.load(d) for d in model_dirs]
        up = None
        if "ssl" in bundle["features"]:
            from emoboost.upstreams import build_upstream

            spec = upstream or bundle["upstream"]["spec"]
            up = build_upstream(spec)
            want = bundle["upstream"].get("fingerprint")
            if want and up.fingerprint() != want:
                raise ValueError(
                    f"upstream {spec!r} has fingerprint {up.fingerprint()}, but the models were trained on "
                    f"{want}: features would not match (pass --upstream with the training encoder)"
                )
        return cls(models, bundle, up)

    def _proba_chunk(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        data = UtteranceSet(ids=["x"], y=np.array([-1]), groups=np.array(["?"]), features={k: [v] for k, v in feats.items()})
        return np.mean([m.predict_segments(data)[0] for m in self.models], axis=0)

    def predict_wav(self, wav: np.ndarray, path: str = "<array>", timeline: bool = False) -> Prediction:
        from emoboost.features.pipeline import UTTERANCE_FEATURES, wav_features

        n_seg = self.seg.num_segments(len(wav))
        if all(f in UTTERANCE_FEATURES for f in self.features):
            seg_proba = self._proba_chunk(wav_features(wav, self.features, self.seg))
            starts = np.array([0.0])
            ends = np.array([len(wav) / self.seg.sample_rate])
        else:
            parts = []
            for s in range(0, n_seg, CHUNK_SEGMENTS):
                feats = wav_features(wav, self.features, self.seg, self.upstream, start=s, stop=s + CHUNK_SEGMENTS)
                parts.append(self._proba_chunk(feats))
            seg_proba = np.concatenate(parts)
            starts = self.seg.starts(len(wav))
            ends = np.minimum(starts + self.seg.length, len(wav) / self.seg.sample_rate)
        proba = seg_proba.mean(axis=0)
        tl = []
        if timeline:
            tl = [
                {"start": round(float(a), 3), "end": round(float(b), 3), "label": self.classes[int(p.argmax())],
                 "probabilities": {c: round(float(x), 5) for c, x in zip(self.classes, p)}}
                for a, b, p in zip(starts, ends, seg_proba)
            ]
        return Prediction(path, self.classes[int(proba.argmax())],
                          {c: round(float(x), 5) for c, x in zip(self.classes, proba)}, tl)

    def predict_file(self, path: str | Path, timeline: bool = False) -> Prediction:
        wav = load_audio(path, min_duration=0.0)
        return self.predict_wav(wav, str(path), timeline)
