"""The Python API behind :func:`emoboost.load`: one object for a final model, a run's fold ensemble or an
ONNX export, answering with plain :class:`~emoboost.inference.engine.Prediction` dataclasses.

``predict`` of a path is exactly what ``emoboost predict`` does for that file, and of a waveform array
(resampled to 16 kHz with soxr) what it does for a file of those samples: the
:class:`~emoboost.inference.engine.Engine`'s rules (VAD above 30 s, silence flagged, clips shorter than
0.25 s refused). ``predict_many`` gives the same answers as ``predict`` item by item, while
a background thread decodes the next ``batch_size`` files: decoding and resampling overlap the encoder,
and at most ``batch_size`` decoded clips are held at once. (Clips are not batched through the encoder:
each is encoded on its own frames, as in training, so padding never changes an answer.)

Speakers (models trained with ``-p adapt=...``): ``enrol(name, clips)`` builds a profile from unlabelled
clips, ``predict(x, speaker=name)`` adapts to it, ``predict(x, speaker=name, learn=True)`` is a live
session (the clip is classified with what was heard before it, then added), ``profile(name).save(path)``
writes it for ``emoboost predict --profile`` and the server (:mod:`emoboost.inference.profiles`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.inference.engine import MIN_DURATION, VAD_AUTO_SECONDS, Engine, Prediction, too_short

log = logging.getLogger(__name__)

Audio = str | PathLike | np.ndarray


def to_mono(audio: Any, sample_rate: int, target_rate: int, name: str = "<array>") -> np.ndarray:
    """A waveform as float32 mono at ``target_rate``: channels averaged, integers scaled to [-1, 1), soxr HQ.

    2-D input is [T, channels] or [channels, T]; the channel axis is the shorter one.
    """
    from emoboost.audio import AudioError, check_sample_rate, check_samples

    x = np.asarray(audio)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif x.dtype.kind != "f":
        raise AudioError(name, f"expected a numeric waveform, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=int(np.argmin(x.shape)))
    if x.ndim != 1:
        raise AudioError(name, f"expected a waveform [T] or [T, channels], got shape {x.shape}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(name, f"sample_rate must be a positive integer, got {sample_rate!r}")
    check_sample_rate(int(sample_rate), name)
    if x.size == 0:
        raise AudioError(name, "contains no audio samples")
    check_samples(x, name)
    x = x.astype(np.float32)
    if int(sample_rate) != target_rate:
        import soxr

        x = soxr.resample(x, int(sample_rate), target_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


class Model:
    """A loaded model: ``predict(path_or_array)``, ``predict_many(items)``, ``classes``, ``kind``.

    ``kind`` is ``final`` (one model on all speakers), ``ensemble`` (a CV run's fold models, posteriors
    averaged), ``model`` (one saved fold model) or ``onnx`` (an ONNX export run with onnxruntime).
    """

    def __init__(self, engine: Engine, path: str | Path):
        self.engine = engine
        self._speakers: Any = None
        self.path = Path(path)
        self.classes: list[str] = list(engine.classes)
        self.sample_rate = int(engine.sample_rate)
        self.kind: str = engine.kind
        self.backend: str = engine.backend.name

    def __repr__(self) -> str:
        n = self.engine.ensemble_size
        size = f", {n} models" if self.kind == "ensemble" else ""
        return f"emoboost.Model({str(self.path)!r}, kind={self.kind}{size}, backend={self.backend}, classes={self.classes})"

    @property
    def bundle(self) -> dict:
        """The bundle's description (``bundle.json``; for an ONNX export its ``preprocessing.json``)."""
        return dict(self.engine.bundle.info)

    # -- speakers --------------------------------------------------------------------------------
    @property
    def speakers(self) -> Any:
        """The model's named speaker profiles (:class:`~emoboost.inference.profiles.SpeakerStore`)."""
        if self._speakers is None:
            from emoboost.inference.profiles import SpeakerStore

            self._speakers = SpeakerStore(self.engine)
        return self._speakers

    def enrol(self, speaker: str, clips: Iterable[Audio], sample_rate: int | None = None,
              vad: bool | None = None) -> Any:
        """Add unlabelled clips (paths or waveforms) of one speaker to its profile (created when new); -> the
        :class:`~emoboost.inference.profiles.SpeakerProfile`. A clip longer than 30 s adds each VAD window."""
        from emoboost.inference.profiles import predict_heard

        sp = self.speakers.get(speaker, create=True)
        for clip in ([clips] if isinstance(clips, (str, PathLike, np.ndarray)) else clips):
            _, terms, count = predict_heard(self.engine, self._audio(clip, sample_rate), self._name(clip), None,
                                            vad=vad)
            sp = sp.learn(terms, count)
        return self.speakers.put(sp)

    def profile(self, speaker: str | Any) -> Any:
        """A speaker's profile: an enrolled name, or a profile file (``.save(path)``, ``emoboost enrol --out``),
        which is then known by its speaker's name."""
        from emoboost.inference.profiles import SpeakerProfile, UnknownSpeaker

        if isinstance(speaker, SpeakerProfile):
            return speaker.check(self.engine)
        if isinstance(speaker, (PathLike, str)) and Path(speaker).is_file():
            return self.speakers.put(SpeakerProfile.load(speaker).check(self.engine, str(speaker)))
        try:
            return self.speakers.get(speaker)
        except UnknownSpeaker as e:
            raise ValueError(f"{e.args[0]}: model.enrol({speaker!r}, clips) first") from None

    def _audio(self, audio: Audio, sample_rate: int | None) -> Any:
        if isinstance(audio, (str, PathLike)):
            if sample_rate is not None:
                raise ValueError(f"{audio}: sample_rate is for waveform arrays; a file's own rate is read from it")
            return audio
        if sample_rate is None:
            raise ValueError("predict(array) needs sample_rate= (the rate the samples were recorded at)")
        return to_mono(audio, sample_rate, self.sample_rate)

    @staticmethod
    def _name(audio: Audio) -> str:
        return str(audio) if isinstance(audio, (str, PathLike)) else "<array>"

    # -- one item -------------------------------------------------------------------------------
    def predict(self, audio: Audio, sample_rate: int | None = None, timeline: bool = False,
                vad: bool | None = None, speaker: str | Any = None, learn: bool = False) -> Prediction:
        """Label a file (path) or a waveform (array + ``sample_rate``), with the same rules: ``vad=None``
        uses VAD for audio longer than 30 s, True always, False never. ``speaker``: adapt to that speaker's
        profile (a name, a profile or a profile file); ``learn``: then add the clip to it (a live session: a
        new name starts from the training population)."""
        x = self._audio(audio, sample_rate)
        if speaker is None:
            if learn:
                raise ValueError("learn=True adds the clip to a speaker's profile: name the speaker (speaker=...)")
            if isinstance(x, np.ndarray):
                return self.engine.predict_wav(x, "<array>", timeline, vad=vad)
            return self.engine.predict_file(x, timeline=timeline, vad=vad)
        from emoboost.inference.profiles import predict_heard

        sp = self.speakers.get(speaker, create=True) if learn and isinstance(speaker, str) else self.profile(speaker)
        pred, terms, count = predict_heard(self.engine, x, self._name(audio), sp, timeline, vad)
        if learn:
            self.speakers.add(sp.speaker, terms, count)
        return pred

    # -- many items -----------------------------------------------------------------------------
    def predict_many(self, items: Iterable[Audio], batch_size: int = 8, sample_rate: int | None = None,
                     timeline: bool = False, vad: bool | None = None,
                     skip_errors: bool = False) -> list[Prediction | None]:
        """``[predict(x) for x in items]``, with the next ``batch_size`` files decoded in the background.

        ``skip_errors``: a bad file (unreadable, too short, missing) gives None in its place and a
        warning naming it, instead of raising.
        """
        from emoboost.audio import AudioError

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out: list[Prediction | None] = []
        pending: deque[tuple[Audio, Future]] = deque()
        it = iter(items)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emoboost-decode") as pool:
            def fill() -> None:
                while len(pending) < int(batch_size):
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                    pending.append((item, pool.submit(self._decode, item, sample_rate, vad)))

            fill()
            while pending:
                item, fut = pending.popleft()
                fill()
                try:
                    kind, value = fut.result()
                    out.append(self.predict(item, sample_rate, timeline, vad) if kind == "defer"
                               else self.engine.predict_wav(value, str(item) if kind == "file" else "<array>",
                                                            timeline, vad=vad))
                except (AudioError, FileNotFoundError, ValueError, OSError) as e:
                    if not skip_errors:
                        raise
                    log.warning("skipped: %s", e)
                    out.append(None)
        return out

    def _decode(self, item: Audio, sample_rate: int | None, vad: bool | None) -> tuple[str, Any]:
        """("file", wav) for a file predict reads whole, ("array", wav), or ("defer", None): long files
        and VAD are streamed by ``predict`` itself when their turn comes."""
        from emoboost.audio import audio_info, load_audio

        if isinstance(item, (str, PathLike)):
            if sample_rate is not None:
                raise ValueError(f"{item}: sample_rate is for waveform arrays; a file's own rate is read from it")
            duration = audio_info(item)[0]
            if duration < MIN_DURATION:
                raise too_short(item, duration)
            if vad or duration > VAD_AUTO_SECONDS:
                return "defer", None
            return "file", load_audio(item, self.sample_rate)
        if sample_rate is None:
            raise ValueError("predict_many of arrays needs sample_rate= (the rate the samples were recorded at)")
        return "array", to_mono(item, sample_rate, self.sample_rate)


def load(path: str | Path, upstream: str | None = None, threads: int | None = None, device: str = "cpu",
         backend: str = "auto") -> Model:
    """A final-model bundle, a run directory (fold ensemble), one fold model or an ONNX export, ready to predict.

    ``upstream`` overrides where the encoder is loaded from (its fingerprint must match the bundle's);
    ``threads`` sets onnxruntime's threads; ``device`` where a run directory's or final model's encoder
    and torch models run (cpu, auto, cuda, cuda:N, mps); ``backend``: ``auto`` (onnxruntime when the
    model has an ONNX form and onnxruntime is installed, else torch), ``torch`` or ``onnx``.
    """
    return Model(Engine.load(path, upstream=upstream, backend=backend, threads=threads, device=device), path)
