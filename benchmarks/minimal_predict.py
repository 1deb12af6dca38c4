"""The minimal reference for predict's speed: Whisper log-mel + encoder layers 1..k + pooled logreg heads.

The same work as ``emoboost predict RUN clip.wav`` on a pooled logistic-regression run, written
with nothing but numpy, torch, soundfile and safetensors (no emoboost, no transformers): read the
16 kHz clip, log-mel it as Whisper does, run conv1/conv2 and only the encoder layers the heads
read, mean-pool the clip's own frames, and average the softmax of every fold model's head.
``benchmarks/speed.py`` times it against emoboost (in one process, and cold in fresh processes) and
checks that both give the same posteriors.

    python benchmarks/minimal_predict.py --run runs/emodb-logreg3 --weights ../shared/weights/whisper-base-encoder clip.wav

``--transformers`` runs transformers' ``WhisperEncoder`` modules (what emoboost runs) instead: the
like-for-like reference when the question is emoboost's own overhead rather than transformers' import.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from safetensors import safe_open

N_FFT, HOP, SR = 400, 160, 16000


def mel_filters(n_mels: int, sr: int = SR, n_fft: int = N_FFT) -> np.ndarray:
    """[n_mels, 1 + n_fft/2] triangular filters on the Slaney mel scale with Slaney area norm (Whisper's)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * 27.0 / np.log(6.4), 3.0 * f / 200.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), 200.0 * m / 3.0)

    fft_f = np.linspace(0, sr // 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    slopes = mel_f[None, :] - fft_f[:, None]
    down = -slopes[:, :-2] / np.diff(mel_f)[:-1]
    up = slopes[:, 2:] / np.diff(mel_f)[1:]
    w = np.maximum(0.0, np.minimum(down, up)) * (2.0 / (mel_f[2:] - mel_f[:-2]))
    return w.T.astype(np.float32)


class Encoder:
    """Log-mel + the first ``depth`` layers of a Whisper encoder, from its safetensors file (float32)."""

    def __init__(self, weights: str | Path, depth: int | None = None):
        weights = Path(weights)
        cfg = json.loads((weights / "config.json").read_text())
        self.config = cfg
        self.d, self.heads, self.n_layers = cfg["d_model"], cfg["encoder_attention_heads"], cfg["encoder_layers"]
        self.depth = self.n_layers if depth is None else int(depth)
        self.filters = torch.from_numpy(mel_filters(cfg["num_mel_bins"]))
        self.window = torch.hann_window(N_FFT)
        names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "embed_positions.weight"]
        names += [f"layers.{i}.{n}" for i in range(self.depth) for n in (
            "self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "self_attn.q_proj.weight",
            "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
            "self_attn.out_proj.weight", "self_attn.out_proj.bias", "final_layer_norm.weight",
            "final_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")]
        if self.depth == self.n_layers:
            names += ["layer_norm.weight", "layer_norm.bias"]
        with safe_open(str(weights / "model.safetensors"), framework="pt") as f:
            keys = set(f.keys())
            prefix = next(p for p in ("model.encoder.", "encoder.", "") if f"{p}conv1.weight" in keys)
            self.w = {n: f.get_tensor(prefix + n).float() for n in names}

    def log_mel(self, wav: np.ndarray) -> torch.Tensor:
        """[n_mels, len // 160]: the clip followed by n_fft/2 zeros, centred STFT, Whisper's clamp and scale."""
        x = torch.from_numpy(np.concatenate([wav, np.zeros(N_FFT // 2, np.float32)]))
        spec = torch.stft(x, N_FFT, HOP, window=self.window, return_complex=True)[:, :-1].abs() ** 2
        log = torch.clamp(self.filters @ spec, min=1e-10).log10()
        log = torch.maximum(log, log.max() - 8.0)
        return ((log + 4.0) / 4.0)[:, : len(wav) // HOP]

    def hidden(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states 0..depth, each [T, d], of the clip's own frames (the last full one layer-normed)."""
        w, d, h = self.w, self.d, self.heads
        x = F.gelu(F.conv1d(mel[None], w["conv1.weight"], w["conv1.bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["conv2.weight"], w["conv2.bias"], stride=2, padding=1))[0].T
        x = x + w["embed_positions.weight"][: len(x)]
        out = [x]
        t = len(x)
        for i in range(self.depth):
            p = f"layers.{i}."
            y = F.layer_norm(x, (d,), w[p + "self_attn_layer_norm.weight"], w[p + "self_attn_layer_norm.bias"])
            q = F.linear(y, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"])
            k = F.linear(y, w[p + "self_attn.k_proj.weight"])
            v = F.linear(y, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"])
            q, k, v = (z.view(t, h, d // h).transpose(0, 1) for z in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(t, d)
            x = x + F.linear(a, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
            y = F.layer_norm(x, (d,), w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"])
            x = x + F.linear(F.gelu(F.linear(y, w[p + "fc1.weight"], w[p + "fc1.bias"])), w[p + "fc2.weight"],
                             w[p + "fc2.bias"])
            out.append(x)
        if self.depth == self.n_layers:
            out[-1] = F.layer_norm(out[-1], (d,), w["layer_norm.weight"], w["layer_norm.bias"])
        return out


class TransformersEncoder(Encoder):
    """The same work with transformers' ``WhisperEncoder`` modules (``--transformers``): the encoder
    the toolkit itself runs, built on the meta device and given the checkpoint's tensors, cut at the
    deepest layer used. The reference that uses the same model library as emoboost."""

    def __init__(self, weights: str | Path, depth: int | None = None):
        super().__init__(weights, depth)
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = WhisperConfig.from_pretrained(str(weights))
        with torch.device("meta"):
            enc = WhisperEncoder(cfg)
        enc.layers = enc.layers[: self.depth]
        if self.depth < self.n_layers:
            enc.layer_norm = None
        enc.load_state_dict(self.w, strict=False, assign=True)
        self.enc = enc.eval()

    def hidden(self, mel: torch.Tensor) -> list[torch.Tensor]:
        enc = self.enc
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel[None])))).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        out = [x[0]]
        for layer in enc.layers:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x
            out.append(x[0])
        if enc.layer_norm is not None:
            out[-1] = enc.layer_norm(out[-1])
        return out


class Reference:
    """A pooled logreg run: the encoder up to the deepest layer its heads read, and every fold head."""

    def __init__(self, run: str | Path, weights: str | Path, transformers: bool = False):
        run = Path(run)
        bundle = json.loads((run / "bundle.json").read_text())
        if bundle.get("method") != "logreg":
            raise SystemExit(f"{run}: the reference implements pooled logreg heads only, not {bundle.get('method')!r}")
        self.classes = bundle["classes"]
        self.layers = [int(v) for v in bundle["upstream"]["layers"]]
        self.encoder = (TransformersEncoder if transformers else Encoder)(weights, max(self.layers))
        self.models = []
        for m in bundle["models"]:
            with safe_open(str(run / m / "model.safetensors"), framework="numpy") as f:
                self.models.append({k: f.get_tensor(k) for k in ("coef", "intercept", "mean", "scale")})

    @torch.inference_mode()
    def posteriors(self, path: str | Path) -> np.ndarray:
        """[C] posteriors of one 16 kHz mono file: the mean of the fold heads' softmax."""
        wav, sr = sf.read(str(path), dtype="float32")
        if sr != SR or wav.ndim != 1:
            raise SystemExit(f"{path}: the reference reads 16 kHz mono files only (got {sr} Hz, shape {wav.shape})")
        hs = self.encoder.hidden(self.encoder.log_mel(wav))
        x = np.concatenate([hs[li].double().mean(0).numpy() for li in self.layers])
        p = np.zeros(len(self.classes))
        for m in self.models:
            z = ((x - m["mean"]) / m["scale"]) @ m["coef"].T + m["intercept"]
            e = np.exp(z - z.max())
            p += e / e.sum()
        return p / len(self.models)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="run directory of a pooled logreg run")
    ap.add_argument("--weights", required=True, help="Whisper encoder directory (config.json + model.safetensors)")
    ap.add_argument("--transformers", action="store_true",
                    help="run transformers' WhisperEncoder modules instead of the plain-torch encoder")
    ap.add_argument("audio", nargs="+")
    args = ap.parse_args()
    ref = Reference(args.run, args.weights, args.transformers)
    for a in args.audio:
        p = ref.posteriors(a)
        print(f"{a}\t{ref.classes[int(p.argmax())]}\t" + "  ".join(
            f"{c}={v:.3f}" for c, v in sorted(zip(ref.classes, p), key=lambda cv: -cv[1])))


if __name__ == "__main__":
    sys.exit(main())
