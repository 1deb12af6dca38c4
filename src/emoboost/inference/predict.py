"""Run trained models on new audio: labels, class probabilities and an optional segment timeline.

A bundle is weights + config only (never code): a run directory (its ``bundle.json`` lists the fold
models; their posteriors are averaged, an ensemble of models that each saw 9/10 of the speakers) or a
single saved model directory with a ``bundle.json`` beside ``method.json``. An ONNX export directory
(:mod:`emoboost.inference.export`) is run by :class:`emoboost.inference.onnx_predict.OnnxPredictor`; :func:`load_predictor`
picks the right one, and :func:`predict_file` / :func:`predict_regions` work with either.

Memory does not grow with duration: files are read block by block (:func:`emoboost.audio.stream_audio`)
and encoded one encoder window (30 s) at a time. Pooled models (linear, logreg) get the exact
statistics of all of a file's frames; frame models get 3 s window posteriors.

What is labelled (decisions, see the README):

* clips shorter than :data:`MIN_DURATION` (0.25 s) are refused with an :class:`~emoboost.audio.AudioError`:
  the shortest speech region the VAD keeps, and far above one encoder frame (20-25 ms), below which
  there is nothing to classify;
* digital silence (peak below -60 dBFS, :data:`emoboost.audio.SILENCE_DB`) is not classified: the result
  has ``silent: true``, ``label: null`` and no probabilities (a model fed silence still answers
  confidently, and that answer means nothing);
* files longer than :data:`VAD_AUTO_SECONDS` (30 s, one Whisper encoder window) get voice activity
  detection by default: only speech is classified, window by window, and the file label is the
  duration-weighted mean of the windows. Shorter files are almost always one utterance (every corpus the
  models are trained on), so they are classified whole, as in training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from emoboost.audio import (
    SAMPLE_RATE,
    SILENCE_DB,
    AudioError,
    Segmenting,
    audio_info,
    is_silent,
    load_audio,
)
from emoboost.inference.engine import (
    MIN_DURATION,
    STREAM_BLOCK_SECONDS,
    VAD_AUTO_SECONDS,
    WINDOW_BATCH,
    Prediction,
    _exact_blocks,
    _Meter,
    _rounded,
    silent_prediction,
    too_short,
)
from emoboost.methods import Method, UtteranceSet

CHUNK_SEGMENTS = 16


def _unknown_speakers(n: int) -> np.ndarray:
    """No clip's speaker is known to the model: each is normalised with the training statistics, never
    with its batch-mates' (a clip's answer must not depend on what else is predicted with it)."""
    return np.full(n, None, dtype=object)


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
    def load(cls, path: str | Path, upstream: str | None = None, max_models: int | None = None,
             device: str = "cpu") -> Predictor:
        """``device`` runs the encoder and the torch models there (cpu by default: no CUDA start-up for a
        clip; ``auto``, ``cuda``, ``cuda:N``, ``mps`` as for ``run``)."""
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
        if str(device).lower() != "cpu":
            from emoboost.utils import resolve_device

            device = resolve_device(device)
            models = [m.to_device(device) for m in models]
        up = None
        if "ssl" in bundle["features"]:
            from emoboost.upstreams import build_upstream

            spec = upstream or bundle["upstream"]["spec"]
            layers = bundle["upstream"].get("layers")  # fingerprint checked before any weights are read;
            up = build_upstream(spec, expect_fingerprint=bundle["upstream"].get("fingerprint") or None,
                                max_layer=max(layers) if layers else None,  # encoder cut at the deepest layer used
                                device=device)
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

    @property
    def sample_rate(self) -> int:
        return self.seg.sample_rate

    @property
    def ensemble_size(self) -> int:
        return len(self.models)

    def min_samples(self) -> int:
        """Shortest clip labelled: :data:`MIN_DURATION`, and at least one encoder frame (plus one sample)."""
        n = int(round(MIN_DURATION * self.sample_rate))
        if self.upstream is not None:
            from emoboost.features.encode import min_tail

            n = max(n, min_tail(self.upstream.sample_rate, self.upstream.frame_rate))
        return n

    def check_wav(self, wav: np.ndarray, path: str = "<array>") -> np.ndarray:
        """Mono, finite, long enough: else an :class:`AudioError` naming ``path``."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(path, f"expected mono samples [T], got shape {wav.shape}")
        if len(wav) < self.min_samples():
            raise too_short(path, len(wav) / self.sample_rate, self.min_samples() / self.sample_rate)
        if not np.all(np.isfinite(wav)):
            raise AudioError(path, "contains NaN or infinite samples")
        return wav

    def _check_layers(self) -> None:
        """Refuse, once and clearly, an encoder cut below the deepest hidden state the models read."""
        if getattr(self, "_layers_ok", False) or self.upstream is None:
            return
        n = int(self.upstream.num_layers)
        have = int(getattr(self.upstream, "layers_out", n))
        need: set[int] = set()
        for m in self.models:
            try:
                need |= {int(v) for v in m.ssl_layers(n)}
            except ValueError:
                need |= {int(v) for v in (self.bundle.get("upstream") or {}).get("layers") or []}
        bad = sorted(v for v in need if v >= have)
        if bad:
            raise ValueError(f"the model reads hidden state(s) {bad}, but the encoder returns hidden states "
                             f"0..{have - 1} only (built with max_layer={have - 1}); build it with "
                             f"max_layer >= {bad[-1]} or without a cut")
        self._layers_ok = True

    def _ssl_source(self, frames: list, num_samples: list[int], seg_frames: int, pooled: bool):
        """In-memory SSL source of clips (frames [L, T, D], or their Stats when ``pooled``), reporting the
        model's layer count even when the encoder was cut (layer choices such as -1 or ``weighted``
        resolve against the full model, as in training)."""
        from emoboost.features.store import Stats
        from emoboost.features.views import ArraySource, StatsSource

        fr = float(self.upstream.frame_rate)
        if pooled:
            stats = [f if isinstance(f, Stats) else Stats.of(f, n, fr, seg_frames) for f, n in zip(frames, num_samples)]
            src = StatsSource(stats, fr)
        else:
            src = ArraySource(frames, num_samples, frame_rate=fr, encoding=self._store_spec().encoding,
                              segment_frames=seg_frames or None, sample_rate=self.sample_rate)
            src.segmenting = self.seg
        src.num_layers = int(self.upstream.num_layers)
        return src

    def posteriors_many(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """[N, C] unrounded posteriors, each 16 kHz clip classified on its own as one utterance
        (VAD windows; no duration or silence checks here)."""
        from emoboost.features.pipeline import wav_features

        if not len(wavs):
            return np.zeros((0, len(self.classes)))
        if "ssl" not in self.features:
            feats = [wav_features(np.asarray(w, np.float32), self.features, self.seg) for w in wavs]
            return self._mean_proba(self._dataset_many(feats), False)
        from emoboost.features.encode import encode_clip
        from emoboost.features.store import Stats
        from emoboost.features.views import SSLView

        self._check_layers()
        spec = self._store_spec()
        pooled = self._pooled_only()
        frames, seg_frames = [], 0
        for w in wavs:
            f, seg_frames = encode_clip(self.upstream, np.asarray(w, np.float32), spec)
            # pooled models keep only the statistics: the batch's frames never pile up
            frames.append(Stats.of(f, len(w), float(self.upstream.frame_rate), seg_frames) if pooled else f)
            del f
        src = self._ssl_source(frames, [len(w) for w in wavs], seg_frames, pooled)
        acoustic = [f for f in self.features if f != "ssl"]
        feats = [wav_features(np.asarray(w, np.float32), acoustic, self.seg) if acoustic else {} for w in wavs]
        return self._mean_proba(self._dataset_many(feats, SSLView(src)), False)

    def posteriors(self, wav: np.ndarray) -> np.ndarray:
        """[C] unrounded posteriors of one 16 kHz mono clip (checked like :meth:`predict_wav`)."""
        return self.posteriors_many([self.check_wav(wav)])[0]

    def predict_wav(self, wav: np.ndarray, path: str = "<array>", timeline: bool = False) -> Prediction:
        """Label one waveform. SSL models see the clip encoder window by encoder window (30 s), so
        memory stays bounded for long audio; pooled models get the exact statistics of all frames.
        Too short clips raise :class:`AudioError`; digital silence is flagged, not labelled."""
        wav = self.check_wav(wav, path)
        sr = self.sample_rate
        if is_silent(wav):
            return silent_prediction(path, len(wav) / sr)
        pred = self._predict_loaded(wav, path, timeline)
        pred.duration = len(wav) / sr
        return pred

    def _predict_loaded(self, wav: np.ndarray, path: str, timeline: bool) -> Prediction:
        from emoboost.features.pipeline import UTTERANCE_FEATURES, wav_features

        sr = self.sample_rate
        if all(f in UTTERANCE_FEATURES for f in self.features):
            seg_proba = self._mean_proba(self._dataset(wav_features(wav, self.features, self.seg)), True)
            return self._result(path, seg_proba.mean(axis=0), seg_proba, np.array([0.0]),
                                np.array([len(wav) / sr]), timeline)
        if "ssl" not in self.features:  # segment-level acoustic features only
            parts, starts = [], self.seg.starts(len(wav))
            for s in range(0, len(starts), CHUNK_SEGMENTS):
                feats = wav_features(wav, self.features, self.seg, start=s, stop=s + CHUNK_SEGMENTS)
                parts.append(self._mean_proba(self._dataset(feats), True))
            seg_proba = np.concatenate(parts)
            ends = np.minimum(starts + self.seg.length, len(wav) / sr)
            return self._result(path, seg_proba.mean(axis=0), seg_proba, starts, ends, timeline)
        block = self._block_samples()
        return self._predict_ssl((wav[b : b + block] for b in range(0, len(wav), block)), path, timeline)

    def _block_samples(self) -> int:
        """Blocks are whole encoder windows, and a multiple of the segment hop so windows never straddle."""
        block = int(round(float(self.bundle.get("encoder_window", 30.0)) * self.sample_rate))
        hop = self.seg.hop_samples
        return max(hop, block - block % hop)

    def _predict_ssl(self, blocks: Iterable[np.ndarray], path: str, timeline: bool) -> Prediction:
        """SSL prediction over consecutive blocks of :meth:`_block_samples` samples (the last may be short)."""
        from emoboost.features.encode import encode_clip, min_tail
        from emoboost.features.pipeline import wav_features
        from emoboost.features.store import Stats
        from emoboost.features.views import SSLView, StatsSource

        self._check_layers()
        spec = self._store_spec()
        sr = self.sample_rate
        hop = self.seg.hop_samples
        acoustic = [f for f in self.features if f != "ssl"]
        pooled_only = self._pooled_only()
        min_chunk = min_tail(self.upstream.sample_rate, self.upstream.frame_rate)
        frame_rate = float(self.upstream.frame_rate)
        total = total_sq = None
        n_frames = n_samples = 0
        seg_parts: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        for chunk in blocks:
            b0 = n_samples
            n_samples += len(chunk)
            if b0 > 0 and len(chunk) < min_chunk:
                continue  # a tail shorter than one encoder frame adds nothing (and is the last block)
            frames, seg_frames = encode_clip(self.upstream, chunk, spec)
            if pooled_only:
                s1 = np.empty((frames.shape[0], frames.shape[2]))
                s2 = np.empty_like(s1)
                for li, layer in enumerate(frames):  # one layer in float64 at a time: no [L, T, D] copy
                    x = layer.astype(np.float64)
                    s1[li], s2[li] = x.sum(axis=0), np.einsum("td,td->d", x, x)
                total = s1 if total is None else total + s1
                total_sq = s2 if total_sq is None else total_sq + s2
                n_frames += frames.shape[1]
                if timeline:  # each window classified as its own utterance
                    src = self._ssl_source([frames], [len(chunk)], seg_frames, pooled=False)
                    win_src = _windows_as_utterances(src, self.seg)
                    win_src.num_layers = src.num_layers
                    seg_parts.append(self._mean_proba(self._dataset({}, SSLView(win_src)), False))
            else:
                src = self._ssl_source([frames], [len(chunk)], seg_frames, pooled=False)
                feats = wav_features(chunk, acoustic, self.seg) if acoustic else {}
                seg_parts.append(self._mean_proba(self._dataset(feats, SSLView(src)), True))
            n_seg = len(seg_parts[-1]) if seg_parts else 0
            starts.append((b0 + np.arange(n_seg) * hop) / sr)
        st = np.concatenate(starts) if starts else np.zeros(0)
        ends = np.minimum(st + self.seg.length, n_samples / sr)
        seg_proba = np.concatenate(seg_parts) if seg_parts else np.zeros((0, len(self.classes)))
        if pooled_only:
            mean = total / n_frames
            std = np.sqrt(np.maximum(total_sq / n_frames - mean**2, 0.0))
            stats = Stats(mean.astype(np.float32), std.astype(np.float32), n_samples, n_frames, frame_rate)
            src = StatsSource([stats], frame_rate)
            src.num_layers = int(self.upstream.num_layers)
            proba = self._mean_proba(self._dataset({}, SSLView(src)), False)[0]
            if not timeline:
                seg_proba, st, ends = proba[None], np.array([0.0]), np.array([n_samples / sr])
        else:
            proba = seg_proba.mean(axis=0)
        pred = self._result(path, proba, seg_proba, st, ends, timeline)
        pred.duration = n_samples / sr
        return pred

    def _dataset(self, feats: dict[str, np.ndarray], ssl=None) -> UtteranceSet:
        n = len(ssl) if ssl is not None else 1
        return UtteranceSet(ids=[f"x{i}" for i in range(n)], y=np.full(n, -1), groups=_unknown_speakers(n),
                            features={k: [v] for k, v in feats.items()}, ssl=ssl)

    def _dataset_many(self, feats: list[dict[str, np.ndarray]], ssl=None) -> UtteranceSet:
        n = len(feats)
        names = list(feats[0]) if feats else []
        return UtteranceSet(ids=[f"x{i}" for i in range(n)], y=np.full(n, -1), groups=_unknown_speakers(n),
                            features={k: [f[k] for f in feats] for k in names}, ssl=ssl)

    def _result(self, path: str, proba: np.ndarray, seg_proba: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                timeline: bool) -> Prediction:
        tl = []
        if timeline:
            tl = [
                {"start": round(float(a), 3), "end": round(float(b), 3), "label": self.classes[int(p.argmax())],
                 "probabilities": _rounded(self.classes, p)}
                for a, b, p in zip(starts, ends, seg_proba)
            ]
        return Prediction(path, self.classes[int(proba.argmax())], _rounded(self.classes, proba), tl)

    def predict_stream(self, path: str | Path, timeline: bool = False) -> Prediction:
        """The whole file classified (no VAD), read block by block: memory does not grow with duration.

        Methods on utterance-level functionals (eGeMAPS/ComParE SVMs) need the whole waveform, which is
        then loaded; a silent long file is recognised only after it was read (one pass)."""
        from emoboost.audio import stream_audio
        from emoboost.features.pipeline import UTTERANCE_FEATURES

        sr = self.sample_rate
        block = self._block_samples()
        duration = audio_info(path)[0]
        if "ssl" not in self.features or any(f in UTTERANCE_FEATURES for f in self.features) or \
                duration * sr <= block:
            return self.predict_wav(load_audio(path, sr), str(path), timeline)
        meter = _Meter(_exact_blocks(stream_audio(path, sr, block / sr, reuse=True), block))
        pred = self._predict_ssl(meter, str(path), timeline)
        if meter.samples < self.min_samples():
            raise too_short(path, meter.samples / sr, self.min_samples() / sr)
        if meter.peak_dbfs() < SILENCE_DB:
            return silent_prediction(str(path), meter.samples / sr)
        return pred

    def predict_file(self, path: str | Path, timeline: bool = False, vad: bool | None = None) -> Prediction:
        """Label one file: ``vad=None`` uses VAD for files longer than :data:`VAD_AUTO_SECONDS`."""
        return predict_file(self, path, timeline=timeline, vad=vad)

    def predict_regions(self, path: str | Path, timeline: bool = True,
                        regions: Sequence[tuple[float, float]] | None = None, **vad_options) -> Prediction:
        """Label the speech of a file (see :func:`predict_regions`)."""
        return predict_regions(self, path, timeline=timeline, regions=regions, **vad_options)


# ------------------------------------------------------------------------------------------------
# files, VAD regions, inputs: shared by Predictor and OnnxPredictor
# ------------------------------------------------------------------------------------------------
def load_predictor(path: str | Path, upstream: str | None = None, threads: int | None = None,
                   device: str = "cpu"):
    """A :class:`Predictor` for a run or model directory, an ``OnnxPredictor`` for an ONNX export."""
    from emoboost.inference.bundle import is_onnx_export

    if is_onnx_export(path):
        if upstream:
            raise ValueError(f"{path}: an ONNX export holds its own encoder; --upstream does not apply")
        if str(device).lower() not in ("cpu", "auto"):
            raise ValueError(f"{path}: an ONNX export runs on onnxruntime's CPU provider; --device {device} does not "
                             "apply (predict the run directory or final model on the GPU instead)")
        from emoboost.inference.onnx_predict import OnnxPredictor

        return OnnxPredictor(path, threads=threads)
    return Predictor.load(path, upstream=upstream, device=device)


def describe_predictor(predictor, path: str | Path) -> dict:
    """What answers: kind (``ensemble`` of fold models, one ``model``, ``onnx`` export), size, classes."""
    n = int(getattr(predictor, "ensemble_size", 1))
    kind = "onnx" if not isinstance(predictor, Predictor) else \
        (getattr(predictor, "kind", None) or ("ensemble" if n > 1 else "model"))
    info: dict = {"path": str(path), "kind": kind, "models": n, "classes": list(predictor.classes)}
    bundle = getattr(predictor, "bundle", None) or {}
    up = bundle.get("upstream") if isinstance(bundle, dict) else None
    if isinstance(up, dict) and up.get("fingerprint"):
        info["upstream"] = up["fingerprint"]
    elif not isinstance(predictor, Predictor):
        info["upstream"] = (getattr(predictor, "preprocessing", {}).get("upstream") or {}).get("fingerprint")
    if kind == "final" and isinstance(bundle, dict):
        info["summary"] = final_summary(bundle)
    return info


def describe_line(info: dict) -> str:
    what = {"ensemble": f"cross-validation run: ensemble of {info['models']} fold models (posteriors averaged)",
            "final": "final model trained on all speakers", "model": "one model",
            "onnx": "ONNX export (onnxruntime)"}.get(info["kind"], info["kind"])
    line = f"model: {info['path']} ({what}; {len(info['classes'])} classes)"
    return f"{line}: {info['summary']}" if info.get("summary") else line


def predict_file(predictor, path: str | Path, timeline: bool = False, vad: bool | None = None) -> Prediction:
    """Label one audio file with a :class:`Predictor` or ``OnnxPredictor``.

    ``vad``: True classifies speech regions only (:func:`predict_regions`), False the whole file, None
    (default) uses VAD for files longer than :data:`VAD_AUTO_SECONDS`. Clips shorter than
    :data:`MIN_DURATION` raise :class:`AudioError`; digital silence comes back flagged and unlabelled.
    """
    duration = audio_info(path)[0]  # header only: refuses missing, empty and non-audio files before decoding
    if duration < MIN_DURATION:
        raise too_short(path, duration)
    if (duration > VAD_AUTO_SECONDS) if vad is None else vad:
        return predict_regions(predictor, path, timeline=timeline)
    stream = getattr(predictor, "predict_stream", None)
    if stream is not None:
        return stream(path, timeline)
    sr = int(getattr(predictor, "sample_rate", SAMPLE_RATE))
    wav = load_audio(path, sr, min_duration=MIN_DURATION)
    if is_silent(wav):
        return silent_prediction(str(path), len(wav) / sr)
    pred = predictor.predict_wav(wav, str(path), timeline)
    pred.duration = len(wav) / sr
    return pred


def predict_regions(
    predictor,
    path: str | Path,
    timeline: bool = True,
    regions: Sequence[tuple[float, float]] | None = None,
    segment_length: float | None = None,
    min_window: float = 1.0,
    batch: int = WINDOW_BATCH,
    **vad_options,
) -> Prediction:
    """Label the speech of a file: VAD regions -> windows -> one posterior per window -> file label.

    Regions come from :func:`emoboost.inference.vad.speech_regions` over the streamed file (or are given, in
    seconds), are cut into windows of the model's segment length (:func:`emoboost.inference.vad.windows`), and
    only those windows are read (seeked at the native rate, else decoded block by block) and classified,
    each as one utterance; silence is never classified. The file label is the duration-weighted mean of
    the windows (:func:`emoboost.inference.timeline.weighted_label`); with no speech, ``label`` is None and
    ``speech_seconds`` 0. Memory: one block of audio plus one batch of windows, whatever the duration.
    """
    from emoboost.audio import stream_audio
    from emoboost.inference import vad
    from emoboost.inference.timeline import weighted_label

    sr = SAMPLE_RATE
    classes = list(predictor.classes)
    if segment_length is None:
        seg = getattr(predictor, "seg", None)
        segment_length = float(seg.length) if seg is not None else 3.0
    if regions is None:
        meter = _Meter(stream_audio(path, sr, STREAM_BLOCK_SECONDS, reuse=True))
        regions = vad.speech_regions(iter(meter), sr, **vad_options)
        duration = meter.samples / sr
        if meter.samples < MIN_DURATION * sr:
            raise too_short(path, duration)
        if meter.peak_dbfs() < SILENCE_DB:
            return silent_prediction(str(path), duration)
    else:
        duration = audio_info(path)[0]
    wins = vad.windows(regions, segment_length, min(min_window, segment_length))
    spans = [(int(round(a * sr)), int(round(b * sr))) for a, b in wins]
    many = getattr(predictor, "posteriors_many", None)
    entries: list[dict] = []
    pending: list[tuple[tuple[float, float], np.ndarray]] = []
    min_len = int(round(MIN_DURATION * sr))

    def flush() -> None:
        wavs = [w for _, w in pending]
        probs = many(wavs) if many is not None else np.stack([predictor.posteriors(w) for w in wavs])
        for ((a, b), _), p in zip(pending, probs):
            entries.append({"start": a, "end": b, "label": classes[int(np.argmax(p))],
                            "probabilities": {c: float(x) for c, x in zip(classes, p)}})
        pending.clear()

    for (a, b), w in zip(wins, read_spans(path, spans, sr)):
        if len(w) < min_len or is_silent(w):
            continue  # a sliver or digital silence inside a region: nothing to classify
        pending.append(((a, b), w))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    speech = float(sum(t["end"] - t["start"] for t in entries))
    if not entries:
        return Prediction(str(path), None, {}, [], duration=duration, speech_seconds=0.0)
    label, probs = weighted_label(entries, classes)
    tl = []
    if timeline:
        tl = [{**t, "probabilities": {c: round(v, 5) for c, v in t["probabilities"].items()}} for t in entries]
    return Prediction(str(path), label, {c: round(float(v), 5) for c, v in probs.items()}, tl,
                      duration=duration, speech_seconds=speech)


def read_spans(path: str | Path, spans: Sequence[tuple[int, int]], sample_rate: int = SAMPLE_RATE
               ) -> Iterator[np.ndarray]:
    """The samples ``[a, b)`` of each span (sorted, disjoint, at ``sample_rate``) as mono float32, one
    array per span (shorter where the file ends), reading only what the spans need.

    At the file's native rate each span is seeked and read (the same samples as :func:`load_audio`);
    otherwise the file is decoded and resampled block by block (:func:`emoboost.audio.stream_audio`)
    and the spans are cut from the stream, which stops after the last span.
    """
    import soundfile as sf

    from emoboost.audio import stream_audio

    if not spans:
        return
    if any(b < a for a, b in spans) or any(spans[i][0] < spans[i - 1][1] for i in range(1, len(spans))):
        raise ValueError("spans must be sorted, disjoint and non-negative")
    _, native, _ = audio_info(path)
    if native == sample_rate:
        try:
            f = sf.SoundFile(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise AudioError(path, f"unreadable audio ({e})") from e
        with f:
            if f.seekable():
                for a, b in spans:
                    try:
                        f.seek(min(a, f.frames))
                        data = f.read(b - a, dtype="float32", always_2d=True)
                    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
                        raise AudioError(path, f"unreadable audio at sample {a} ({e})") from e
                    if not np.all(np.isfinite(data)):
                        raise AudioError(path, "contains NaN or infinite samples")
                    yield np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
                return
    it = iter(spans)
    cur = next(it, None)
    carry = np.zeros(0, dtype=np.float32)
    pos = 0  # absolute sample index of carry[0]
    for block in stream_audio(path, sample_rate, STREAM_BLOCK_SECONDS, reuse=True):
        if cur is None:
            break
        carry = np.concatenate([carry, block]) if len(carry) else np.array(block)
        while cur is not None and pos + len(carry) >= cur[1]:
            a, b = cur
            yield carry[max(a - pos, 0) : b - pos].copy()
            cur = next(it, None)
        drop = len(carry) if cur is None else min(max(cur[0] - pos, 0), len(carry))
        carry = carry[drop:]
        pos += drop
    while cur is not None:  # spans running past the end of the file
        a, b = cur
        yield carry[max(a - pos, 0) : max(b - pos, 0)].copy()
        cur = next(it, None)


# ------------------------------------------------------------------------------------------------
# input lists: files, folders, list files
# ------------------------------------------------------------------------------------------------
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif",
                              ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"})
LIST_EXTENSIONS = frozenset({".txt", ".lst"})


def expand_inputs(items: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Command-line inputs -> (audio files in order, without repeats; [(input, problem)] for bad inputs).

    A folder gives all audio files below it (by extension, sorted); a ``.txt`` / ``.lst`` file gives
    the paths it lists, one per line (blank lines and ``#`` comments skipped; relative paths are
    relative to the list file's folder), folders among them expanded; anything else is taken as an
    audio file and checked when it is read.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            files.append(p)

    def folder(p: Path) -> None:
        found = sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXTENSIONS and q.is_file())
        if not found:
            problems.append((str(p), f"folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"))
        for q in found:
            add(q)

    for item in items:
        p = Path(item)
        if p.is_dir():
            folder(p)
        elif p.suffix.lower() in LIST_EXTENSIONS and p.is_file():
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                problems.append((str(p), f"cannot read the list file ({e})"))
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line).expanduser()
                q = q if q.is_absolute() else p.parent / q
                if q.is_dir():
                    folder(q)
                else:
                    add(q)
        else:
            add(p)
    return files, problems


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def limit_heap_growth(threshold: int = 4 << 20) -> bool:
    """glibc: serve allocations of ``threshold`` bytes or more by mmap, returned to the OS when freed.

    glibc raises its mmap threshold after the first large free, so the log-mel and encoder temporaries
    of every 30 s window (tens of MB, allocated and freed per window) then come from the heap, which
    fragments: without VAD, peak RSS crept ~100 MB above a 10 s file's over the first minutes of a long
    file. A fixed 4 MiB threshold halves that (+55 MB) for ~10 % more CPU time (page faults of fresh
    mappings); 1 MiB saves a few MB more but costs ~25 % (benchmarks/long_audio.py). Process-wide, so
    only the command line calls it; a no-op off Linux/glibc or when ``MALLOC_MMAP_THRESHOLD_`` is set.
    Returns whether it took effect.
    """
    import os
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _windows_as_utterances(src, seg: Segmenting):
    """Each fixed window of a one-clip source as its own utterance (timelines of pooled models)."""
    from emoboost.features.views import ArraySource

    frames = src.raw_frames(0)
    seg_utt, starts = src.segment_index(seg)
    length = src.window_frames(seg)
    parts = [np.asarray(frames[:, s : s + length], dtype=np.float32) for s in starts]
    parts = [p for p in parts if p.shape[1] > 0] or [np.asarray(frames, dtype=np.float32)]
    return ArraySource(parts, frame_rate=src.frame_rate)


# ------------------------------------------------------------------------------------------------
# command line: ``emoboost predict MODEL INPUT...``
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# bundle kinds (final model vs cross-validation ensemble)
# ------------------------------------------------------------------------------------------------
def bundle_kind(bundle: dict, n_models: int) -> str:
    """``final`` (one model on all speakers, :mod:`emoboost.experiment.refit`), ``ensemble`` (a run's fold models,
    posteriors averaged) or ``model`` (one saved fold or other model directory)."""
    if bundle.get("kind") == "final":
        return "final"
    return "ensemble" if n_models > 1 else "model"


def final_summary(bundle: dict) -> str | None:
    """One line on a final model's provenance (training speakers, CV numbers), None for other bundles."""
    if bundle.get("kind") != "final":
        return None
    from emoboost.experiment.refit import describe_cv

    tr = bundle.get("training") or {}
    return (f"final {bundle.get('method', '?')} model trained on all {tr.get('speakers', '?')} speakers "
            f"({tr.get('utterances', '?')} utterances); cross-validation {describe_cv(bundle.get('cv') or {})}")
