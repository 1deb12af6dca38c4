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
        final = isinstance(bundle, dict) and bundle.get("kind") == "final"
        if final and not (path / "method.json").exists():
            raise FileNotFoundError(f"{path}: final-model bundle without method.json (the bundle is incomplete)")
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
        pred = cls(models, bundle, up)
        pred.kind = bundle_kind(bundle, len(models))  # type: ignore[attr-defined]
        return pred

    # -- inference ----------------------------------------------------------------------------
    def _mean_proba(self, data: UtteranceSet, per_segment: bool) -> np.ndarray:
        """Ensemble mean over the models: [S, C] segment posteriors, or [N, C] utterance posteriors."""
        if per_segment:
            return np.mean([m.predict_segments(data)[0] for m in self.models], axis=0)
        return np.mean([m.predict_proba(data) for m in self.models], axis=0)

    def _store_spec(self):
        from emoboost.features.store import StoreSpec

        return StoreSpec(encoding=self.bundle.get("segment_encoding", "segment"), frames="all",
                         window=float(self.bundle.get("encoder_window", 30.0)), segmenting=self.seg)

    def _pooled_only(self) -> bool:
        return not any(m.needs_frames() for m in self.models)

    def predict_wav(self, wav: np.ndarray, path: str = "<array>", timeline: bool = False) -> Prediction:
        """Label one waveform. SSL models see the clip encoder window by encoder window (30 s), so
        memory stays bounded for long audio; pooled models get the exact statistics of all frames."""
        from emoboost.features.pipeline import UTTERANCE_FEATURES, wav_features

        sr = self.seg.sample_rate
        if all(f in UTTERANCE_FEATURES for f in self.features):
            seg_proba = self._mean_proba(self._dataset(wav_features(wav, self.features, self.seg)), True)
            return self._result(path, seg_proba.mean(axis=0), seg_proba, np.array([0.0]),
                                np.array([len(wav) / sr]), timeline)
        if "ssl" not in self.features:  # segment-level acoustic features only
            parts, starts = [], self.seg.starts(len(wav))
            for s in range(0, len(starts), CHUNK_SEGMENTS):
                feats = wav_features(wav, self.features, self.seg, None, start=s, stop=s + CHUNK_SEGMENTS)
                parts.append(self._mean_proba(self._dataset(feats), True))
            seg_proba = np.concatenate(parts)
            ends = np.minimum(starts + self.seg.length, len(wav) / sr)
            return self._result(path, seg_proba.mean(axis=0), seg_proba, starts, ends, timeline)
        return self._predict_ssl(wav, path, timeline)

    def _predict_ssl(self, wav: np.ndarray, path: str, timeline: bool) -> Prediction:
        from emoboost.features.pipeline import wav_features
        from emoboost.features.store import ArraySource, SSLView, Stats, StatsSource, encode_clip

        spec = self._store_spec()
        sr = self.seg.sample_rate
        # Blocks are whole encoder windows, and a multiple of the segment hop so windows never straddle.
        block = int(round(spec.window * sr))
        hop = self.seg.hop_samples
        block = max(hop, block - block % hop)
        acoustic = [f for f in self.features if f != "ssl"]
        pooled_only = self._pooled_only()
        total = total_sq = None
        n_frames, frame_rate = 0, 50.0
        seg_parts: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        for b0 in range(0, len(wav), block):
            chunk = wav[b0 : b0 + block]
            if b0 > 0 and len(chunk) < self.seg.sample_rate // 50 + 1:
                break
            frames, seg_frames = encode_clip(self.upstream, chunk, spec)
            frame_rate = float(self.upstream.frame_rate)
            src = ArraySource([frames], [len(chunk)], frame_rate=frame_rate, encoding=spec.encoding,
                              segment_frames=seg_frames or None)
            src.segmenting = self.seg
            if pooled_only:
                f64 = frames.astype(np.float64)
                s1, s2 = f64.sum(axis=1), np.square(f64).sum(axis=1)
                total = s1 if total is None else total + s1
                total_sq = s2 if total_sq is None else total_sq + s2
                n_frames += frames.shape[1]
                if timeline:  # each window classified as its own utterance
                    win_src = _windows_as_utterances(src, self.seg)
                    seg_parts.append(self._mean_proba(self._dataset({}, SSLView(win_src)), False))
            else:
                feats = wav_features(chunk, acoustic, self.seg) if acoustic else {}
                seg_parts.append(self._mean_proba(self._dataset(feats, SSLView(src)), True))
            n_seg = len(seg_parts[-1]) if seg_parts else 0
            starts.append((b0 + np.arange(n_seg) * hop) / sr)
        st = np.concatenate(starts) if starts else np.zeros(0)
        ends = np.minimum(st + self.seg.length, len(wav) / sr)
        seg_proba = np.concatenate(seg_parts) if seg_parts else np.zeros((0, len(self.classes)))
        if pooled_only:
            mean = total / n_frames
            std = np.sqrt(np.maximum(total_sq / n_frames - mean**2, 0.0))
            stats = Stats(mean.astype(np.float32), std.astype(np.float32), len(wav), n_frames, frame_rate)
            proba = self._mean_proba(self._dataset({}, SSLView(StatsSource([stats], frame_rate))), False)[0]
            if not timeline:
                seg_proba, st, ends = proba[None], np.array([0.0]), np.array([len(wav) / sr])
        else:
            proba = seg_proba.mean(axis=0)
        return self._result(path, proba, seg_proba, st, ends, timeline)

    def _dataset(self, feats: dict[str, np.ndarray], ssl=None) -> UtteranceSet:
        n = len(ssl) if ssl is not None else 1
        return UtteranceSet(ids=[f"x{i}" for i in range(n)], y=np.full(n, -1), groups=np.array(["?"] * n),
                            features={k: [v] for k, v in feats.items()}, ssl=ssl)

    def _result(self, path: str, proba: np.ndarray, seg_proba: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                timeline: bool) -> Prediction:
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


def _windows_as_utterances(src, seg: Segmenting):
    """Each fixed window of a one-clip source as its own utterance (timelines of pooled models)."""
    from emoboost.features.store import ArraySource

    frames = src.raw_frames(0)
    seg_utt, starts = src.segment_index(seg)
    length = src.window_frames(seg)
    parts = [np.asarray(frames[:, s : s + length], dtype=np.float32) for s in starts]
    parts = [p for p in parts if p.shape[1] > 0] or [np.asarray(frames, dtype=np.float32)]
    return ArraySource(parts, frame_rate=src.frame_rate)

# ------------------------------------------------------------------------------------------------
# bundle kinds (final model vs cross-validation ensemble)
# ------------------------------------------------------------------------------------------------
def bundle_kind(bundle: dict, n_models: int) -> str:
    """``final`` (one model on all speakers, :mod:`emoboost.final`), ``ensemble`` (a run's fold models,
    posteriors averaged) or ``model`` (one saved fold or other model directory)."""
    if bundle.get("kind") == "final":
        return "final"
    return "ensemble" if n_models > 1 else "model"


def final_summary(bundle: dict) -> str | None:
    """One line on a final model's provenance (training speakers, CV numbers), None for other bundles."""
    if bundle.get("kind") != "final":
        return None
    from emoboost.final import describe_cv

    tr = bundle.get("training") or {}
    return (f"final {bundle.get('method', '?')} model trained on all {tr.get('speakers', '?')} speakers "
            f"({tr.get('utterances', '?')} utterances); cross-validation {describe_cv(bundle.get('cv') or {})}")
