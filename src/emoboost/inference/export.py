"""Export a Whisper upstream + a pooled linear head or an MS-EmoBoost network to ONNX, for inference without torch.

Two graphs, not one: ``encoder.onnx`` (log-mel ``[1, n_mels, T]`` -> hidden states ``[k, T', D]`` of the
head's k layers, running the encoder only up to the deepest of them) and ``head.onnx`` (frames
``[k, N, D]`` -> posteriors ``[C]``). The head pools over *all* of a clip's frames before its softmax,
and a clip longer than Whisper's 30 s window needs several encoder runs, so pooling cannot live inside
one encoder run; keeping the head separate also lets other heads reuse the same encoder file.
``preprocessing.json`` + ``mel_filters.npy`` describe the numpy log-mel
(:func:`emoboost.inference.backend_onnx.log_mel`) and the label map; :class:`emoboost.inference.backend_onnx.OnnxBackend`
runs the directory.

The graphs are traced with torch's legacy exporter (``dynamo=False``): the dynamo exporter needs the
``onnxscript`` package, which the project does not depend on.

A pooled linear head is a dict: ``classes`` [C], ``layers`` (hidden-state indices, 0 = embeddings),
``pooling`` ("mean"), ``mean``/``scale`` [k*D] (x' = (x - mean) / scale), ``weight`` [C, k*D],
``bias`` [C]; posterior = softmax(weight @ x' + bias), x = the per-layer frame means concatenated in
``layers`` order.

An MS-EmoBoost final model (:func:`export_segment_model`) keeps the same ``encoder.onnx``; its
``head.onnx`` is the whole network on one batch of fixed-length segments (SSL frame windows plus the
MFCC / spectrogram guidance inputs) -> segment posteriors, averaged per utterance at inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoboost.inference.bundle import EXPORT_FORMAT, PREPROCESSING_FILE
from emoboost.outdir import writes_into
from emoboost.utils import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

HEAD_ARRAYS = ("mean", "scale", "weight", "bias")
WINDOW_SECONDS = 30.0
DEFAULT_OPSET = 17


# ---- the head ------------------------------------------------------------------------------

def check_head(head: dict, num_layers: int | None = None, hidden_size: int | None = None) -> dict:
    """The head with float32 arrays, after checking keys and shapes (and layers/D against an upstream)."""
    missing = [k for k in ("classes", "layers", *HEAD_ARRAYS) if k not in head]
    if missing:
        raise ValueError(f"head: missing keys {', '.join(missing)}")
    pooling = head.get("pooling", "mean")
    if pooling != "mean":
        raise ValueError(f"head: pooling {pooling!r} is not supported (only 'mean')")
    classes = [str(c) for c in head["classes"]]
    layers = [int(i) for i in head["layers"]]
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
        raise ValueError(f"head: layers must be distinct non-negative hidden-state indices, got {layers}")
    if num_layers is not None and max(layers) >= num_layers:
        raise ValueError(f"head: layer {max(layers)} does not exist (the upstream has hidden states 0..{num_layers - 1})")
    arr = {k: np.asarray(head[k], dtype=np.float32) for k in HEAD_ARRAYS}
    c, f = len(classes), arr["weight"].shape[-1] if arr["weight"].ndim == 2 else -1
    if arr["weight"].shape != (c, f) or f % len(layers):
        raise ValueError(f"head: weight has shape {arr['weight'].shape}, expected [{c} classes, k*D] with k={len(layers)}")
    d = f // len(layers)
    if hidden_size is not None and d != hidden_size:
        raise ValueError(f"head: weight expects D={d} per layer, the upstream has D={hidden_size}")
    for k, n in (("mean", f), ("scale", f), ("bias", c)):
        if arr[k].shape != (n,):
            raise ValueError(f"head: {k} has shape {arr[k].shape}, expected [{n}]")
    if not all(np.all(np.isfinite(a)) for a in arr.values()) or np.any(arr["scale"] == 0):
        raise ValueError("head: arrays contain NaN/inf, or scale contains zeros")
    return {"classes": classes, "layers": layers, "pooling": "mean", **arr}


def head_posteriors(head: dict, frames: np.ndarray) -> np.ndarray:
    """Reference numpy head: frames [k, N, D] of ``head['layers']`` -> posteriors [C] (float64)."""
    x = np.asarray(frames, dtype=np.float64).mean(axis=1).reshape(-1)
    x = (x - np.asarray(head["mean"], np.float64)) / np.asarray(head["scale"], np.float64)
    z = np.asarray(head["weight"], np.float64) @ x + np.asarray(head["bias"], np.float64)
    z = np.exp(z - z.max())
    return z / z.sum()


def load_head(bundle_dir: str | Path) -> tuple[dict, dict]:
    """(head dict, upstream {"spec", "fingerprint"}) of a bundle directory's pooled linear head.

    The head comes from the saved model's own weights (``method.json`` + safetensors) when the bundle
    has them, so the export always answers what the model answers; a ``head`` written into
    ``bundle.json`` is read only for bundles that hold no model.
    """
    from emoboost.inference.bundle import read_bundle

    b = read_bundle(bundle_dir)
    if not b.upstream.get("spec"):
        raise ValueError(f"{b.path / 'bundle.json'}: no upstream spec (expected \"upstream\": {{\"spec\": ..., "
                         f"\"fingerprint\": ...}})")
    head = None
    if b.models and (b.models[0] / "method.json").is_file():
        from emoboost.methods import Method

        fn = getattr(Method.load(b.models[0]), "pooled_head", None)
        head = fn(b.upstream.get("num_layers")) if callable(fn) else None
        if head is None:
            raise ValueError(f"{b.path}: the {b.method} model has no pooled linear head")
    elif "head" in b.info:
        head = dict(b.info["head"])
    else:
        raise FileNotFoundError(f"{b.path}: no saved model (method.json) and no 'head' in bundle.json")
    try:
        head = {**check_head(head), **({"adaptation": head["adaptation"]} if head.get("adaptation") else {})}
    except ValueError as e:
        raise ValueError(f"{b.path}: {e}") from e
    if list(head["classes"]) != list(b.classes):
        raise ValueError(f"{b.path}: the head's classes {head['classes']} are not the bundle's {b.classes}")
    return head, {"spec": str(b.upstream["spec"]), "fingerprint": b.fingerprint}


PROBE_SECONDS = 2.0


def probe_clip(sample_rate: int = 16_000) -> np.ndarray:
    """A fixed 2 s modulated tone with a little noise: any working model answers it with finite probabilities."""
    t = np.arange(int(PROBE_SECONDS * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * 220.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
    return (x + 0.01 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def check_finite_outputs(export_dir: Path) -> None:
    """Run the export on :func:`probe_clip` with onnxruntime; non-finite probabilities (NaN or overflowing
    weights in the encoder, the mel filterbank or the head) raise one line naming the folder."""
    from emoboost.inference.engine import Engine

    try:
        engine = Engine.load(export_dir, backend="onnx")
    except ValueError as e:
        raise ValueError(f"{e}; the export was not kept") from e
    try:
        engine.posteriors(probe_clip())
    except ValueError as e:
        raise ValueError(f"{export_dir}: the exported model gives non-finite probabilities on a probe clip "
                         f"({PROBE_SECONDS:g} s tone): its weights or mel filters hold NaN or overflow; the export "
                         f"was not kept") from e


def export_bundle(bundle_dir: str | Path, out_dir: str | Path, opset: int = DEFAULT_OPSET,
                  upstream: str | None = None) -> tuple[Path, str]:
    """Export the model at ``bundle_dir`` (a final model or one saved model) to ONNX in ``out_dir``;
    returns (``out_dir``, one line saying what was written). The export is run once on a probe clip
    (:func:`check_finite_outputs`): one whose answers are not finite is removed and refused."""
    import shutil

    out, line = _export_bundle(bundle_dir, out_dir, opset, upstream)
    try:
        check_finite_outputs(out)
    except ValueError:
        shutil.rmtree(out, ignore_errors=True)  # our own export folder (claimed by the writer), never left half-usable
        raise
    return out, line


def _export_bundle(bundle_dir: str | Path, out_dir: str | Path, opset: int, upstream: str | None) -> tuple[Path, str]:
    from emoboost.inference.bundle import read_bundle
    from emoboost.upstreams import build_upstream

    b = read_bundle(bundle_dir)
    if b.kind == "onnx":
        raise ValueError(f"{b.path}: already an ONNX export")
    if b.kind == "ensemble":
        raise ValueError(f"{b.path}: a cross-validation run (an ensemble of fold models) cannot be exported; "
                         f"train one final model with `emoboost train` and export that")
    if "ssl" not in b.features:
        raise ValueError(f"{b.path}: {b.method!r} models cannot be exported to ONNX (supported: pooled "
                         f"linear/logreg heads and {', '.join(SEGMENT_METHODS)} on a Whisper encoder)")
    if b.method in SEGMENT_METHODS:
        from emoboost.methods import Method

        method = Method.load(b.models[0])
        up = build_upstream(upstream or b.upstream["spec"])
        out = export_segment_model(up, method, b.info, out_dir, opset=opset)
        return out, (f"wrote {out} (encoder.onnx, head.onnx = {method.name} on {b.segment_length:g} s segments, "
                     f"{len(method.classes)} classes, upstream {up.fingerprint()})")
    head, spec = load_head(b.path)
    up = build_upstream(upstream or spec["spec"])
    out = export_onnx(up, head, out_dir, opset=opset, fingerprint=spec["fingerprint"],
                      segment=(b.segment_length, b.segment_hop))
    return out, (f"wrote {out} (encoder.onnx up to hidden state {max(head['layers'])}, head.onnx, "
                 f"{len(head['classes'])} classes, upstream {up.fingerprint()})")


# ---- graphs --------------------------------------------------------------------------------

def encoder_graph(upstream: WhisperEncoderUpstream, layers: list[int]):
    """The encoder as a torch module: log-mel ``[1, n_mels, T]`` -> hidden states ``[k, T', D]`` of
    ``layers`` (in that order), running only up to the deepest of them."""
    import torch
    import torch.nn.functional as F

    enc = upstream.encoder
    deepest = max(layers)
    total = int(upstream.model_config.encoder_layers)  # hidden states 0..total; the last one is layer-normed
    if len(enc.layers) < deepest:
        raise ValueError(f"the upstream holds {len(enc.layers)} encoder layers; the head reads layer {deepest}")

    class EncoderGraph(torch.nn.Module):
        """conv1 -> gelu -> conv2 -> gelu -> + positions[:T'] -> layers[:deepest] (-> layer_norm if last)."""

        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = enc.conv1, enc.conv2
            self.register_buffer("positions", enc.embed_positions.weight.detach().clone())
            self.layers = torch.nn.ModuleList(list(enc.layers)[:deepest])
            self.layer_norm = enc.layer_norm if deepest == total else None

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            x = F.gelu(self.conv1(mel))
            x = F.gelu(self.conv2(x)).permute(0, 2, 1)
            x = x + self.positions[: x.shape[1]]
            hidden = [x]
            for layer in self.layers:
                x = layer(x, None)
                x = x[0] if isinstance(x, tuple) else x
                hidden.append(x)
            if self.layer_norm is not None:
                hidden[-1] = self.layer_norm(hidden[-1])
            return torch.stack([hidden[i][0] for i in layers])  # [k, T', D]

    return EncoderGraph().eval()


def torch_graphs(upstream: WhisperEncoderUpstream, head: dict):
    """(encoder graph, head graph) as torch modules; built here so torch is imported only to export."""
    import torch

    class HeadGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k in HEAD_ARRAYS:
                self.register_buffer(k, torch.from_numpy(np.ascontiguousarray(head[k])))

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames.mean(dim=1).reshape(-1)  # [k*D], layers in list order
            x = (x - self.mean) / self.scale
            return torch.softmax(self.weight @ x + self.bias, dim=-1)

    return encoder_graph(upstream, head["layers"]), HeadGraph().eval()


def _export(module, examples: tuple, path: Path, in_names: list[str], out_name: str, dyn: dict, opset: int) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings on shape-dependent slicing; the axis is dynamic
        torch.onnx.export(module, examples, str(path), dynamo=False, opset_version=opset,
                          input_names=in_names, output_names=[out_name], dynamic_axes=dyn,
                          do_constant_folding=True)


def _check_upstream(upstream, fingerprint: str | None) -> str:
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    if not isinstance(upstream, WhisperEncoderUpstream):
        raise TypeError(f"ONNX export supports Whisper upstreams only, got {type(upstream).__name__}")
    actual = upstream.fingerprint()
    if fingerprint and fingerprint != actual:
        raise ValueError(f"upstream {upstream.name!r} has fingerprint {actual}, but the head was trained on "
                         f"{fingerprint}: pass the training encoder")
    return actual


def _write_encoder(upstream: WhisperEncoderUpstream, layers: list[int], classes: list[str], out: Path,
                   opset: int) -> dict:
    """encoder.onnx + mel_filters.npy in ``out``; returns the head-independent part of preprocessing.json."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    enc_graph = encoder_graph(upstream, layers).to("cpu")
    n_mels = int(upstream.model_config.num_mel_bins)
    k, d = len(layers), upstream.hidden_size
    _export(enc_graph, (torch.zeros(1, n_mels, 200),), out / "encoder.onnx", ["mel"], "hidden",
            {"mel": {2: "mel_frames"}, "hidden": {1: "frames"}}, opset)
    fe = upstream.feature_extractor  # the extractor behind upstream.log_mel: its parameters are the contract
    filters = np.asarray(fe.mel_filters, dtype=np.float64)
    atomic_write(out / "mel_filters.npy", lambda f: np.save(f, filters))
    sr = int(upstream.sample_rate)
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "sample_rate": sr,
        "n_fft": int(fe.n_fft),
        "hop": int(fe.hop_length),
        "n_mels": n_mels,
        "log_mel": "Whisper: n_fft/2 zeros appended, centred reflect-padded STFT, periodic Hann, power, "
                   "mel, log10(max(., 1e-10)), floor at max - 8 per window, (x + 4) / 4; no 30 s padding",
        "mel_filters": {"file": "mel_filters.npy", "shape": list(filters.shape),
                        "source": "transformers WhisperFeatureExtractor.mel_filters: slaney mel scale, "
                                  "slaney norm, 0-8000 Hz (= librosa.filters.mel(htk=False, norm='slaney'))"},
        "window_seconds": WINDOW_SECONDS,
        "window_samples": int(WINDOW_SECONDS * sr),
        "frame_rate": float(upstream.frame_rate),
        "classes": list(classes),
        "label_map": {str(i): c for i, c in enumerate(classes)},
        "layers": list(layers),
        "upstream": {"name": upstream.name, "fingerprint": upstream.fingerprint(), "model_type": "whisper-encoder",
                     "num_layers": upstream.num_layers, "hidden_size": d},
        "encoder": {"file": "encoder.onnx", "input": "mel [1, n_mels, T] float32",
                    "output": f"hidden [{k}, ceil(T/2), {d}] (the head's layers, in order)"},
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=False), torch {torch.__version__.split('+')[0]}",
    }


@writes_into("export")
def export_onnx(upstream: WhisperEncoderUpstream, head: dict, out_dir: str | Path, opset: int = DEFAULT_OPSET,
                fingerprint: str | None = None, segment: tuple[float, float | None] = (3.0, None)) -> Path:
    """Write encoder.onnx, head.onnx, mel_filters.npy and preprocessing.json into ``out_dir``; returns it.

    ``out_dir`` must be new, empty or an earlier export (:mod:`emoboost.outdir`): nothing else is overwritten.

    ``fingerprint`` is the upstream fingerprint the head was trained on; when given it must equal
    ``upstream.fingerprint()`` (features from other weights would not fit the head). ``segment`` (length,
    hop) seconds: the windows a timeline shows, as for the model it was exported from.
    """
    import torch

    _check_upstream(upstream, fingerprint)
    adaptation = head.get("adaptation")
    head = check_head(head, upstream.num_layers, upstream.hidden_size)
    out = Path(out_dir)
    pre = _write_encoder(upstream, head["layers"], head["classes"], out, opset)
    _, head_graph = torch_graphs(upstream, head)
    k, d = len(head["layers"]), upstream.hidden_size
    _export(head_graph, (torch.zeros(k, 10, d),), out / "head.onnx", ["frames"], "probabilities",
            {"frames": {1: "frames"}}, opset)
    pre["pooling"] = "mean"
    pre["segment_length"], pre["segment_hop"] = float(segment[0]), segment[1]
    pre["head"] = {"file": "head.onnx", "kind": "pooled",
                   "input": f"frames [{k}, N, {d}] (all windows' frames concatenated)",
                   "output": f"probabilities [{len(head['classes'])}]"}
    if adaptation:  # speaker profiles: the adapter's arrays, read with numpy (emoboost.methods.adaptation)
        pre["adaptation"] = write_adapter(out, adaptation)
    atomic_write_text(out / PREPROCESSING_FILE, json.dumps(pre, indent=2) + "\n")
    return out


def write_adapter(out: Path, adaptation: dict) -> dict:
    """``adaptation.safetensors`` (a speaker adapter's arrays) in ``out``; -> its preprocessing.json entry."""
    from safetensors.numpy import save

    from emoboost.methods.adapt_protocol import parse_adapt
    from emoboost.methods.adaptation import SpeakerAdapter

    arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in adaptation["arrays"].items()}
    atomic_write(out / "adaptation.safetensors", lambda f: f.write(save(arrays)))
    fp = SpeakerAdapter.from_arrays(arrays, parse_adapt(adaptation["protocol"])).fingerprint()
    return {"file": "adaptation.safetensors", "fingerprint": fp, "protocol": adaptation["protocol"],
            "use": "a speaker profile with clips: head input = x - speaker mean + adapt_mean; no profile (or no "
                   "clip heard): the population head adapt_pop_* (emoboost.methods.adaptation.predict_adapted)"}


SEGMENT_METHODS = ("msemoboost",)
"""Segment-level methods whose network exports as a head graph (one posterior per segment)."""


@writes_into("export")
def export_segment_model(upstream: WhisperEncoderUpstream, method, bundle: dict, out_dir: str | Path,
                         opset: int = DEFAULT_OPSET) -> Path:
    """Export a trained segment-level model (MS-EmoBoost) of a final bundle into ``out_dir`` (as :func:`export_onnx`).

    ``head.onnx`` takes one batch of segments — ``ssl`` [S, T', D] (or [S, L, T', D] for a learned
    layer sum) and the guidance inputs the model uses (``mfcc`` [S, T, 40], ``spec`` [S, T, F]) — and
    returns softmax posteriors [S, C]; the model's input standardisation is inside the graph. The
    utterance posterior is the mean over its segments, as in training. MFCC and spectrogram are
    recomputed at inference with :func:`emoboost.features.acoustic.segment_features` (numpy/librosa:
    still no torch), with the parameters written to preprocessing.json.
    """
    import torch

    from emoboost.features.acoustic import feature_params
    from emoboost.methods.layer_choice import parse_layer

    if getattr(method, "name", None) not in SEGMENT_METHODS or not hasattr(method, "module_"):
        raise ValueError(f"segment export supports trained {', '.join(SEGMENT_METHODS)} models, "
                         f"got {getattr(method, 'name', type(method).__name__)!r}")
    fp = (bundle.get("upstream") or {}).get("fingerprint")
    _check_upstream(upstream, fp)
    n_layers = int(upstream.num_layers)
    layer = parse_layer(method.params["layer"], n_layers)
    layers = list(range(n_layers)) if layer == "weighted" else [int(v) for v in method.ssl_layers(n_layers)]
    shapes = {k: tuple(int(v) for v in s) for k, s in method.input_shapes_.items()}
    names = ["ssl", *[n for n in ("mfcc", "spec", "valid") if n in shapes]]
    seg_len = float(bundle["segment_length"])
    hop = float(bundle.get("segment_hop") or seg_len)
    encoding = str(bundle.get("segment_encoding", "segment"))
    frame_rate = float(upstream.frame_rate)
    window_frames = shapes["ssl"][-2]
    want = int(round(seg_len * frame_rate)) if encoding != "segment" else None
    if want is not None and want != window_frames:
        raise ValueError(f"the model was built for {window_frames} frames per segment, the bundle's "
                         f"{seg_len:g} s segments give {want}")
    out = Path(out_dir)
    classes = list(method.classes)
    pre = _write_encoder(upstream, layers, classes, out, opset)

    class SegmentHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = method.module_

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            inputs = {n: method.preprocess(n, x) for n, x in zip(names, xs)}
            return torch.softmax(self.net(**inputs), dim=-1)

    method.module_.eval()
    examples = tuple(torch.full((2,), float(window_frames)) if n == "valid" else torch.zeros(2, *shapes[n])
                     for n in names)
    dyn = {n: {0: "segments"} for n in names}
    dyn["probabilities"] = {0: "segments"}
    _export(SegmentHead().eval(), examples, out / "head.onnx", names, "probabilities", dyn, opset)
    sr = int(upstream.sample_rate)
    block = int(round(min(float(bundle.get("encoder_window") or WINDOW_SECONDS), WINDOW_SECONDS) * sr))
    hop_samples = int(round(hop * sr))
    pre["head"] = {"file": "head.onnx", "kind": "segments", "method": method.name,
                   "inputs": {n: [None, *shapes[n]] for n in names},
                   "output": f"probabilities [S, {len(classes)}] (utterance = mean over its segments)"}
    pre["segments"] = {"length": seg_len, "hop": hop, "encoding": encoding, "window_frames": int(window_frames),
                       "squeeze": layer != "weighted", "block_samples": max(hop_samples, block - block % hop_samples)}
    pre["acoustic"] = {n: {k: v for k, v in feature_params(n).items() if k != "sr"} for n in names
                       if n not in ("ssl", "valid")}
    atomic_write_text(out / PREPROCESSING_FILE, json.dumps(pre, indent=2) + "\n")
    return out
