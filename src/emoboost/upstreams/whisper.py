"""Whisper encoder as an upstream, run on a clip's own frames instead of the 30 s window.

Whisper's encoder is trained on 30 s of log-mel (3000 frames -> 1500 outputs). Emotion segments
are 3 s, so padding each one to 30 s would cost ~10x compute for frames we throw away. We instead
run ``conv1 -> gelu -> conv2 -> gelu -> + embed_positions[:T] -> layers -> layer_norm`` on just the
clip's frames. The log-mel is identical to the padded run's first frames (see :func:`log_mel`); the
embeddings output is identical except the very last frame; deeper layers only approximately match
the padded run because attention no longer sees the trailing silence (tests/upstreams/test_whisper.py
measures how closely).

Batches of different lengths: mel frames are zero-padded, the conv stack is masked so padded frames
never leak into valid ones, and an additive attention mask hides padded keys. Each clip therefore
gets the same output as when run alone (up to float rounding), whatever else is in its batch. (The
feature extractor in :mod:`emoboost.features.cache` feeds equal-length segments, so it never pads.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emoboost.upstreams.base import Upstream, state_dict_hash
from emoboost.upstreams.hf import quiet_transformers, stable_config

HOP = 160  # Whisper log-mel hop (10 ms at 16 kHz)
N_FFT = 400


def _load_encoder(source: str, local_files_only: bool) -> torch.nn.Module:
    """WhisperModel(...).encoder in float32; the decoder being absent is expected, so its warning is muted."""
    from transformers import WhisperModel

    with quiet_transformers():  # "decoder weights not initialized" is expected for encoder-only dirs
        model = WhisperModel.from_pretrained(source, dtype=torch.float32, local_files_only=local_files_only)
    return model.encoder


class WhisperEncoderUpstream(Upstream):
    """Frame-level Whisper encoder: returns embeddings output + every layer (last after layer_norm).

    ``source`` is a local directory in Hugging Face ``WhisperModel`` layout (possibly encoder-only,
    as in ``shared/weights/whisper-base-encoder``) or a hub id such as ``openai/whisper-base``.
    whisper-base gives L=7, D=512, 50 frames/s (3 s -> 150 frames).
    """

    frame_rate = 50.0

    def __init__(self, source: str | Path, name: str | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        source = str(source)
        local = Path(source).is_dir()
        self.source = source
        self.encoder = _load_encoder(source, local_files_only=local).eval()
        self.encoder.requires_grad_(False)
        cfg = self.encoder.config
        self.model_config = cfg
        self.name = name or (Path(source).name if local else source.replace("/", "_"))
        self.num_layers = cfg.encoder_layers + 1
        self.hidden_size = cfg.d_model
        self.max_frames = cfg.max_source_positions  # encoder output frames (1500 = 30 s)
        # Built from parameters, never downloaded: only the mel-bin count varies between checkpoints.
        self.feature_extractor = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)
        self._weights_hash: str | None = None
        self.to(device).eval()

    @property
    def device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    # ---- features -----------------------------------------------------------------------
    def log_mel(self, wav: np.ndarray) -> np.ndarray:
        """[n_mels, len // 160] Whisper log-mel of one clip, without padding to 30 s.

        The clip is followed by n_fft/2 zeros before the centred STFT, so every kept frame sees
        exactly the samples it would see in the 30 s zero-padded input (no reflection at the end),
        and the per-clip max clamp is unchanged (zero padding only adds smaller values). Hence the
        result equals the first ``len // 160`` frames of the padded extractor's output.
        """
        wav = np.asarray(wav, dtype=np.float32)
        n_frames = len(wav) // HOP
        if n_frames < 1:
            raise ValueError(f"clip of {len(wav)} samples is shorter than one Whisper frame ({HOP} samples)")
        padded = np.concatenate([wav, np.zeros(N_FFT // 2, dtype=np.float32)])
        feats = self.feature_extractor(
            padded, sampling_rate=16000, padding="do_not_pad", truncation=False, return_tensors="np"
        )["input_features"][0]
        return feats[:, :n_frames]

    # ---- model --------------------------------------------------------------------------
    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs [B, T] float32 at 16 kHz, lengths [B] samples -> ([L, B, T', D], frame lengths [B])."""
        lengths = torch.as_tensor(lengths).long().cpu()
        wav_np = wavs.detach().float().cpu().numpy()
        mels = [self.log_mel(wav_np[i, : int(n)]) for i, n in enumerate(lengths)]
        mel_lens = torch.tensor([m.shape[1] for m in mels])
        t_mel = int(mel_lens.max())
        batch = np.zeros((len(mels), mels[0].shape[0], t_mel), dtype=np.float32)
        for i, m in enumerate(mels):
            batch[i, :, : m.shape[1]] = m
        return self.encode_mel(torch.from_numpy(batch), mel_lens)

    def encode_mel(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel [B, n_mels, T] (zero-padded), lengths [B] -> ([L, B, ceil(T/2), D], frame lengths [B])."""
        enc = self.encoder
        dev = self.device
        mel = mel.to(dev, torch.float32)
        mel_lengths = torch.as_tensor(mel_lengths).long().to(dev)
        out_lengths = (mel_lengths + 1) // 2  # conv2: kernel 3, stride 2, padding 1
        t_out = (mel.shape[-1] + 1) // 2
        if t_out > self.max_frames:
            raise ValueError(
                f"clip too long for Whisper: {t_out} encoder frames > {self.max_frames} "
                f"({self.max_frames / self.frame_rate:g} s); segment the audio first"
            )
        padded = bool((mel_lengths < mel.shape[-1]).any())
        in_mask = torch.arange(mel.shape[-1], device=dev)[None] < mel_lengths[:, None]  # [B, T]
        # Zero padded mel frames and conv1 outputs so that valid frames see the same zeros the conv's
        # own padding would give for a clip run alone.
        x = F.gelu(enc.conv1(mel * in_mask[:, None]))
        if padded:
            x = x * in_mask[:, None]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[:t_out]
        attn_mask = None
        if padded:
            keep = torch.arange(t_out, device=dev)[None] < out_lengths[:, None]  # [B, T']
            attn_mask = torch.zeros(keep.shape, dtype=x.dtype, device=dev)
            attn_mask = attn_mask.masked_fill(~keep, torch.finfo(x.dtype).min)[:, None, None, :]
        hidden = [x]
        for layer in enc.layers:
            x = layer(x, attn_mask)
            x = x[0] if isinstance(x, tuple) else x
            hidden.append(x)
        hidden[-1] = enc.layer_norm(hidden[-1])
        return torch.stack(hidden), out_lengths

    def num_frames(self, num_samples: int) -> int:
        return (num_samples // HOP + 1) // 2

    # ---- identity -----------------------------------------------------------------------
    def weights_hash(self) -> str:
        if self._weights_hash is None:
            self._weights_hash = state_dict_hash(self.encoder)
        return self._weights_hash

    def config_dict(self) -> dict:
        return {
            "name": self.name,
            "model_type": "whisper-encoder",
            "config": stable_config(self.model_config),
            "weights": self.weights_hash(),
            "mel": {"n_mels": self.model_config.num_mel_bins, "hop": HOP, "n_fft": N_FFT, "pad_to_30s": False},
        }
