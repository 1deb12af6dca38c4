"""Audio I/O: any readable file -> 16 kHz mono float32, with one clear error type.

Everything downstream (upstreams, acoustic features, predict) assumes the same sample rate and
channel layout, so all loading goes through :func:`load_audio`. Problems are raised as
:class:`AudioError`, which names the file and the problem, so corpus runs can skip and list them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """A file that cannot be used as speech input; ``str()`` names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    min_duration: float = 0.0,
) -> np.ndarray:
    """Read WAV/FLAC/AIFF/OGG (format sniffed from the header, not the extension).

    Multi-channel audio is averaged to mono; any sample rate is resampled with soxr (HQ).
    Raises :class:`AudioError` for missing, unreadable, empty, truncated, non-finite or too short input.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
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
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "contains NaN or infinite samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ").astype(np.float32)
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    duration = len(wav) / sample_rate
    if duration < min_duration:
        raise AudioError(path, f"too short: {duration:.3f} s < minimum {min_duration:.3f} s")
    return wav


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """(duration in seconds, native sample rate, channels) from the header, without decoding."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"unreadable audio ({e})") from e
    if info.frames <= 0:
        raise AudioError(path, "contains no audio samples")
    return info.frames / info.samplerate, info.samplerate, info.channels


def content_hash(path: str | Path) -> str:
    """SHA-256 of the file bytes: cache keys follow the audio, not its name or location."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Segmenting:
    """How utterances are cut: fixed-length windows, the last one zero-padded (MS-EmoBoost: 3 s)."""

    length: float = 3.0
    hop: float | None = None  # None = length (non-overlapping)
    sample_rate: int = SAMPLE_RATE

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


def segment(wav: np.ndarray, seg: Segmenting) -> np.ndarray:
    """Cut ``wav`` into [S, length] windows; the last (or only) one is zero-padded."""
    if seg.length_samples <= 0 or seg.hop_samples <= 0:
        raise ValueError(f"segment length and hop must be positive, got {seg}")
    n, hop = seg.length_samples, seg.hop_samples
    count = seg.num_segments(len(wav))
    out = np.zeros((count, n), dtype=np.float32)
    for i in range(count):
        chunk = wav[i * hop : i * hop + n]
        out[i, : len(chunk)] = chunk
    return out
