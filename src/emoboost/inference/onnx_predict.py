"""Run an ONNX export (see :mod:`emoboost.inference.export`) with onnxruntime and numpy only: no torch, no transformers.

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

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from emoboost.audio import AudioError
from emoboost.features.encode import encoder_windows, min_tail
from emoboost.inference.bundle import PREPROCESSING_FILE, _read_preprocessing
from emoboost.inference.engine import Prediction


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


class OnnxPredictor:
    """An ONNX export loaded into two onnxruntime sessions; same outputs as :class:`emoboost.inference.predict.Predictor`.

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
        self.head_kind = str(pre["head"].get("kind", "pooled"))
        self.frame_rate = float(pre.get("frame_rate", 50.0))
        self.block_samples = self.window_samples
        self.min_tail = self.hop
        if self.head_kind == "segments":
            from emoboost.audio import Segmenting

            sg = pre["segments"]
            self.seg = Segmenting(float(sg["length"]), float(sg["hop"]), self.sample_rate)
            self.encoding = str(sg["encoding"])
            self.segment_frames = int(sg["window_frames"])
            self.squeeze = bool(sg["squeeze"])
            self.block_samples = int(sg["block_samples"])
            self.min_tail = min_tail(self.sample_rate, self.frame_rate)  # as the torch path
            self.inputs = [i.name for i in self.head.get_inputs()]
            self.acoustic = {k: dict(v) for k, v in pre.get("acoustic", {}).items()}
            unknown = [n for n in self.inputs if n not in ("ssl", "valid") and n not in self.acoustic]
            if unknown:
                raise ValueError(f"{self.path}: head input(s) {unknown} have no preprocessing in {PREPROCESSING_FILE}")
        elif self.head_kind != "pooled":
            raise ValueError(f"{self.path}: unknown head kind {self.head_kind!r} in {PREPROCESSING_FILE}")

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

    def encode_window(self, wav: np.ndarray) -> np.ndarray:
        """Frames ``[k, T', D]`` of the exported layers for one clip of at most one encoder window."""
        mel = log_mel(wav, self.mel_filters, self.n_fft, self.hop)[None]
        return self.encoder.run(None, {self._enc_in: mel})[0]

    def encode(self, wav: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """Per-window frames ``[k, T'_w, D]`` of the head's layers, and each window's sample span."""
        spans = encoder_windows(len(wav), self.window_samples, self.hop)
        return [self.encode_window(wav[a:b]) for a, b in spans], spans

    def head_posteriors(self, frames: np.ndarray) -> np.ndarray:
        """Pooled head: frames ``[k, N, D]`` -> posteriors ``[C]`` (mean-pooled, standardised, linear, softmax)."""
        return self.head.run(None, {self._head_in: np.ascontiguousarray(frames, dtype=np.float32)})[0]

    def segment_posteriors(self, chunk: np.ndarray) -> np.ndarray:
        """Segment head: one block (at most one encoder window) -> posteriors ``[S, C]`` of its segments.

        Mirrors the training inputs: the block's frames cut into fixed windows of the segment length
        (zero-padded past the end), or each zero-padded segment encoded on its own (``segment``
        encoding); MFCC / spectrogram of each zero-padded segment, as the feature pipeline computes them.
        """
        from emoboost.audio import segment
        from emoboost.features.acoustic import segment_features

        seg = self.seg
        segs = segment(chunk, seg)
        if self.encoding == "segment":
            ssl = np.stack([self.encode_window(x) for x in segs])  # [S, k, T', D]
            valid = np.full(len(segs), ssl.shape[2], dtype=np.float32)  # padding is inside each encoded segment
        else:  # the training windows exactly: the store's window index over this block's frames
            from emoboost.features.views import ArraySource, SSLView

            frames = self.encode_window(chunk)  # [k, T, D]
            src = ArraySource([frames], [len(chunk)], frame_rate=self.frame_rate, sample_rate=self.sample_rate)
            src.segmenting = seg
            win, _ = SSLView(src).segments(list(range(frames.shape[0])))
            ssl, valid = np.asarray(win), win.valid_frames().astype(np.float32)  # [S, k, T', D], real frames
        feed = {}
        for name in self.inputs:
            if name == "ssl":
                x = ssl[:, 0] if self.squeeze else ssl
            elif name == "valid":
                x = valid
            else:
                params = self.acoustic[name]
                x = np.stack([segment_features(w, seg, name, **params)[0] for w in segs])
            feed[name] = np.ascontiguousarray(x, dtype=np.float32)
        return self.head.run(None, feed)[0]

    def _run(self, blocks: Iterable[np.ndarray], path: str, timeline: bool) -> tuple[np.ndarray, list[dict]]:
        """Utterance posteriors ``[C]`` and timeline over consecutive blocks of one clip.

        Pooled head: each block's frames are summed per layer (float64) and only the running sums are
        kept; the head then sees the utterance's mean frame ``[k, 1, D]``, which its mean-pooling leaves
        as is; timeline = one entry per encoder window. Segment head: utterance = mean of the segments'
        posteriors; timeline = one entry per segment.
        """
        sr = self.sample_rate
        total: np.ndarray | None = None
        n_frames = n_samples = 0
        seg_probs: list[np.ndarray] = []
        tl: list[dict] = []
        for chunk in blocks:
            a = n_samples
            n_samples += len(chunk)
            if a > 0 and len(chunk) < self.min_tail:
                continue  # a tail shorter than one encoder frame adds nothing
            chunk = self._check(chunk, path)
            if self.head_kind == "segments":
                p = self.segment_posteriors(chunk)
                seg_probs.append(p)
                starts = a + np.arange(len(p)) * self.seg.hop_samples
                tl += [{"start": st / sr, "end": st / sr + self.seg.length, "p": q} for st, q in zip(starts, p)]
                continue
            frames = self.encode_window(chunk)
            s = frames.sum(axis=1, dtype=np.float64)
            total = s if total is None else total + s
            n_frames += frames.shape[1]
            if timeline:
                tl.append({"start": a / sr, "end": n_samples / sr, "p": self.head_posteriors((s / frames.shape[1])[:, None, :])})
        if self.head_kind == "segments":
            proba = np.concatenate(seg_probs).mean(axis=0)
        else:
            proba = self.head_posteriors((total / n_frames)[:, None, :])
            if len(tl) == 1:
                tl[0]["p"] = proba
        entries = [{"start": round(e["start"], 3), "end": round(min(e["end"], n_samples / sr), 3),
                    "label": self._label(e["p"]), "probabilities": self._rounded(e["p"])} for e in tl] if timeline else []
        return proba, entries

    def _slices(self, wav: np.ndarray) -> Iterator[np.ndarray]:
        return (wav[s : s + self.block_samples] for s in range(0, len(wav), self.block_samples))

    def posteriors(self, wav: np.ndarray) -> np.ndarray:
        """Unrounded utterance posteriors ``[C]`` of one 16 kHz mono clip."""
        wav = self._check(wav, "<array>")
        return self._run(self._slices(wav), "<array>", False)[0]

    # ---- the Predictor interface -------------------------------------------------------------
    def predict_wav(self, wav: np.ndarray, path: str = "<array>", timeline: bool = False) -> Prediction:
        """Label and posteriors of the whole clip; ``timeline`` adds one entry per 30 s encoder window
        (pooled head: posteriors of that window's frames alone) or per segment (segment head)."""
        wav = self._check(wav, path)
        proba, tl = self._run(self._slices(wav), path, timeline)
        return Prediction(path, self._label(proba), self._rounded(proba), tl)

    def predict_file(self, path: str | Path, timeline: bool = False) -> Prediction:
        """The whole file classified (no VAD): see :meth:`predict_stream`."""
        return self.predict_stream(path, timeline)

    def predict_stream(self, path: str | Path, timeline: bool = False) -> Prediction:
        """The whole file classified, read one block (one encoder window) at a time: memory does not
        grow with duration, and the posteriors equal :meth:`predict_wav` on the loaded file (to float32
        rounding). Silence and clips under :data:`emoboost.inference.predict.MIN_DURATION` are recognised after
        the one pass."""
        from emoboost.audio import SILENCE_DB, stream_audio
        from emoboost.inference.engine import (
            MIN_DURATION,
            _exact_blocks,
            _Meter,
            silent_prediction,
            too_short,
        )

        sr, block = self.sample_rate, self.block_samples
        meter = _Meter(_exact_blocks(stream_audio(path, sr, block / sr, reuse=True), block))
        proba, tl = self._run(meter, str(path), timeline)
        duration = meter.samples / sr
        if meter.samples < MIN_DURATION * sr:
            raise too_short(path, duration)
        if meter.peak_dbfs() < SILENCE_DB:
            return silent_prediction(str(path), duration)
        pred = Prediction(str(path), self._label(proba), self._rounded(proba), tl)
        pred.duration = duration
        return pred

    def _label(self, p: np.ndarray) -> str:
        return self.classes[int(np.argmax(p))]

    def _rounded(self, p: np.ndarray) -> dict[str, float]:
        return {c: round(float(x), 5) for c, x in zip(self.classes, p)}
