"""Speech regions with Silero VAD, streamed, so that silence is never classified and long files fit in memory.

The model is the ONNX export that ships inside the ``silero-vad`` wheel (no download, no torch needed):
by default its *sequence* variant, which takes up to 512 frames (16 s) per onnxruntime call with the
recurrent state carried between calls -- about 3.5x faster than the per-frame ONNX model and 7x faster
than the TorchScript one on one CPU thread, with the same per-frame probabilities. The recurrent state
and the 64-sample context are carried across the caller's blocks too, so a region that spans a block
boundary is found exactly as in one pass: streaming changes memory, not results. Memory is one block of
audio plus one float per 32 ms frame that is still undecided (a few values); finished regions are kept
as (start, end) pairs.

Regions come from the probabilities by hysteresis (as in ``silero_vad.get_speech_timestamps``): speech
starts at a frame with probability >= ``threshold`` and ends once the probability has stayed below
``neg_threshold`` for ``min_silence`` seconds; regions shorter than ``min_speech`` are dropped, the rest
padded by ``pad`` on both sides and merged where the padding makes them touch.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import numpy as np

from emoboost.audio import SAMPLE_RATE  # the rate Silero VAD's 16 kHz models take

FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame that the model sees before each frame
MAX_FRAMES = 512  # frames per onnxruntime call of the sequence model (~16 s)
MODEL_FILES = {"sequence": "silero_vad_16k_sequence.onnx", "frame": "silero_vad.onnx"}
INSTALL_HINT = "install the VAD extra: pip install 'emoboost[vad]' (silero-vad and onnxruntime)"


def model_path(variant: str) -> Path:
    """Path of the ONNX file inside the installed ``silero-vad`` wheel, found without importing the
    package (its ``__init__`` imports torch and sets torch's global thread count)."""
    if variant not in MODEL_FILES:
        raise ValueError(f"unknown Silero VAD variant {variant!r}; choose from {sorted(MODEL_FILES)}")
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"Silero VAD is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILES[variant]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: this silero-vad version does not ship the {variant!r} model")
    return path


@cache
def _session(variant: str):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(f"Silero VAD needs onnxruntime: {INSTALL_HINT}") from e
    opts = ort.SessionOptions()
    # One thread: the model is tiny (a frame is ~20 us of work), more threads only add spinning.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the exported graph has unused initializers; onnxruntime warns about each
    return ort.InferenceSession(str(model_path(variant)), sess_options=opts, providers=["CPUExecutionProvider"])


def default_variant() -> str:
    """``sequence`` where the installed wheel ships it (silero-vad >= 6.2), else the per-frame model."""
    try:
        model_path("sequence")
        return "sequence"
    except FileNotFoundError:
        return "frame"


class SileroVAD:
    """Streaming per-frame speech probabilities at 16 kHz: feed blocks of any length, in order.

    ``vad(block)`` returns the probabilities of the frames completed by ``block`` (a partial frame waits
    for the next block); :meth:`flush` zero-pads and scores the last partial frame. Frame ``i`` covers
    samples ``[512 i, 512 (i + 1))``.
    """

    def __init__(self, variant: str | None = None):
        self.variant = variant or default_variant()
        self.session = _session(self.variant)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames = 0  # frames scored so far
        self.samples = 0  # samples received so far

    def __call__(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"VAD input must be mono (1-D), got shape {block.shape}")
        self.samples += len(block)
        head = np.zeros(0, dtype=np.float32)
        if len(self._pending):  # complete the waiting partial frame first; the block itself is not copied
            need = FRAME - len(self._pending)
            if len(block) < need:
                self._pending = np.concatenate([self._pending, block])
                return head
            head = self._score(np.concatenate([self._pending, block[:need]]))
            block = block[need:]
        n = len(block) // FRAME
        self._pending = block[n * FRAME :].copy()
        return np.concatenate([head, self._score(block[: n * FRAME])]) if len(head) else self._score(block[: n * FRAME])

    def flush(self) -> np.ndarray:
        """Score the trailing partial frame (zero-padded), as the reference implementation does."""
        if not len(self._pending):
            return np.zeros(0, dtype=np.float32)
        x = np.zeros(FRAME, dtype=np.float32)
        x[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of ``len(x) // FRAME`` whole frames, each preceded by the previous frame's tail."""
        n = len(x) // FRAME
        self.frames += n
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        if self.variant == "sequence":
            for a in range(0, n, MAX_FRAMES):
                b = min(n, a + MAX_FRAMES)
                seq = np.concatenate([self._context, x[a * FRAME : b * FRAME]])
                rows = np.lib.stride_tricks.sliding_window_view(seq, CONTEXT + FRAME)[::FRAME]
                p, self._h, self._c = self.session.run(
                    ["speech_probs", "hn", "cn"], {"input": np.ascontiguousarray(rows), "h": self._h, "c": self._c})
                out[a:b] = p.reshape(-1)
                self._context = x[b * FRAME - CONTEXT : b * FRAME].copy()
        else:
            sr = np.array(SAMPLE_RATE, dtype=np.int64)
            row = np.empty((1, CONTEXT + FRAME), dtype=np.float32)
            row[0, :CONTEXT] = self._context
            for i in range(n):
                row[0, CONTEXT:] = x[i * FRAME : (i + 1) * FRAME]
                p, self._state = self.session.run(None, {"input": row, "state": self._state, "sr": sr})
                out[i] = p.reshape(-1)[0]
                row[0, :CONTEXT] = row[0, -CONTEXT:]
            self._context = row[0, :CONTEXT].copy()
        return out


class _Hysteresis:
    """Frame probabilities -> speech regions in frame units, one frame at a time (constant memory)."""

    def __init__(self, threshold: float, neg_threshold: float, min_speech_frames: float, min_silence_frames: float):
        self.thr, self.neg = threshold, neg_threshold
        self.min_speech, self.min_silence = min_speech_frames, min_silence_frames
        self.start: int | None = None  # first frame of the open region
        self.temp_end: int | None = None  # first frame of the silence that may end it
        self.i = 0  # index of the next frame

    def feed(self, probs: np.ndarray) -> list[tuple[int, int]]:
        done = []
        for p in probs.tolist():
            i = self.i
            self.i += 1
            if p >= self.thr:
                self.temp_end = None
                if self.start is None:
                    self.start = i
            elif p < self.neg and self.start is not None:
                if self.temp_end is None:
                    self.temp_end = i
                if i + 1 - self.temp_end >= self.min_silence:
                    self._close(self.temp_end, done)
        return done

    def finish(self) -> list[tuple[int, int]]:
        done: list[tuple[int, int]] = []
        if self.start is not None:
            self._close(self.temp_end if self.temp_end is not None else self.i, done)
        return done

    def _close(self, end: int, done: list[tuple[int, int]]) -> None:
        if end - self.start >= self.min_speech:
            done.append((self.start, end))
        self.start = self.temp_end = None


def _blocks(wav_or_blocks, sample_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Any accepted input as 16 kHz mono float32 blocks."""
    if isinstance(wav_or_blocks, (str, Path)):
        from emoboost.audio import stream_audio

        yield from stream_audio(wav_or_blocks, SAMPLE_RATE, block_seconds, reuse=True)
        return
    if isinstance(wav_or_blocks, np.ndarray):
        if wav_or_blocks.ndim != 1:
            raise ValueError(f"VAD input must be mono (1-D), got shape {wav_or_blocks.shape}")
        step = max(FRAME, int(block_seconds * sample_rate))
        source: Iterable[np.ndarray] = (wav_or_blocks[i : i + step] for i in range(0, len(wav_or_blocks), step))
    else:
        source = wav_or_blocks
    if sample_rate == SAMPLE_RATE:
        yield from (np.asarray(b, dtype=np.float32) for b in source)
        return
    import soxr

    stream = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    for b in source:
        yield stream.resample_chunk(np.ascontiguousarray(b, dtype=np.float32))
    yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def speech_probabilities(wav_or_blocks, sample_rate: int = SAMPLE_RATE, block_seconds: float = 30.0,
                         variant: str | None = None) -> np.ndarray:
    """Per-frame (32 ms) speech probabilities of a whole input; for inspection and tests (kept in memory)."""
    vad = SileroVAD(variant)
    parts = [vad(b) for b in _blocks(wav_or_blocks, sample_rate, block_seconds)]
    parts.append(vad.flush())
    return np.concatenate(parts)


def speech_regions(
    wav_or_blocks,
    sample_rate: int = SAMPLE_RATE,
    min_speech: float = 0.25,
    min_silence: float = 0.3,
    pad: float = 0.1,
    threshold: float = 0.5,
    neg_threshold: float | None = None,
    block_seconds: float = 30.0,
    variant: str | None = None,
) -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s), ...]`` (sorted, disjoint) of a waveform, blocks or audio file.

    ``wav_or_blocks`` is a 1-D array at ``sample_rate``, an iterable of 1-D blocks at ``sample_rate``
    (consumed once, any block sizes), or a path (streamed with :func:`emoboost.audio.stream_audio`;
    ``sample_rate`` is then ignored). Non-16 kHz input is resampled on the fly. Times are in seconds of
    the input, rounded to ms, and clipped to its duration. ``neg_threshold`` defaults to
    ``threshold - 0.15`` (as in Silero's reference). Digital silence gives no regions.
    """
    if min_speech < 0 or min_silence < 0 or pad < 0:
        raise ValueError(f"min_speech, min_silence and pad must be >= 0, got {min_speech}, {min_silence}, {pad}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    neg = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
    sec = FRAME / SAMPLE_RATE
    hyst = _Hysteresis(threshold, neg, min_speech / sec, max(1.0, min_silence / sec))
    vad = SileroVAD(variant)
    frames: list[tuple[int, int]] = []
    for block in _blocks(wav_or_blocks, sample_rate, block_seconds):
        frames.extend(hyst.feed(vad(block)))
    frames.extend(hyst.feed(vad.flush()))
    frames.extend(hyst.finish())
    duration = vad.samples / SAMPLE_RATE
    regions: list[list[float]] = []
    for a, b in frames:
        start, end = max(0.0, a * sec - pad), min(duration, b * sec + pad)
        if regions and start <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end])
    return [(round(a, 3), round(b, 3)) for a, b in regions if b > a]


def windows(
    regions: Iterable[tuple[float, float]],
    segment_length: float = 3.0,
    min_length: float = 1.0,
) -> list[tuple[float, float]]:
    """Cut speech regions into classification windows ``[(start_s, end_s), ...]``.

    A region up to ``segment_length`` long is one window. A longer one is cut into consecutive
    ``segment_length`` windows; the remainder becomes a last, shorter window when it is at least
    ``min_length`` long, and is otherwise added to the previous window (so no speech is dropped and no
    window is a sliver: every window of a long region lies in [min_length, segment_length + min_length)).
    The default 1 s is the shortest segment length measured in the short-segment study
    (docs/benchmarks.md: 2.8 UA below 3 s on EmoDB); shorter windows were not measured. Windows tile
    each region without gaps or overlap, so their durations weight a file-level label exactly.
    """
    if not segment_length > 0:
        raise ValueError(f"segment_length must be positive, got {segment_length}")
    if not 0 <= min_length <= segment_length:
        raise ValueError(f"min_length must be in [0, segment_length={segment_length}], got {min_length}")
    out: list[tuple[float, float]] = []
    eps = 1e-6
    for a, b in regions:
        if b - a <= segment_length + eps:
            if b > a:
                out.append((round(a, 3), round(b, 3)))
            continue
        k = math.floor((b - a) / segment_length + eps)
        cuts = [a + i * segment_length for i in range(k + 1)]
        rest = b - cuts[-1]
        if rest >= min_length - eps and rest > eps:
            cuts.append(b)
        else:
            cuts[-1] = b
        out.extend((round(s, 3), round(e, 3)) for s, e in zip(cuts[:-1], cuts[1:]))
    return out
