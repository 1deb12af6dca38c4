"""Log-mel front end shared by the pretrained models (Mockingjay, NPC).

The same module computes features during pretraining (whole files, once) and inside the upstream
at extraction time, so training and inference see identical inputs. Frames are centred with
*zero* padding (not reflection), so a clip gives the same frames alone as inside a zero-padded
batch. Normalisation statistics are buffers, hence saved with the weights and covered by the
upstream fingerprint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import librosa
import numpy as np
import torch


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel settings. ``normalize``: 'global' (stats from the pretraining data, keeps loudness
    differences between utterances, which carry emotion), 'utterance' (per-clip CMVN, as in NPC's
    original recipe) or 'none'."""

    sample_rate: int = 16_000
    n_mels: int = 80
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_fft: int = 512
    fmin: float = 0.0
    fmax: float | None = None
    log_floor: float = 1e-6
    normalize: str = "global"

    def __post_init__(self) -> None:
        if self.normalize not in ("global", "utterance", "none"):
            raise ValueError(f"normalize must be global|utterance|none, got {self.normalize!r}")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> FeatureConfig:
        return cls(**(d or {}))


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] bool, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class LogMel(torch.nn.Module):
    """wavs [B, N] -> raw log-mel [B, T, n_mels] with T = 1 + N // hop (centred frames)."""

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                 fmax=cfg.fmax, htk=False, norm="slaney")
        self.register_buffer("mel_fb", torch.from_numpy(fb.T.astype(np.float32)).contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length, periodic=True), persistent=False)
        # Normalisation stats (persistent: part of the checkpoint).
        self.register_buffer("mean", torch.zeros(cfg.n_mels))
        self.register_buffer("std", torch.ones(cfg.n_mels))

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        return 1 + num_samples // self.cfg.hop_length

    def raw(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised log-mel; frames past a clip's end are zeroed."""
        cfg = self.cfg
        if wavs.dim() != 2:
            raise ValueError(f"expected wavs [B, N], got shape {tuple(wavs.shape)}")
        valid = (torch.arange(wavs.shape[1], device=wavs.device)[None] < lengths[:, None]).to(wavs.dtype)
        wavs = wavs * valid  # samples past the end must be zeros, as in the clip-alone run
        pad = cfg.n_fft // 2
        x = torch.nn.functional.pad(wavs, (pad, pad))
        spec = torch.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                          window=self.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [B, F, T]
        mel = torch.log(torch.matmul(power.transpose(1, 2), self.mel_fb) + cfg.log_floor)
        flens = self.num_frames(lengths.long())
        n = int(flens.max()) if len(flens) else 0
        mel = mel[:, :n]
        if mel.shape[1] < n:  # cannot happen with centred frames, kept as a guard
            mel = torch.nn.functional.pad(mel, (0, 0, 0, n - mel.shape[1]))
        mel = mel * frame_mask(flens, n)[..., None]
        return mel, flens

    def normalize(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Apply the configured normalisation; padded frames stay zero."""
        mask = frame_mask(lengths, mel.shape[1])[..., None].to(mel.dtype)
        if self.cfg.normalize == "global":
            out = (mel - self.mean) / self.std
        elif self.cfg.normalize == "utterance":
            n = lengths.clamp(min=1).to(mel.dtype)[:, None, None]
            mu = (mel * mask).sum(1, keepdim=True) / n
            var = (((mel - mu) * mask) ** 2).sum(1, keepdim=True) / n
            out = (mel - mu) / (var.sqrt() + 1e-5)
        else:
            out = mel
        return out * mask

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, flens = self.raw(wavs, lengths)
        return self.normalize(mel, flens), flens

    @torch.no_grad()
    def set_stats(self, mels: list[torch.Tensor]) -> None:
        """Global mean/std over all frames of raw log-mels [T, n_mels] (the pretraining data)."""
        cat = torch.cat([m.reshape(-1, self.cfg.n_mels).double() for m in mels], 0)
        if len(cat) < 2:
            raise ValueError("need at least two frames to compute normalisation statistics")
        self.mean.copy_(cat.mean(0).float())
        self.std.copy_(cat.std(0).clamp(min=1e-3).float())
