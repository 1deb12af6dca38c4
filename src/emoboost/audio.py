"""Audio I/O: any readable file -> 16 kHz mono float32, with one clear error type.

Everything downstream (upstreams, acoustic features, predict) assumes the same sample rate and
channel layout, so all loading goes through :func:`load_audio`. Problems are raised as
:class:`AudioError`, which names the file and the problem, so corpus runs can skip and list them.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
"""Native sample rates accepted. Below 4 kHz there is no speech band left to classify (telephone audio
is 8 kHz); above 384 kHz no recording interface writes. A header outside them is broken or hostile: a
1.2 KB file declaring 1 Hz would otherwise become ten minutes of audio to resample and classify."""

MAX_PEAK = 1000.0
"""Largest sample magnitude accepted, in units of full scale (1.0): +60 dBFS. Integer PCM can never
exceed 1.0 and real float recordings stay within a few times it; beyond this the file is broken (or
float samples were written unscaled, e.g. in int16 units), and peaks around 1e19 and above overflow
float32 in the squared-signal features, so the model would answer NaN or a confident wrong label."""


class AudioError(ValueError):
    """A file that cannot be used as speech input; ``str()`` names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_problem(e: Exception) -> str:
    """What an ``AudioError`` or ``OSError`` met while reading an audio file says in a skip list."""
    return e.problem if isinstance(e, AudioError) else f"cannot read file ({e.strerror or e})"


class NotRegularFileError(AudioError, OSError):
    """A device, FIFO, socket or folder where a file was expected.

    Reading ``/dev/zero`` never ends and opening a FIFO blocks until a writer appears, so these are
    refused before any read. It is also an ``OSError`` so that callers which skip unreadable files
    (the feature cache hashes files and catches ``OSError``) skip these too, with this message.
    """

    def __init__(self, path: str | Path, problem: str):
        super().__init__(path, problem)
        self.filename, self.strerror = self.path, problem

    def __str__(self) -> str:  # OSError's own would read "[Errno None] <problem>: '<path>'"
        return f"{self.path}: {self.problem}"


SILENCE_DB = -60.0
"""Peak level (dBFS) below which a clip counts as digital silence (:func:`is_silent`): no sample
reaches ~33 steps of 16-bit audio. A peak, not an RMS, criterion: quiet takes of real speech have a
low RMS but clear peaks (RAVDESS's quietest, a soft sad line, is -64 dBFS RMS with a -42 dBFS peak)."""


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    min_duration: float = 0.0,
    reject_silence: bool = False,
    silence_db: float = SILENCE_DB,
) -> np.ndarray:
    """Read WAV/FLAC/AIFF/OGG (format sniffed from the header, not the extension).

    Multi-channel audio is averaged to mono; any sample rate is resampled with soxr (HQ).
    Raises :class:`AudioError` for missing, unreadable, empty, truncated, non-finite or too short input,
    a native rate outside :data:`MIN_SAMPLE_RATE`-:data:`MAX_SAMPLE_RATE`, a peak above :data:`MAX_PEAK`, and with ``reject_silence`` for (near-)digital silence: a model fed silence still answers with a
    confident label, so callers that must not train on or label silence ask for the check here.
    """
    path = Path(path)
    _check_file(path)
    _check_not_truncated(path, _header(path).extra_info)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            expected = f.frames
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(path, f"unreadable audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioError(path, "contains no audio samples")
    if expected > 0 and data.shape[0] < expected:
        raise AudioError(path, f"truncated: header promises {expected} samples, file holds {data.shape[0]}")
    check_samples(data, path)
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ").astype(np.float32)
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    duration = len(wav) / sample_rate
    if duration < min_duration:
        raise AudioError(path, f"too short: {duration:.3f} s < minimum {min_duration:.3f} s")
    if reject_silence and is_silent(wav, silence_db):
        raise AudioError(path, f"digital silence (peak {_fmt_db(peak_dbfs(wav))} dBFS < {silence_db:g} dBFS)")
    return wav


def check_samples(data: np.ndarray, path: str | Path = "<array>") -> None:
    """Refuse NaN or infinite samples and a peak above :data:`MAX_PEAK` (:class:`AudioError` naming ``path``).

    Every decoder here calls it on what it read, so a file refused by ``predict`` is refused by the
    server and by training alike. ``max``/``min`` propagate NaN and need no temporary array."""
    if not np.size(data):
        return
    hi, lo = float(np.max(data)), float(np.min(data))
    if not (math.isfinite(hi) and math.isfinite(lo)):
        raise AudioError(path, "contains NaN or infinite samples")
    peak = max(hi, -lo)
    if peak > MAX_PEAK:
        raise AudioError(path, f"amplitude out of range: peak {peak:.3g} × full scale, above the limit of "
                               f"{MAX_PEAK:g} (float samples written unscaled?)")


def check_sample_rate(sample_rate: int, path: str | Path = "<array>") -> None:
    """Refuse a native rate outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] before anything is resampled."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(path, f"sample rate {sample_rate} Hz is outside the accepted "
                               f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level in dB relative to full scale 1.0 (a full-scale sine is -3.01 dBFS; all zeros -inf)."""
    x = np.asarray(wav, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    ms = float(np.mean(x * x))
    return 10.0 * math.log10(ms) if ms > 0.0 else -math.inf


def peak_dbfs(wav: np.ndarray) -> float:
    """Peak level in dB relative to full scale 1.0 (all zeros or empty: -inf); max and min, not a copy of |x|."""
    x = np.asarray(wav)
    peak = max(float(x.max()), -float(x.min())) if x.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


def is_silent(wav: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True when no sample of the clip reaches ``threshold_db`` dBFS (see :data:`SILENCE_DB`)."""
    return peak_dbfs(wav) < threshold_db


def _fmt_db(db: float) -> str:
    return "-inf" if db == -math.inf else f"{db:.1f}"


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """(duration in seconds, native sample rate, channels) from the header, without decoding."""
    path = Path(path)
    _check_file(path)
    info = _header(path)
    _check_not_truncated(path, info.extra_info)
    if info.frames <= 0:
        raise AudioError(path, "contains no audio samples")
    return info.frames / info.samplerate, info.samplerate, info.channels


def _check_file(path: Path) -> None:
    """Refuse anything but a non-empty regular file before libsndfile opens (and maybe blocks on) it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "file does not exist") from None
    except OSError as e:
        raise AudioError(path, read_problem(e)) from e
    _check_regular(path, st.st_mode)
    if st.st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _check_regular(path: str | Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
        raise NotRegularFileError(path, f"is not a regular file ({kind}); refusing to read it")


def _header(path: Path):
    """libsndfile's header parse, with its log (``extra_info``) that reports size mismatches; an absurd
    sample rate is refused here, before any caller decodes or resamples."""
    try:
        info = sf.info(str(path), verbose=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(path, f"unreadable audio ({e})") from e
    check_sample_rate(info.samplerate, path)
    return info


# libsndfile logs e.g. "data : 16000 (should be 14999)" when the file ends before the audio chunk
# it announces, and then silently reports only the frames present; a WAV/AIFF cut short therefore
# looks valid through ``frames`` alone. 0 and 0xFFFFFFFF are "length unknown" placeholders written
# by streaming recorders, not truncation.
_CHUNK_MISMATCH = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_LENGTH = {0, 0xFFFFFFFF, 0xFFFFFFFF - 1}


def _check_not_truncated(path: Path, log: str) -> None:
    for m in _CHUNK_MISMATCH.finditer(log or ""):
        declared, actual = int(m.group(2)), int(m.group(3))
        if declared not in _UNKNOWN_LENGTH and actual < declared:
            raise AudioError(path, f"truncated: header announces {declared} bytes of audio, "
                                   f"file holds {actual}")


def content_hash(path: str | Path) -> str:
    """SHA-256 of the file bytes: cache keys follow the audio, not its name or location.

    Devices and FIFOs raise :class:`NotRegularFileError` (an ``OSError``) instead of hashing forever
    (``/dev/zero``) or blocking in ``open`` (a FIFO): the type is checked before opening, the FIFO
    is opened non-blocking, and the open descriptor is checked again in case the path changed.
    """
    _check_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        _check_regular(path, os.fstat(f.fileno()).st_mode)
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Segmenting:
    """How utterances are cut: fixed-length windows, the last one zero-padded (MS-EmoBoost: 3 s)."""

    length: float = 3.0
    hop: float | None = None  # None = length (non-overlapping)
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        """Refuse lengths and hops that would divide by zero or cut negative windows later, in one line
        naming the option: every command builds its segmenting before any work starts."""
        _check_seconds("segment_length (--segment-length)", self.length, self.sample_rate)
        if self.hop is not None:
            _check_seconds("segment_hop (--segment-hop)", self.hop, self.sample_rate)

    @property
    def length_samples(self) -> int:
        return int(round(self.length * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round((self.hop if self.hop is not None else self.length) * self.sample_rate))

    def key(self) -> str:
        return f"seg{self.length:g}-hop{(self.hop if self.hop is not None else self.length):g}-sr{self.sample_rate}"

    def num_segments(self, num_samples: int) -> int:
        n, hop = self.length_samples, self.hop_samples
        if num_samples <= n:
            return 1
        return 1 + int(np.ceil((num_samples - n) / hop))

    def starts(self, num_samples: int) -> np.ndarray:
        """Start time (s) of each segment."""
        return np.arange(self.num_segments(num_samples)) * self.hop_samples / self.sample_rate


def _check_seconds(name: str, value: object, sample_rate: int) -> None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if int(round(v * sample_rate)) < 1:
        raise ValueError(f"{name} {value!r} s is shorter than one sample at {sample_rate} Hz")


def segment(wav: np.ndarray, seg: Segmenting) -> np.ndarray:
    """Cut ``wav`` into [S, length] windows; the last (or only) one is zero-padded."""
    n, hop = seg.length_samples, seg.hop_samples
    count = seg.num_segments(len(wav))
    out = np.zeros((count, n), dtype=np.float32)
    for i in range(count):
        chunk = wav[i * hop : i * hop + n]
        out[i, : len(chunk)] = chunk
    return out


# --- streamed reading: memory bounded by the block size, not the file's duration ---------------------


def stream_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    block_seconds: float = 30.0,
    reuse: bool = False,
) -> Iterator[np.ndarray]:
    """Yield ``path`` as consecutive mono float32 blocks at ``sample_rate``.

    The concatenation equals :func:`load_audio` (bit for bit at the native rate; soxr's streaming
    resampler otherwise, which matches the one-shot resampler to float32 rounding), but only one block
    of the file is in memory at a time, so an hour of audio costs what 30 s does. The read and
    mono-mixing buffers are allocated once; with ``reuse=True`` the yielded array is a view into a
    buffer that the next block overwrites (no allocation per block; copy it to keep it). Blocks hold
    about ``block_seconds`` of output audio; with resampling their sizes vary slightly and the last
    one may be short. Raises :class:`AudioError` like :func:`load_audio` (a problem found late, e.g.
    NaN samples or truncation, is raised when that block is reached).
    """
    path = Path(path)
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    _check_file(path)
    info = _header(path)
    _check_not_truncated(path, info.extra_info)
    if info.frames == 0:
        raise AudioError(path, "contains no audio samples")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(path, f"unreadable audio ({e})") from e
    with f:
        sr, channels, expected = f.samplerate, f.channels, f.frames
        frames = max(1, int(round(block_seconds * sr)))
        buf = np.empty((frames, channels), dtype=np.float32)
        mono = np.empty(frames, dtype=np.float32) if channels > 1 else None
        stream = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ") if sr != sample_rate else None
        total = 0
        while True:
            try:
                data = f.read(frames, dtype="float32", always_2d=True, out=buf)
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
                raise AudioError(path, f"unreadable audio after {total} samples ({e})") from e
            n = data.shape[0]
            total += n
            if n:
                check_samples(data, path)
            if mono is not None:
                block = np.mean(data, axis=1, out=mono[:n])
            else:
                block = data[:, 0]
            last = n < frames
            if stream is not None:
                block = stream.resample_chunk(block, last=last)
            elif not reuse:
                block = block.copy()
            if len(block):
                yield block
            if last:
                break
    if total == 0:
        raise AudioError(path, "contains no audio samples")
    if expected > 0 and total < expected:
        raise AudioError(path, f"truncated: header promises {expected} samples, file holds {total}")
def read_spans(path: str | Path, spans: Sequence[tuple[int, int]], sample_rate: int = SAMPLE_RATE,
               block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """The samples ``[a, b)`` of each span (sorted, disjoint, at ``sample_rate``) as mono float32, one
    array per span (shorter where the file ends), reading only what the spans need.

    At the file's native rate each span is seeked and read (the same samples as :func:`load_audio`);
    otherwise the file is decoded and resampled block by block (:func:`emoboost.audio.stream_audio`)
    and the spans are cut from the stream, which stops after the last span.
    """

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
    for block in stream_audio(path, sample_rate, block_seconds, reuse=True):
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
