"""The onnxruntime backend of the inference engine: an ONNX export (see :mod:`emoboost.inference.export`)
run with onnxruntime and numpy only: no torch, no transformers.

An export directory holds ``encoder.onnx`` (log-mel -> the head's hidden layers), ``head.onnx`` (those
layers' frames -> class posteriors), ``mel_filters.npy`` and ``preprocessing.json``. The log-mel is
recomputed here in numpy so that a deployment needs only ``numpy``, ``onnxruntime`` and ``soundfile``/
``soxr`` (for reading files); it equals the one the model was trained on (Whisper's feature extractor
on the clip's own frames, :meth:`emoboost.upstreams.whisper.WhisperEncoderUpstream.log_mel`).

Like the torch backend it only encodes blocks and applies the head; the rules are the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.audio import Segmenting
from emoboost.inference.bundle import PREPROCESSING_FILE, read_preprocessing


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


class OnnxBackend:
    """An ONNX export loaded into two onnxruntime sessions.

    ``threads`` sets onnxruntime's intra-op threads (None: onnxruntime's default, one per core; more than
    the usable cores are clamped to them, :func:`emoboost.utils.bound_threads`).
    """

    name = "onnx"
    ensemble_size = 1

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.preprocessing = pre = read_preprocessing(self.path)
        self.classes: list[str] = list(pre["classes"])
        self.sample_rate = int(pre["sample_rate"])
        self.n_fft, self.hop = int(pre["n_fft"]), int(pre["hop"])
        self.window_samples = int(pre["window_samples"])
        self.frame_rate = float(pre.get("frame_rate", 50.0))
        filters_file = self.path / pre["mel_filters"]["file"]
        if not filters_file.is_file():
            raise FileNotFoundError(f"{self.path}: mel filterbank {filters_file.name} is missing")
        self.mel_filters = np.load(filters_file)
        want = (self.n_fft // 2 + 1, int(pre["n_mels"]))
        if self.mel_filters.shape != want:
            raise ValueError(f"{filters_file}: shape {self.mel_filters.shape}, expected {want}")
        if not np.isfinite(self.mel_filters).all():
            raise ValueError(f"{filters_file}: the mel filterbank holds non-finite values")
        opts = ort.SessionOptions()
        if threads is not None:
            from emoboost.utils import bound_threads

            opts.intra_op_num_threads = bound_threads(threads, "threads")
            opts.inter_op_num_threads = 1
        self.encoder = self._session(ort, pre["encoder"]["file"], opts)
        self.head = self._session(ort, pre["head"]["file"], opts)
        self._enc_in = self.encoder.get_inputs()[0].name
        self._head_in = self.head.get_inputs()[0].name
        self.head_kind = str(pre["head"].get("kind", "pooled"))
        if self.head_kind == "segments":
            sg = pre["segments"]
            self.seg = Segmenting(float(sg["length"]), float(sg["hop"]), self.sample_rate)
            self.encoding = str(sg["encoding"])
            self.segment_frames = int(sg["window_frames"])
            self.squeeze = bool(sg["squeeze"])
            self.window_samples = int(sg["block_samples"])
            self.inputs = [i.name for i in self.head.get_inputs()]
            self.acoustic = {k: dict(v) for k, v in pre.get("acoustic", {}).items()}
            unknown = [n for n in self.inputs if n not in ("ssl", "valid") and n not in self.acoustic]
            if unknown:
                raise ValueError(f"{self.path}: head input(s) {unknown} have no preprocessing in {PREPROCESSING_FILE}")
        elif self.head_kind == "pooled":
            self.seg = Segmenting(float(pre.get("segment_length", 3.0)), pre.get("segment_hop"), self.sample_rate)
            self.adapter = self._adapter(pre.get("adaptation"))
        else:
            raise ValueError(f"{self.path}: unknown head kind {self.head_kind!r} in {PREPROCESSING_FILE}")
        self._check_head()

    def _adapter(self, entry: dict | None) -> Any:
        """The exported speaker adapter (``adaptation.safetensors``), checked against its fingerprint; None without."""
        if not entry:
            return None
        from safetensors.numpy import load_file

        from emoboost.methods.adapt_protocol import parse_adapt
        from emoboost.methods.adaptation import SpeakerAdapter

        f = self.path / str(entry.get("file", ""))
        if not f.is_file():
            raise FileNotFoundError(f"{self.path}: {f.name} is missing (the speaker adapter {PREPROCESSING_FILE} names)")
        try:
            adapter = SpeakerAdapter.from_arrays(load_file(str(f)), parse_adapt(entry.get("protocol", "online")))
        except Exception as e:  # noqa: BLE001 - safetensors' own errors, missing arrays
            raise ValueError(f"{f}: not a speaker adapter ({type(e).__name__}: {e})".splitlines()[0]) from e
        if adapter.fingerprint() != entry.get("fingerprint"):
            raise ValueError(f"{f}: its arrays do not match the fingerprint in {PREPROCESSING_FILE} (corrupt export)")
        return adapter

    def _session(self, ort, name: str, opts):
        f = self.path / name
        if not f.is_file():
            raise FileNotFoundError(f"{self.path}: {name} is missing")
        try:
            return ort.InferenceSession(str(f), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for corrupt models
            raise ValueError(f"{f}: cannot be loaded by onnxruntime ({e})") from e

    def _check_head(self) -> None:
        """The head answers for as many classes as the export names: else one line, before any audio."""
        shape = self.head.get_outputs()[0].shape
        n = shape[-1] if shape else None
        if isinstance(n, int) and n != len(self.classes):
            raise ValueError(f"{self.path / self.preprocessing['head']['file']}: the head gives {n} probabilities, "
                             f"but {PREPROCESSING_FILE} names {len(self.classes)} classes")

    # -- the backend interface -----------------------------------------------------------------------
    def min_samples(self) -> int:
        from emoboost.features.encode import min_tail

        return min_tail(self.sample_rate, self.frame_rate)

    def encode(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        """Frames ``[k, T', D]`` of the exported layers for one block of at most one encoder window."""
        mel = log_mel(block, self.mel_filters, self.n_fft, self.hop)[None]
        return self.encoder.run(None, {self._enc_in: mel})[0], 0

    def pooled(self, stats: Sequence[Any], profile: Any = None) -> np.ndarray:
        """Each clip's mean frame ``[k, 1, D]`` through the head (its mean-pooling leaves it as is). An adapting
        model's head.onnx standardises with the population profile folded in; a speaker's profile re-centres the
        input first (``x - mu_speaker + mu_population`` gives the head ``(x - mu_speaker) / scale``, as the torch
        model), and with no clip heard the adapter's population head answers (``predict_adapted``'s rule)."""
        if getattr(self, "adapter", None) is not None and (profile is None or not profile.n):
            return self.adapter.population_proba(np.stack([st.mean.reshape(-1) for st in stats]))  # nothing heard
        shift = 0.0 if profile is None else \
            (self.adapter.mean_ - self.adapter.profile_mean(profile)).reshape(len(stats[0].mean), 1, -1)
        return np.stack([self.head.run(None, {self._head_in: np.ascontiguousarray(st.mean[:, None, :] + shift,
                                                                                   dtype=np.float32)})[0]
                         for st in stats])

    def adapters(self) -> list[str]:
        """The exported speaker adapter's fingerprint; one line when a speaker profile cannot be used."""
        if getattr(self, "adapter", None) is None:
            from emoboost.inference.bundle import not_adaptable

            raise ValueError(not_adaptable(self.path, self.preprocessing.get("head", {}).get("method")))
        return [self.adapter.fingerprint()]

    def terms(self, stats: Sequence[Any]) -> dict:
        """What these utterances add to a speaker profile: {fingerprint: (sum x, sum p)}."""
        return {self.adapter.fingerprint(): self.adapter.terms(np.stack([st.mean.reshape(-1) for st in stats]))}

    def segments(self, block: np.ndarray) -> np.ndarray:
        """Posteriors ``[S, C]`` of one block's segments, with the training inputs: the block's frames cut
        into fixed windows of the segment length (zero-padded past the end), or each zero-padded segment
        encoded on its own (``segment`` encoding); MFCC / spectrogram of each zero-padded segment, as the
        feature pipeline computes them."""
        from emoboost.audio import segment
        from emoboost.features.acoustic import segment_features

        seg = self.seg
        segs = segment(block, seg)
        if self.encoding == "segment":
            ssl = np.stack([self.encode(x)[0] for x in segs])  # [S, k, T', D]
            valid = np.full(len(segs), ssl.shape[2], dtype=np.float32)  # padding is inside each encoded segment
        else:  # the training windows exactly: the store's window index over this block's frames
            from emoboost.features.views import ArraySource, SSLView

            frames = self.encode(block)[0]  # [k, T, D]
            src = ArraySource([frames], [len(block)], frame_rate=self.frame_rate, sample_rate=self.sample_rate)
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
                x = np.stack([segment_features(w, seg, name, **self.acoustic[name])[0] for w in segs])
            feed[name] = np.ascontiguousarray(x, dtype=np.float32)
        return self.head.run(None, feed)[0]

    def whole(self, wav: np.ndarray) -> np.ndarray:
        raise ValueError(f"{self.path}: an ONNX export has no whole-clip head")
