"""ONNX vs PyTorch latency of one ~3 s clip: Whisper-base encoder + a pooled linear head on layer 3.

All variants run in one process, interleaved (one call of each per round, so load changes hit all of
them alike), with torch threads = onnxruntime intra-op threads (1 by default). Medians of warm calls.

Rows:
- ``onnx``: what the engine's onnxruntime backend (:mod:`emoboost.inference.backend_onnx`) runs: numpy log-mel + encoder.onnx (up to
  the head's layer) + head.onnx.
- ``torch (encode_mel)``: the training-time path: transformers' log-mel + ``upstream.encode_mel``
  (every layer) + the numpy head.
- ``torch (same graph)``: transformers' log-mel + the exact module that was exported (up to the head's
  layer) in eager PyTorch + the numpy head: the like-for-like comparison.
- the log-mel and encoder parts alone.

The head has fixed random weights: latency does not depend on them. Also prints the posterior max
abs difference ONNX vs encode_mel on the clip.

``--msemoboost`` adds MS-EmoBoost (guidance=both, the first ``--layers`` layer, untrained weights,
input standardisation fitted on the clip) exported with :func:`emoboost.inference.export.export_segment_model`:
``msemoboost onnx`` (the engine on the export: encoder.onnx + librosa MFCC/spectrogram + head.onnx) vs
``msemoboost torch`` (the engine's torch backend on the same model, encoder cut at that
layer as ``emoboost predict`` loads it), and their posterior difference.

    python benchmarks/onnx_latency.py                 # whisper-base, layer 3, 30 runs, 1 thread
    python benchmarks/onnx_latency.py --upstream whisper-tiny.en --layers 1 2 --runs 50
    python benchmarks/onnx_latency.py --msemoboost
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emoboost.audio import load_audio  # noqa: E402
from emoboost.inference.backend_onnx import log_mel  # noqa: E402
from emoboost.inference.engine import Engine  # noqa: E402
from emoboost.inference.export import export_onnx, head_posteriors, torch_graphs  # noqa: E402
from emoboost.upstreams import build_upstream  # noqa: E402
from emoboost.utils import shared_root  # noqa: E402


def clip_near(wav_dir: Path, seconds: float) -> Path:
    files = sorted(wav_dir.glob("*.wav"))
    if not files:
        raise SystemExit(f"{wav_dir}: no .wav files (set EMOBOOST_SHARED or pass --wav)")
    import soundfile as sf

    return min(files, key=lambda f: (abs(sf.info(str(f)).duration - seconds), f.name))


def msemoboost_pair(up, wav: np.ndarray, layer: int, out: Path, threads: int):
    """(ONNX engine, torch engine) of one untrained MS-EmoBoost on ``layer`` (standardisation fitted on ``wav``)."""
    from emoboost.audio import Segmenting
    from emoboost.features.encode import encode_clip
    from emoboost.features.pipeline import wav_features
    from emoboost.features.store import StoreSpec
    from emoboost.features.views import ArraySource, SSLView
    from emoboost.inference.backend_torch import TorchBackend
    from emoboost.inference.bundle import Bundle
    from emoboost.inference.export import export_segment_model
    from emoboost.methods import UtteranceSet
    from emoboost.methods.msemoboost import MSEmoBoost

    seg = Segmenting(3.0)
    frames, _ = encode_clip(up, wav, StoreSpec(encoding="utterance", frames="all", window=30.0, segmenting=seg))
    src = ArraySource([frames], [len(wav)], frame_rate=float(up.frame_rate))
    src.segmenting = seg
    feats = {n: [wav_features(wav, [n], seg)[n]] for n in ("mfcc", "spec")}
    data = UtteranceSet(["u0"], features=feats, ssl=SSLView(src))  # a prediction input: no label, no speaker
    classes = [f"c{i}" for i in range(7)]
    m = MSEmoBoost(classes, layer=layer, guidance="both")
    inputs, _ = m.segment_inputs(data)
    m.fit_preprocessing(inputs)
    m.input_shapes_ = {k: tuple(int(d) for d in v.shape[1:]) for k, v in inputs.items()}
    m.module_ = m.build_module(m.input_shapes_).eval()
    bundle = {"classes": classes, "features": ["ssl", "mfcc", "spec"], "segment_length": 3.0, "segment_hop": 3.0,
              "segment_encoding": "utterance", "encoder_window": 30.0,
              "upstream": {"spec": up.name, "fingerprint": up.fingerprint()}}
    export_segment_model(up, m, bundle, out)
    cut = build_upstream(up.name, max_layer=layer)  # as `predict` loads it: encoder cut at the layer used
    b = Bundle(out, "model", classes, method="msemoboost", features=bundle["features"], upstream=bundle["upstream"],
               segment_length=3.0, segment_hop=3.0, segment_encoding="utterance", encoder_window=30.0)
    return Engine.load(out, threads=threads), Engine(TorchBackend([m], b, cut), b)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", default="whisper-base")
    ap.add_argument("--layers", type=int, nargs="+", default=[3])
    ap.add_argument("--wav", default=None, help="clip to time (default: the EmoDB file closest to 3 s)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--msemoboost", action="store_true", help="also time an exported MS-EmoBoost model")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    wav_path = Path(args.wav) if args.wav else clip_near(shared_root() / "data" / "emodb" / "wav", 3.0)
    wav = load_audio(wav_path)
    up = build_upstream(args.upstream)
    rng = np.random.default_rng(0)
    f = len(args.layers) * up.hidden_size
    head = {"classes": [f"c{i}" for i in range(7)], "layers": args.layers, "pooling": "mean",
            "mean": rng.normal(0, 0.1, f), "scale": rng.uniform(0.5, 2, f),
            "weight": rng.normal(0, 2 / np.sqrt(f), (7, f)), "bias": np.zeros(7)}
    tmp = tempfile.TemporaryDirectory()
    export_onnx(up, head, tmp.name)
    pred = Engine.load(tmp.name, threads=args.threads)
    head = {**head, **{k: np.asarray(head[k], np.float32) for k in ("mean", "scale", "weight", "bias")}}
    graph, _ = torch_graphs(up, head)
    filters = np.asarray(up.feature_extractor.mel_filters)
    layers = head["layers"]

    def onnx_total():
        return pred.posteriors(wav)

    def torch_encode_mel():
        mel = torch.from_numpy(up.log_mel(wav))[None]
        hidden, _ = up.encode_mel(mel, torch.tensor([mel.shape[-1]]))
        return head_posteriors(head, hidden[layers, 0].numpy())

    def torch_same_graph():
        return head_posteriors(head, graph(torch.from_numpy(up.log_mel(wav))[None]).numpy())

    mel_np = log_mel(wav, filters)[None]
    mel_t = torch.from_numpy(up.log_mel(wav))[None]
    variants = {
        "onnx": onnx_total,
        "torch (encode_mel)": torch_encode_mel,
        "torch (same graph)": torch_same_graph,
        "log-mel numpy": lambda: log_mel(wav, filters),
        "log-mel transformers": lambda: up.log_mel(wav),
        "encoder onnx": lambda: pred.backend.encoder.run(None, {pred.backend._enc_in: mel_np}),
        "encoder torch (same graph)": lambda: graph(mel_t),
    }
    ms_err = None
    if args.msemoboost:
        ms_onnx, ms_torch = msemoboost_pair(up, wav, args.layers[0], Path(tmp.name) / "ms", args.threads)
        variants["msemoboost onnx"] = lambda: ms_onnx.posteriors(wav)
        variants["msemoboost torch"] = lambda: ms_torch.posteriors(wav)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        err = float(np.abs(onnx_total() - torch_encode_mel()).max())
        if args.msemoboost:
            ms_err = float(np.abs(ms_onnx.posteriors(wav) - ms_torch.posteriors(wav)).max())
        for i in range(args.warmup + args.runs):
            for name, fn in variants.items():
                t = time.perf_counter()
                fn()
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - t)
    load_after = os.getloadavg()

    import onnxruntime

    med = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    print(f"clip {wav_path.name} ({len(wav) / 16000:.2f} s), upstream {up.name}, layers {layers}, "
          f"threads {args.threads}, {args.runs} warm runs (+{args.warmup} warm-up), interleaved")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"load average (1/5/15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"posterior max abs diff ONNX vs encode_mel: {err:.2e}")
    if ms_err is not None:
        print(f"MS-EmoBoost posterior max abs diff ONNX vs PyTorch: {ms_err:.2e}")
    print()
    print("| variant | median ms | p10-p90 ms | vs onnx |")
    print("|---|---:|---:|---:|")
    ref = {"encoder onnx": "encoder onnx", "encoder torch (same graph)": "encoder onnx",
           "log-mel numpy": "log-mel numpy", "log-mel transformers": "log-mel numpy",
           "msemoboost onnx": "msemoboost onnx", "msemoboost torch": "msemoboost onnx"}
    for k, v in times.items():
        p10, p90 = (1000 * float(np.percentile(v, q)) for q in (10, 90))
        base = med[ref.get(k, "onnx")]
        print(f"| {k} | {med[k]:.1f} | {p10:.1f}-{p90:.1f} | {med[k] / base:.2f}x |")


if __name__ == "__main__":
    main()
