"""Run an ONNX export (see :mod:`emoboost.export`) with onnxruntime and numpy only: no torch, no transformers.

An export directory holds ``encoder.onnx`` (log-mel -> the head's hidden layers), ``head.onnx`` (those
layers' frames -> class posteriors), ``mel_filters.npy`` and ``preprocessing.json``. The log-mel is
recomputed here in numpy so that a deployment needs only ``numpy``, ``onnxruntime`` and ``soundfile``/
``soxr`` (for reading files); it equals the one the model was trained on (Whisper's feature extractor
on the clip's own frames, :meth:`emoboost.upstreams.whisper.WhisperEncoderUpstream.log_mel`).

The whole clip is one utterance: its frames are mean-pooled, as in training. Clips longer than the
encoder's 30 s window are encoded in consecutive 30 s windows (each window's log-mel and frames computed
on its own) whose frames are concatenated before pooling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emoboost.audio import AudioError
from emoboost.predict import Prediction

PREPROCESSING_FILE = "preprocessing.json"
EXPORT_FORMAT = "emoboost-onnx"


def hann_periodic(n: int) -> np.ndarray:
    """torch.hann_window(n) (periodic), the window Whisper's STFT uses."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def mel_energies(power: np.ndarray, mel_filters: np.ndarray) -> np.ndarray:
    """``power [T, bins] @ mel_filters [bins, n_mels]``, one small product per filter over its band.

    Not one matmul: in a process that also holds onnxruntime's (or torch's) thread pool, OpenBLAS's
    threaded GEMM takes ~16 ms for this [300, 201] x [201, 80] product instead of 0.3 ms. Each
    triangular filter spans a few bins, so per-band dot products are as exact (only zero terms
    are skipped) and stay under 1 ms.
    """
    filt = np.asarray(mel_filters, dtype=np.float64).T  # [n_mels, bins]
    out = np.zeros((power.shape[0], filt.shape[0]))
    for m, row in enumerate(filt):
        nz = np.flatnonzero(row)
        if nz.size:
            a, b = nz[0], nz[-1] + 1
            out[:, m] = power[:, a:b] @ row[a:b]
    return out


def log_mel(wav: np.ndarray, mel_filters: np.ndarray, n_fft: int = 400, hop: int = 160) -> np.ndarray:
    """[n_mels, len // hop] float32 Whisper log-mel of one clip on its own frames (no 30 s padding).

    Same steps as the training-time extractor: ``n_fft // 2`` zeros appended, centred STFT with
    reflection padding and a periodic Hann window, power spectrum without the last frame, mel filters
    ``[n_fft // 2 + 1, n_mels]``, ``log10(max(., 1e-10))``, floor at (max - 8), ``(x + 4) / 4``, then the
    first ``len // hop`` frames. Computed in float64, so it differs from the float32 extractor only by
    the latter's rounding.
    """
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    n_frames = len(wav) // hop
    if n_frames < 1:
        raise ValueError(f"clip of {len(wav)} samples is shorter than one frame ({hop} samples)")
    x = np.concatenate([wav, np.zeros(n_fft // 2)])
    x = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:-1]  # [len(x')//hop, n_fft]
    power = np.abs(np.fft.rfft(frames * hann_periodic(n_fft), axis=-1)) ** 2  # [F, n_fft//2+1]
    mel = mel_energies(power, mel_filters)  # [F, n_mels]
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    logm = (logm + 4.0) / 4.0
    return np.ascontiguousarray(logm[:n_frames].T, dtype=np.float32)


def window_spans(num_samples: int, window: int, hop: int = 160) -> list[tuple[int, int]]:
    """[start, stop) sample spans of consecutive windows; a tail shorter than one frame gives no frame
    in either path and is dropped."""
    spans = [(s, min(s + window, num_samples)) for s in range(0, num_samples, window)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < hop:
        spans.pop()
    return spans


def is_onnx_export(path: str | Path) -> bool:
    """True when ``path`` is a directory written by :func:`emoboost.export.export_onnx`."""
    p = Path(path) / PREPROCESSING_FILE
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def _read_preprocessing(path: Path) -> dict:
    file = path / PREPROCESSING_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such ONNX export directory")
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not an ONNX export (no {PREPROCESSING_FILE})")
    try:
        pre = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: unreadable ({e})") from e
    if pre.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{file}: not an emoboost ONNX export (format {pre.get('format')!r})")
    missing = [k for k in ("sample_rate", "n_fft", "hop", "n_mels", "window_samples", "classes", "mel_filters",
                           "encoder", "head") if k not in pre]
    if missing:
        raise ValueError(f"{file}: missing keys {', '.join(missing)}")
    return pre


class OnnxPredictor:
    """An ONNX export loaded into two onnxruntime sessions; same outputs as :class:`emoboost.predict.Predictor`.

    ``threads`` sets onnxruntime's intra-op threads (None: onnxruntime's default, one per core).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.preprocessing = pre = _read_preprocessing(self.path)
        self.classes: list[str] = list(pre["classes"])
        self.sample_rate = int(pre["sample_rate"])
        self.n_fft, self.hop = int(pre["n_fft"]), int(pre["hop"])
        self.window_samples = int(pre["window_samples"])
        filters_file = self.path / pre["mel_filters"]["file"]
        if not filters_file.is_file():
            raise FileNotFoundError(f"{self.path}: mel filterbank {filters_file.name} is missing")
        self.mel_filters = np.load(filters_file)
        want = (self.n_fft // 2 + 1, int(pre["n_mels"]))
        if self.mel_filters.shape != want:
            raise ValueError(f"{filters_file}: shape {self.mel_filters.shape}, expected {want}")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        self.encoder = self._session(ort, pre["encoder"]["file"], opts)
        self.head = self._session(ort, pre["head"]["file"], opts)
        self._enc_in = self.encoder.get_inputs()[0].name
        self._head_in = self.head.get_inputs()[0].name

    def _session(self, ort, name: str, opts):
        f = self.path / name
        if not f.is_file():
            raise FileNotFoundError(f"{self.path}: {name} is missing")
        try:
            return ort.InferenceSession(str(f), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for corrupt models
            raise ValueError(f"{f}: cannot be loaded by onnxruntime ({e})") from e

    # ---- pieces ---------------------------------------------------------------------------
    def _check(self, wav: np.ndarray, path: str) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(path, f"expected mono samples [T], got shape {wav.shape}")
        if len(wav) < self.hop:
            raise AudioError(path, f"too short: {len(wav)} samples < one frame ({self.hop} samples)")
        if not np.all(np.isfinite(wav)):
            raise AudioError(path, "contains NaN or infinite samples")
        return wav

    def encode(self, wav: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """Per-window frames ``[k, T'_w, D]`` of the head's layers, and each window's sample span."""
        spans = window_spans(len(wav), self.window_samples, self.hop)
        out = []
        for a, b in spans:
            mel = log_mel(wav[a:b], self.mel_filters, self.n_fft, self.hop)[None]
            out.append(self.encoder.run(None, {self._enc_in: mel})[0])
        return out, spans

    def head_posteriors(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``[k, N, D]`` -> posteriors ``[C]`` (mean-pooled, standardised, linear, softmax)."""
        return self.head.run(None, {self._head_in: np.ascontiguousarray(frames, dtype=np.float32)})[0]

    def posteriors(self, wav: np.ndarray) -> np.ndarray:
        """Unrounded utterance posteriors ``[C]`` of one 16 kHz mono clip."""
        frames, _ = self.encode(self._check(wav, "<array>"))
        return self.head_posteriors(np.concatenate(frames, axis=1))

    # ---- the Predictor interface -------------------------------------------------------------
    def predict_wav(self, wav: np.ndarray, path: str = "<array>", timeline: bool = False) -> Prediction:
        """Label and posteriors of the whole clip; ``timeline`` adds one entry per 30 s window
        (posteriors of that window's frames alone)."""
        wav = self._check(wav, path)
        frames, spans = self.encode(wav)
        proba = self.head_posteriors(np.concatenate(frames, axis=1))
        tl = []
        if timeline:
            sr = self.sample_rate
            for (a, b), f in zip(spans, frames):
                p = proba if len(spans) == 1 else self.head_posteriors(f)
                tl.append({"start": round(a / sr, 3), "end": round(b / sr, 3), "label": self._label(p),
                           "probabilities": self._rounded(p)})
        return Prediction(path, self._label(proba), self._rounded(proba), tl)

    def predict_file(self, path: str | Path, timeline: bool = False) -> Prediction:
        """The whole file classified (no VAD): see :meth:`predict_stream`."""
        return self.predict_stream(path, timeline)

    def predict_stream(self, path: str | Path, timeline: bool = False) -> Prediction:
        """The whole file classified, read one 30 s encoder window at a time: memory does not grow
        with duration.

        Each window's frames are summed per layer (float64) and only the running sums are kept; the
        head then sees the utterance's mean frame ``[k, 1, D]``, which its mean-pooling leaves as is, so
        the posteriors equal :meth:`predict_wav` on the loaded file (to float32 rounding). Silence and
        clips under :data:`emoboost.predict.MIN_DURATION` are recognised after the one pass.
        """
        from emoboost.audio import SILENCE_DB, stream_audio
        from emoboost.predict import MIN_DURATION, _exact_blocks, _Meter, silent_prediction, too_short

        sr, win = self.sample_rate, self.window_samples
        meter = _Meter(_exact_blocks(stream_audio(path, sr, win / sr, reuse=True), win))
        total: np.ndarray | None = None
        n_frames = n_samples = 0
        tl: list[dict] = []
        for chunk in meter:
            a = n_samples
            n_samples += len(chunk)
            if a > 0 and len(chunk) < self.hop:
                continue  # a tail shorter than one frame gives no frame (as window_spans drops it)
            chunk = self._check(chunk, str(path))
            mel = log_mel(chunk, self.mel_filters, self.n_fft, self.hop)[None]
            frames = self.encoder.run(None, {self._enc_in: mel})[0]  # [k, T'_w, D]
            s = frames.sum(axis=1, dtype=np.float64)
            total = s if total is None else total + s
            n_frames += frames.shape[1]
            if timeline:
                p = self.head_posteriors((s / frames.shape[1])[:, None, :])
                tl.append({"start": round(a / sr, 3), "end": round(n_samples / sr, 3), "label": self._label(p),
                           "probabilities": self._rounded(p)})
        duration = meter.samples / sr
        if meter.samples < MIN_DURATION * sr:
            raise too_short(path, duration)
        if meter.dbfs() < SILENCE_DB:
            return silent_prediction(str(path), duration)
        proba = self.head_posteriors((total / n_frames)[:, None, :])
        if len(tl) == 1:
            tl[0]["label"], tl[0]["probabilities"] = self._label(proba), self._rounded(proba)
        pred = Prediction(str(path), self._label(proba), self._rounded(proba), tl)
        pred.duration = duration
        return pred

    def _label(self, p: np.ndarray) -> str:
        return self.classes[int(np.argmax(p))]

    def _rounded(self, p: np.ndarray) -> dict[str, float]:
        return {c: round(float(x), 5) for c, x in zip(self.classes, p)}
