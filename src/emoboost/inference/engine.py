"""The inference engine: one model applied to audio, with every rule written once.

A trained model on disk (:mod:`emoboost.inference.bundle`) is run by one of two small backends that
differ only in how they encode a block of audio and apply the classifier head:
:class:`~emoboost.inference.backend_torch.TorchBackend` (the saved methods and the encoder in torch)
and :class:`~emoboost.inference.backend_onnx.OnnxBackend` (an ONNX export in onnxruntime, no torch).
Everything else is here, the same for both and for every caller (``emoboost predict``,
``emoboost.load``, the server):

* audio in any form (a file, read block by block; an array) -> blocks of one encoder window (a
  multiple of the segment hop, so segments never straddle two blocks); a trailing block shorter than
  one encoder frame adds nothing;
* pooled heads (linear, logreg): running per-layer frame sums over the blocks, so a file of any
  length is one utterance with exact statistics; their timeline = the same head on each segment
  window of the frames;
* segment heads (MS-EmoBoost, SSL-CNN, ...): posteriors per segment, utterance = their mean;
* clips shorter than :data:`MIN_DURATION` are refused; digital silence (peak below
  :data:`emoboost.audio.SILENCE_DB`) is flagged, not labelled (a model fed silence still answers
  confidently, and that answer means nothing); files longer than :data:`VAD_AUTO_SECONDS` (one Whisper
  encoder window) get voice activity detection by default: only speech is classified, window by
  window, and the file label is the duration-weighted mean of the windows;
* each clip is one utterance of an unknown speaker: nothing a model computes for one clip depends on
  the other clips it is predicted with — unless the caller names its speaker with an :class:`Adapt`
  (a speaker profile, :mod:`emoboost.inference.profiles`), the only way speaker statistics enter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from emoboost.audio import (
    SAMPLE_RATE,
    SILENCE_DB,
    AudioError,
    Segmenting,
    audio_info,
    check_samples,
    is_silent,
    load_audio,
    peak_dbfs,
)
from emoboost.audio_checks import LevelChecks, audio_warnings
from emoboost.features.encode import encoder_windows, min_tail
from emoboost.features.store import FrameSums

MIN_DURATION = 0.25
"""Shortest clip (seconds) that predict labels; shorter ones are refused."""
VAD_AUTO_SECONDS = 30.0
"""Files longer than this get VAD unless told otherwise (``vad=None``; ``--vad`` / ``--no-vad``)."""
WINDOW_BATCH = 16
"""VAD windows classified per model call."""
STREAM_BLOCK_SECONDS = 30.0
"""Audio read per block when a file is streamed for VAD: one Whisper encoder window."""


class NonFiniteAnswer(ValueError):
    """The model's probabilities for a clip are NaN or infinite (its weights, or audio it cannot label):
    the server answers 422, every other caller gets this one-line error."""


@dataclass
class Prediction:
    """One file's answer. ``label`` is None when nothing was classified (silence, or no speech found)."""

    path: str
    label: str | None
    probabilities: dict[str, float]
    timeline: list[dict] = field(default_factory=list)
    silent: bool = False  # peak below -60 dBFS: not classified
    duration: float | None = None  # seconds of audio read
    speech_seconds: float | None = None  # with VAD: seconds classified (None: the whole file was)
    warnings: list[str] = field(default_factory=list)  # emoboost.audio_checks.LevelChecks: DC offset, clipping, noise

    def to_dict(self) -> dict:
        d: dict = {"path": self.path, "label": self.label, "probabilities": self.probabilities,
                   "silent": self.silent, "warnings": list(self.warnings)}
        if self.duration is not None:
            d["duration"] = round(self.duration, 3)
        if self.speech_seconds is not None:
            d["vad"] = True
            d["speech_seconds"] = round(self.speech_seconds, 3)
        if self.timeline:
            d["timeline"] = self.timeline
        return d


def silent_prediction(path: str, duration: float) -> Prediction:
    """The result for digital silence: flagged, not labelled."""
    return Prediction(str(path), None, {}, [], silent=True, duration=duration)


def too_short(path: str | Path, seconds: float, minimum: float = MIN_DURATION) -> AudioError:
    return AudioError(path, f"too short to label: {seconds:.3f} s < minimum {minimum:.3f} s")


def rounded(classes: Sequence[str], p: np.ndarray) -> dict[str, float]:
    """Probabilities as the outputs show them: 5 decimals."""
    return {c: round(float(x), 5) for c, x in zip(classes, p)}


# ------------------------------------------------------------------------------------------------
# the block and window rules
# ------------------------------------------------------------------------------------------------
def block_samples(window_samples: int, hop_samples: int) -> int:
    """Samples per block: whole encoder windows, cut down to a multiple of the segment hop so that no
    segment straddles two blocks."""
    return max(int(hop_samples), int(window_samples) - int(window_samples) % int(hop_samples))


def timeline_windows(num_samples: int, num_frames: int, seg: Segmenting, frame_rate: float,
                     segment_frames: int = 0) -> list[tuple[float, float, int, int]]:
    """(start s, end s, first frame, stop frame) of the segment windows of one block, as the feature store
    cuts training windows (``SSLSource.segment_index``): fixed windows at the segment hop, or each encoded
    segment (``segment_frames`` > 0, the segment encoding). Times follow the samples (a window ends at
    the block's end at the latest), frames the encoder's own count."""
    end = num_samples / seg.sample_rate
    starts = seg.starts(num_samples)
    if segment_frames:
        spans = [(k * segment_frames, (k + 1) * segment_frames) for k in range(len(starts))]
    else:
        length = int(round(seg.length * frame_rate))
        spans = [(int(round(t * frame_rate)), int(round(t * frame_rate)) + length) for t in starts]
    out = [(float(t), min(float(t) + seg.length, end), a, min(b, num_frames))
           for t, (a, b) in zip(starts, spans) if min(b, num_frames) > a]
    return out or [(0.0, end, 0, num_frames)]


class _Meter:
    """Passes blocks through, counting samples and their peak (file-level silence in one pass) and
    running the level checks (:class:`emoboost.audio_checks.LevelChecks`) whose warnings the answer carries."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self.blocks = blocks
        self.samples = 0
        self.peak = 0.0
        self.checks = LevelChecks()

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in self.blocks:
            self.samples += len(b)
            if len(b):
                self.peak = max(self.peak, float(np.abs(b).max()))
                self.checks.add(b)
            yield b

    def peak_dbfs(self) -> float:
        return peak_dbfs(np.float64(self.peak))


def exact_blocks(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of blocks of any sizes into fresh arrays of exactly ``size`` samples (last: the rest)."""
    buf = np.empty(size, dtype=np.float32)
    n = 0
    for b in blocks:
        i = 0
        while i < len(b):
            take = min(size - n, len(b) - i)
            buf[n : n + take] = b[i : i + take]
            n += take
            i += take
            if n == size:
                yield buf.copy()
                n = 0
    if n:
        yield buf[:n].copy()


# ------------------------------------------------------------------------------------------------
# backends
# ------------------------------------------------------------------------------------------------
class Backend(Protocol):
    """What differs between torch and onnxruntime: encoding a block and applying the head."""

    name: str  # "torch" or "onnx"
    classes: list[str]
    sample_rate: int
    frame_rate: float  # encoder frames per second
    window_samples: int  # one encoder window
    seg: Segmenting  # segment length and hop (segment heads, timelines)
    head_kind: str  # "pooled" (mean frames -> head), "segments" (posteriors per segment), "whole" (whole clip)
    ensemble_size: int

    def min_samples(self) -> int:
        """The encoder's own shortest input (0 when there is no encoder)."""

    def encode(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        """Pooled heads: float32 frames [L, T, D] of one block, and frames per segment (segment encoding) or 0."""

    def pooled(self, stats: Sequence[Any]) -> np.ndarray:
        """Pooled heads: posteriors [N, C] of N utterances given their frame statistics."""

    def segments(self, block: np.ndarray) -> np.ndarray:
        """Segment heads: posteriors [S, C] of one block's segments."""

    def whole(self, wav: np.ndarray) -> np.ndarray:
        """Whole-clip heads (utterance functionals): posteriors [C] of one clip."""


@dataclass
class Adapt:
    """A speaker to adapt to (made by :func:`emoboost.inference.profiles.adapt_to`, which checks that the model
    adapts): its ``profile`` (None: the training population); a list ``heard`` collects the statistics of each
    utterance classified (a clip, or each VAD window): what the clip adds to the speaker's profile."""

    profile: Any = None
    heard: list | None = None


@dataclass
class _Run:
    proba: np.ndarray  # [C]
    windows: list[tuple[float, float, np.ndarray]]  # (start s, end s, posteriors) for the timeline
    samples: int


class Engine:
    """A loaded model (fold ensemble, final model or ONNX export) that labels audio.

    ``kind`` is ``final``, ``ensemble``, ``model`` or ``onnx``; ``backend`` names what runs it.
    """

    def __init__(self, backend: Backend, bundle: Any):
        self.backend = backend
        self.bundle = bundle  # emoboost.inference.bundle.Bundle
        self.classes: list[str] = list(backend.classes)
        self.sample_rate = int(backend.sample_rate)
        self.seg: Segmenting = backend.seg
        self.block = block_samples(backend.window_samples, self.seg.hop_samples)
        self.tail = min_tail(self.sample_rate, backend.frame_rate) if backend.head_kind != "whole" else 1

    @classmethod
    def load(cls, path: str | Path, upstream: str | None = None, backend: str = "auto", threads: int | None = None,
             device: str = "cpu", max_models: int | None = None) -> Engine:
        """The model at ``path`` with the backend ``backend``: ``auto`` (onnxruntime for an ONNX export or a
        model saved with one, when onnxruntime is installed; torch otherwise), ``torch`` or ``onnx``."""
        from emoboost.inference.bundle import read_bundle

        b = read_bundle(path)
        which = b.choose_backend(backend, device=device, upstream=upstream)
        if which == "onnx":
            from emoboost.inference.backend_onnx import OnnxBackend

            return cls(OnnxBackend(b.onnx_dir, threads=threads), b)
        from emoboost.inference.backend_torch import TorchBackend

        return cls(TorchBackend.load(b, upstream=upstream, device=device, max_models=max_models), b)

    # -- what this is ----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.bundle.kind

    @property
    def ensemble_size(self) -> int:
        return int(self.backend.ensemble_size)

    def describe(self) -> dict:
        """What answers: path, kind, backend, number of models, classes, encoder fingerprint."""
        return self.bundle.describe(backend=self.backend.name, models=self.ensemble_size)

    # -- the rules ---------------------------------------------------------------------------------
    def min_samples(self) -> int:
        """Shortest clip labelled: :data:`MIN_DURATION`, and at least what the encoder needs."""
        return max(int(round(MIN_DURATION * self.sample_rate)), int(self.backend.min_samples()))

    def check(self, wav: np.ndarray, name: str = "<array>") -> np.ndarray:
        """Mono, finite, long enough: else an :class:`AudioError` naming ``name``."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(name, f"expected mono samples [T], got shape {wav.shape}")
        if len(wav) < self.min_samples():
            raise too_short(name, len(wav) / self.sample_rate, self.min_samples() / self.sample_rate)
        check_samples(wav, name)  # finite, and a level the features survive
        return wav

    def blocks(self, wav: np.ndarray) -> Iterator[np.ndarray]:
        """A loaded clip's blocks: the encoder windows (:func:`emoboost.features.encode.encoder_windows`) of
        :func:`block_samples` each; a file is streamed in the same blocks."""
        return (wav[a:b] for a, b in encoder_windows(len(wav), self.block, self.tail))

    def _pooled(self, stats: list, adapt: Adapt | None, utterances: bool = True) -> np.ndarray:
        """The pooled head on utterance statistics, adapted to ``adapt``'s speaker (timeline windows: not heard)."""
        if adapt is None:
            return self.backend.pooled(stats)
        if utterances and adapt.heard is not None:
            adapt.heard.extend(stats)
        return self.backend.pooled(stats, adapt.profile)

    def _run(self, blocks: Iterable[np.ndarray], name: str, timeline: bool, adapt: Adapt | None = None) -> _Run:
        """Utterance posteriors over consecutive blocks of one clip (and its timeline windows)."""
        be, sr = self.backend, self.sample_rate
        sums = FrameSums()
        seg_probs: list[np.ndarray] = []
        windows: list[tuple[float, float, Any]] = []
        n = 0
        for block in blocks:
            b0 = n
            n += len(block)
            if b0 > 0 and len(block) < self.tail:
                continue  # a streamed tail shorter than one encoder frame adds nothing (encoder_windows' rule)
            if be.head_kind == "segments":
                p = be.segments(block)
                seg_probs.append(p)
                starts = b0 + np.arange(len(p)) * self.seg.hop_samples
                windows += [(s / sr, s / sr + self.seg.length, q) for s, q in zip(starts, p)]
                continue
            frames, seg_frames = be.encode(block)
            sums.add(frames)
            if timeline:  # each segment window of the block as its own utterance
                from emoboost.features.store import Stats

                for t0, t1, a, b in timeline_windows(len(block), frames.shape[1], self.seg, be.frame_rate, seg_frames):
                    windows.append((b0 / sr + t0, b0 / sr + t1, Stats.of(frames[:, a:b], len(block), be.frame_rate)))
            del frames
        if be.head_kind == "segments":
            proba = np.concatenate(seg_probs).mean(axis=0)
        else:
            proba = self._pooled([sums.stats(n, be.frame_rate)], adapt)[0]
            if windows:
                probs = self._pooled([w[2] for w in windows], adapt, utterances=False)
                windows = [(a, b, p) for (a, b, _), p in zip(windows, probs)]
        return _Run(np.asarray(proba, dtype=np.float64), windows, n)

    def _finite(self, proba: np.ndarray, name: str) -> np.ndarray:
        """No answer carries a NaN: non-finite posteriors mean the model or the input is broken."""
        proba = np.asarray(proba, dtype=np.float64)
        if not np.all(np.isfinite(proba)):
            raise NonFiniteAnswer(f"{name}: the model gave non-finite probabilities for this audio "
                             f"({self.bundle.path}: check its weights, or the audio's level)")
        return proba

    def _prediction(self, name: str, run: _Run, timeline: bool) -> Prediction:
        self._finite(run.proba, name)
        end = run.samples / self.sample_rate
        tl = [{"start": round(float(a), 3), "end": round(float(min(b, end)), 3),
               "label": self.classes[int(np.argmax(p))], "probabilities": rounded(self.classes, p)}
              for a, b, p in run.windows] if timeline else []
        if timeline and not tl:
            tl = [{"start": 0.0, "end": round(end, 3), "label": self.classes[int(np.argmax(run.proba))],
                   "probabilities": rounded(self.classes, run.proba)}]
        return Prediction(name, self.classes[int(np.argmax(run.proba))], rounded(self.classes, run.proba), tl,
                          duration=end)

    # -- waveforms ---------------------------------------------------------------------------------
    def posteriors_many(self, wavs: Sequence[np.ndarray], adapt: Adapt | None = None) -> np.ndarray:
        """[N, C] unrounded posteriors, each 16 kHz clip classified on its own as one utterance of an
        unknown speaker (VAD windows, batches; no duration or silence checks here)."""
        be = self.backend
        if not len(wavs):
            return np.zeros((0, len(self.classes)))
        if be.head_kind == "whole":
            return self._finite(np.stack([be.whole(np.asarray(w, np.float32)) for w in wavs]), "<batch>")
        if be.head_kind == "segments":
            return self._finite(np.stack([self._run(self.blocks(np.asarray(w, np.float32)), "", False).proba
                                          for w in wavs]), "<batch>")
        stats = []
        for w in wavs:
            sums = FrameSums()
            w = np.asarray(w, np.float32)
            for block in self.blocks(w):
                sums.add(be.encode(block)[0])
            stats.append(sums.stats(len(w), be.frame_rate))  # only statistics: a batch's frames never pile up
        return self._finite(self._pooled(stats, adapt), "<batch>")

    def posteriors(self, wav: np.ndarray) -> np.ndarray:
        """[C] unrounded posteriors of one 16 kHz mono clip (checked like :meth:`predict_wav`)."""
        return self.posteriors_many([self.check(wav)])[0]

    def predict_wav(self, wav: np.ndarray, name: str = "<array>", timeline: bool = False,
                    vad: bool | None = False, adapt: Adapt | None = None) -> Prediction:
        """Label one 16 kHz mono waveform. ``vad`` as for files (None: VAD when longer than
        :data:`VAD_AUTO_SECONDS`); False (the default here) classifies it whole. Too short clips raise
        :class:`AudioError`; digital silence is flagged, not labelled."""
        wav = self.check(wav, name)
        if (len(wav) > VAD_AUTO_SECONDS * self.sample_rate) if vad is None else vad:
            return self.predict_regions(wav, timeline=timeline, name=name, adapt=adapt)
        if is_silent(wav):
            return silent_prediction(name, len(wav) / self.sample_rate)
        if self.backend.head_kind == "whole":
            p = self.backend.whole(wav)
            out = self._prediction(name, _Run(np.asarray(p), [], len(wav)), timeline)
        else:
            out = self._prediction(name, self._run(self.blocks(wav), name, timeline, adapt), timeline)
        out.warnings = audio_warnings(wav, name)
        return out

    # -- files ---------------------------------------------------------------------------------------
    def predict_stream(self, path: str | Path, timeline: bool = False, adapt: Adapt | None = None) -> Prediction:
        """The whole file classified (no VAD), read one block at a time: memory does not grow with
        duration, and the answer equals :meth:`predict_wav` of the loaded file. Silence and clips
        under :data:`MIN_DURATION` are recognised after the one pass."""
        from emoboost.audio import stream_audio

        sr = self.sample_rate
        if self.backend.head_kind == "whole" or audio_info(path)[0] * sr <= self.block:
            return self.predict_wav(load_audio(path, sr), str(path), timeline, adapt=adapt)
        meter = _Meter(exact_blocks(stream_audio(path, sr, self.block / sr, reuse=True), self.block))
        run = self._run(meter, str(path), timeline, adapt)  # stream_audio checks every block's samples
        if meter.samples < self.min_samples():
            raise too_short(path, meter.samples / sr, self.min_samples() / sr)
        if meter.peak_dbfs() < SILENCE_DB:
            return silent_prediction(str(path), meter.samples / sr)
        out = self._prediction(str(path), run, timeline)
        out.warnings = meter.checks.warnings(path)
        return out

    def predict_file(self, path: str | Path, timeline: bool = False, vad: bool | None = None,
                     adapt: Adapt | None = None) -> Prediction:
        """Label one audio file. ``vad``: True classifies speech regions only (:meth:`predict_regions`),
        False the whole file, None (default) uses VAD for files longer than :data:`VAD_AUTO_SECONDS`."""
        duration = audio_info(path)[0]  # header only: refuses missing, empty and non-audio files before decoding
        if duration < MIN_DURATION:
            raise too_short(path, duration)
        if (duration > VAD_AUTO_SECONDS) if vad is None else vad:
            return self.predict_regions(path, timeline=timeline, adapt=adapt)
        return self.predict_stream(path, timeline, adapt)

    def predict_regions(self, source: str | Path | np.ndarray, timeline: bool = True,
                        regions: Sequence[tuple[float, float]] | None = None, min_window: float = 1.0,
                        batch: int = WINDOW_BATCH, name: str | None = None, adapt: Adapt | None = None,
                        **vad_options) -> Prediction:
        """Label the speech of a file (or a 16 kHz waveform): VAD regions -> windows -> one posterior per
        window -> file label.

        Regions come from :func:`emoboost.inference.vad.speech_regions` over the streamed file (or are
        given, in seconds), are cut into windows of the model's segment length
        (:func:`emoboost.inference.vad.windows`), and only those windows are read and classified, each as
        one utterance; silence is never classified. The file label is the duration-weighted mean of the
        windows (:func:`emoboost.inference.timeline.weighted_label`); with no speech, ``label`` is None and
        ``speech_seconds`` 0. Memory: one block of audio plus one batch of windows, whatever the duration.
        """
        from emoboost.audio import read_spans, stream_audio
        from emoboost.inference import vad
        from emoboost.inference.timeline import weighted_label

        sr = SAMPLE_RATE
        array = isinstance(source, np.ndarray)
        path = name or ("<array>" if array else str(source))
        meter = None
        if regions is None:
            blocks = (source[s : s + sr * int(STREAM_BLOCK_SECONDS)]
                      for s in range(0, len(source), sr * int(STREAM_BLOCK_SECONDS))) if array \
                else stream_audio(source, sr, STREAM_BLOCK_SECONDS, reuse=True)
            meter = _Meter(blocks)
            regions = vad.speech_regions(iter(meter), sr, **vad_options)
            duration = meter.samples / sr
            if meter.samples < MIN_DURATION * sr:
                raise too_short(path, duration)
            if meter.peak_dbfs() < SILENCE_DB:
                return silent_prediction(path, duration)
        else:
            duration = len(source) / sr if array else audio_info(source)[0]
        length = float(self.seg.length)
        wins = vad.windows(regions, length, min(min_window, length))
        spans = [(int(round(a * sr)), int(round(b * sr))) for a, b in wins]
        entries: list[dict] = []
        pending: list[tuple[tuple[float, float], np.ndarray]] = []
        min_len = self.min_samples()

        def flush() -> None:
            for ((a, b), _), p in zip(pending, self.posteriors_many([w for _, w in pending], adapt)):
                entries.append({"start": a, "end": b, "label": self.classes[int(np.argmax(p))],
                                "probabilities": {c: float(x) for c, x in zip(self.classes, p)}})
            pending.clear()

        pieces = (source[a:b] for a, b in spans) if array else read_spans(source, spans, sr)
        for (a, b), w in zip(wins, pieces):
            if len(w) < min_len or is_silent(w):
                continue  # a sliver or digital silence inside a region: nothing to classify
            pending.append(((a, b), w))
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        warnings = meter.checks.warnings(path) if meter is not None else []
        if not entries:
            return Prediction(path, None, {}, [], duration=duration, speech_seconds=0.0, warnings=warnings)
        speech = float(sum(t["end"] - t["start"] for t in entries))
        label, probs = weighted_label(entries, self.classes)
        tl = [{**t, "probabilities": {c: round(v, 5) for c, v in t["probabilities"].items()}} for t in entries] \
            if timeline else []
        return Prediction(path, label, {c: round(float(v), 5) for c, v in probs.items()}, tl,
                          duration=duration, speech_seconds=speech, warnings=warnings)

