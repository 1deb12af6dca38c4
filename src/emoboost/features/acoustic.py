"""Frame-level acoustic features: HTK-style MFCC, the MS-EmoBoost log spectrogram, log-mel.

Frame convention (all three): frame ``t`` is centred on sample ``t * hop``; the signal is
zero-padded by half an FFT on both sides (librosa ``center=True, pad_mode="constant"``), and exactly
``round(len / hop)`` frames are kept (the centred STFT yields ``1 + len // hop``; the surplus last
frame, which would be centred past the end, is dropped). A 3 s segment at 16 kHz with a 10 ms hop
thus gives exactly 300 frames, the same count as Whisper's log-mel and the usual SER recipes.

Features are cached through :class:`~emoboost.features.cache.FeatureCache` under keys that hash
every parameter, defaults included (:func:`acoustic_key`), so changing any one gives a new key.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable

import numpy as np

from emoboost.audio import SAMPLE_RATE, Segmenting, segment
from emoboost.features.cache import feature_key, params_fingerprint

log = logging.getLogger(__name__)


def _n_frames(num_samples: int, hop: int) -> int:
    return max(1, int(round(num_samples / hop)))


def _check(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got shape {wav.shape}")
    if len(wav) == 0:
        raise ValueError("empty waveform")
    return wav


def _power_stft(wav: np.ndarray, n_fft: int, win_length: int, hop: int, window: str) -> np.ndarray:
    """|STFT|^2 [1 + n_fft/2, round(len/hop)] with the module's frame convention."""
    import librosa

    with warnings.catch_warnings():  # clips shorter than n_fft are fine: they are zero-padded
        warnings.filterwarnings("ignore", message="n_fft=.* is too large for input signal")
        spec = librosa.stft(wav, n_fft=n_fft, hop_length=hop, win_length=win_length, window=window,
                            center=True, pad_mode="constant")
    return (np.abs(spec) ** 2)[:, : _n_frames(len(wav), hop)]


def mfcc(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    n_mfcc: int = 40,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int = 512,
    preemphasis: float = 0.97,
    lifter: int = 0,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """HTK-style MFCC [T, n_mfcc]: pre-emphasis, 25 ms Hamming window (FFT zero-padded to 512),
    HTK mel filterbank, natural-log energies, orthonormal DCT-II. ``lifter=0`` keeps the cepstra
    unliftered (HTK's CEPLIFTER=22 would flip the sign of coefficients beyond 22 when 40 are kept).
    """
    import librosa

    wav = _check(wav)
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels})")
    win, hop = int(round(sr * win_ms / 1000)), int(round(sr * hop_ms / 1000))
    if win > n_fft:
        raise ValueError(f"window of {win} samples is longer than n_fft={n_fft}")
    if preemphasis:
        wav = np.append(wav[:1], wav[1:] - preemphasis * wav[:-1]).astype(np.float32)
    power = _power_stft(wav, n_fft, win, hop, "hamming")
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None)
    log_mel = np.log(np.maximum(fb @ power, 1e-10))
    cep = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc, dct_type=2, norm="ortho", lifter=lifter)
    return cep.T.astype(np.float32)


def log_spectrogram(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    win_ms: float = 40.0,
    hop_ms: float = 10.0,
    n_fft: int = 800,
    n_bins: int = 200,
    normalize: bool = True,
    eps: float = 1e-10,
) -> np.ndarray:
    """MS-EmoBoost log power spectrogram [T, 200]: 40 ms Hamming window, 10 ms hop, 800-point DFT.

    The first 200 bins (20 Hz apart: 0-3980 Hz, where most prosodic/formant energy lies) are kept.
    With ``normalize`` the whole [T, F] matrix of each call (= each segment) is standardised to zero
    mean and unit variance with a single mean/std, which removes loudness/channel gain differences
    while keeping the relative shape across frequencies and time.
    """
    wav = _check(wav)
    win, hop = int(round(sr * win_ms / 1000)), int(round(sr * hop_ms / 1000))
    if win > n_fft:
        raise ValueError(f"window of {win} samples is longer than n_fft={n_fft}")
    if n_bins > n_fft // 2 + 1:
        raise ValueError(f"n_bins={n_bins} exceeds the {n_fft // 2 + 1} bins of a {n_fft}-point DFT")
    power = _power_stft(wav, n_fft, win, hop, "hamming")[:n_bins]
    spec = np.log(power + eps).T
    if normalize:
        spec = (spec - spec.mean()) / (spec.std() + 1e-8)
    return spec.astype(np.float32)


def logmel(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    n_mels: int = 80,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int = 512,
    fmin: float = 0.0,
    fmax: float | None = None,
    eps: float = 1e-6,
) -> np.ndarray:
    """Log mel filterbank energies [T, n_mels] (Hann window, Slaney mel scale, natural log)."""
    import librosa

    wav = _check(wav)
    win, hop = int(round(sr * win_ms / 1000)), int(round(sr * hop_ms / 1000))
    if win > n_fft:
        raise ValueError(f"window of {win} samples is longer than n_fft={n_fft}")
    power = _power_stft(wav, n_fft, win, hop, "hann")
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return np.log(fb @ power + eps).T.astype(np.float32)


FEATURES: dict[str, Callable[..., np.ndarray]] = {
    "mfcc": mfcc,
    "spec": log_spectrogram,
    "log_spectrogram": log_spectrogram,
    "logmel": logmel,
}


def _fn(kind: str) -> Callable[..., np.ndarray]:
    if kind not in FEATURES:
        raise ValueError(f"unknown acoustic feature {kind!r}; known: {sorted(FEATURES)}")
    return FEATURES[kind]


def feature_params(kind: str, **params) -> dict:
    """Every parameter of feature ``kind`` (defaults filled in); unknown names raise TypeError."""
    sig = inspect.signature(_fn(kind))
    full = {n: p.default for n, p in sig.parameters.items() if n != "wav"}
    unknown = set(params) - set(full)
    if unknown:
        raise TypeError(f"{kind}: unknown parameter(s) {sorted(unknown)}; valid: {sorted(full)}")
    full.update(params)
    return full


def segment_features(wav: np.ndarray, segmenting: Segmenting, kind: str, **params) -> np.ndarray:
    """Cut ``wav`` with ``segmenting`` (last segment zero-padded) and compute ``kind`` per segment: [S, T, F]."""
    fn = _fn(kind)
    feature_params(kind, **params)  # validate names early
    params.setdefault("sr", segmenting.sample_rate)
    return np.stack([fn(s, **params) for s in segment(_check(wav), segmenting)])


def acoustic_key(kind: str, segmenting: Segmenting, **params) -> str:
    """Cache key for ``kind`` with these parameters: includes every parameter value and the code version."""
    params.setdefault("sr", segmenting.sample_rate)
    canonical = "spec" if kind == "log_spectrogram" else kind
    return feature_key(canonical, params_fingerprint(canonical, feature_params(kind, **params)), segmenting)
