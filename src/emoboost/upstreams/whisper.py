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
feature store encodes one clip, or one clip's equal-length segments, per call, so it never pads.)

Only the encoder is ever built: ``WhisperEncoder(config)`` is created on the meta device (no random
init) and filled from the checkpoint's ``encoder.*`` tensors (fp16 -> fp32); decoder tensors are never
read. With ``max_layer=k`` only layers 1..k are built and read; the final ``layer_norm`` belongs to the
last hidden state of the full model, so it is applied only when k is the last layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emoboost.upstreams.base import Upstream, check_max_layer
from emoboost.upstreams.identity import WHISPER_HOP as HOP
from emoboost.upstreams.identity import WHISPER_N_FFT as N_FFT
from emoboost.upstreams.identity import default_name, local_dir, weight_files, whisper_identity

_PREFIXES = ("model.encoder.", "encoder.", "")  # WhisperForConditionalGeneration, WhisperModel, bare encoder


def _read_encoder_tensors(files: list[Path], wanted: set[str]) -> dict[str, torch.Tensor]:
    """The encoder tensors named in ``wanted`` (keys without prefix) as float32; nothing else is read."""
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    prefix: str | None = None
    for f in files:
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as st:
                keys = list(st.keys())
                if prefix is None:
                    prefix = next((p for p in _PREFIXES if f"{p}conv1.weight" in keys), None)
                for k in keys:
                    if prefix is not None and k.startswith(prefix) and k[len(prefix):] in wanted:
                        found[k[len(prefix):]] = st.get_tensor(k).to(torch.float32)
        else:  # pytorch_model*.bin: tensors only, never pickled objects
            state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            if prefix is None:
                prefix = next((p for p in _PREFIXES if f"{p}conv1.weight" in state), None)
            for k, v in state.items():
                if prefix is not None and k.startswith(prefix) and k[len(prefix):] in wanted:
                    found[k[len(prefix):]] = v.to(torch.float32)
            del state
    return found


def load_encoder(directory: str | Path, max_layer: int | None = None):
    """(``WhisperEncoder`` float32 with layers 1..max_layer (all when None), the checkpoint's full
    ``WhisperConfig``), read straight from the weight files of a Hugging Face layout directory."""
    import copy

    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    d = Path(directory)
    config = WhisperConfig.from_pretrained(str(d), local_files_only=True)
    check_max_layer(max_layer, config.encoder_layers + 1, str(d))
    n_layers = config.encoder_layers if max_layer is None else max_layer
    enc_config = copy.deepcopy(config)
    enc_config.encoder_layers = n_layers
    with torch.device("meta"):  # shapes only: every tensor comes from the checkpoint
        enc = WhisperEncoder(enc_config)
    wanted = set(enc.state_dict())
    files = weight_files(d)
    state = _read_encoder_tensors(files, wanted)
    missing = sorted(wanted - set(state))
    where = files[0] if len(files) == 1 else d
    if missing:
        raise ValueError(f"{where}: not a Whisper encoder checkpoint for {d / 'config.json'} "
                         f"(missing {len(missing)} encoder tensors, e.g. {', '.join(missing[:3])})")
    try:
        enc.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{where}: weights do not match {d / 'config.json'} ({e})") from e
    left = [n for n, t in [*enc.named_parameters(), *enc.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{where}: no values for {', '.join(left[:3])}")
    return enc, config


def key_padding_mask(lengths: torch.Tensor, t: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask [B, 1, 1, T] for Whisper encoder layers: keys at or past each row's
    length get the dtype's minimum, so padded frames never reach the real ones."""
    pad = torch.arange(t, device=lengths.device)[None] >= lengths.reshape(-1, 1)
    return torch.zeros(pad.shape, dtype=dtype, device=lengths.device).masked_fill(pad, torch.finfo(dtype).min)[
        :, None, None, :]


class WhisperEncoderUpstream(Upstream):
    """Frame-level Whisper encoder: returns embeddings output + every layer (last after layer_norm).

    ``source`` is a local directory in Hugging Face ``WhisperModel`` layout (possibly encoder-only,
    as in ``shared/weights/whisper-base-encoder``) or a hub id such as ``openai/whisper-base``.
    whisper-base gives L=7, D=512, 50 frames/s (3 s -> 150 frames). ``max_layer=k`` builds and runs
    layers 1..k only and returns hidden states 0..k (``num_layers`` stays the model's 7,
    ``layers_out`` is k + 1).
    """

    frame_rate = 50.0

    def __init__(self, source: str | Path, name: str | None = None, device: str | torch.device = "cpu",
                 max_layer: int | None = None):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        source = str(source)
        self.source = source
        self.directory = local_dir(source)
        self.name = name or default_name(source)
        self.encoder, cfg = load_encoder(self.directory, max_layer=max_layer)
        self.encoder.eval().requires_grad_(False)
        self.model_config = cfg  # the full model's config (encoder.config holds the cut layer count)
        self.num_layers = cfg.encoder_layers + 1
        self.max_layer = max_layer
        self.hidden_size = cfg.d_model
        self.max_frames = cfg.max_source_positions  # encoder output frames (1500 = 30 s)
        # Built from parameters, never downloaded: only the mel-bin count varies between checkpoints.
        self.feature_extractor = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)
        self._identity: dict | None = None
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
        attn_mask = key_padding_mask(out_lengths, t_out, x.dtype) if padded else None
        hidden = [x]
        for layer in enc.layers:  # layers 1..max_layer only when cut
            x = layer(x, attn_mask)
            x = x[0] if isinstance(x, tuple) else x
            hidden.append(x)
        if len(hidden) == self.num_layers:  # the full model's last hidden state is layer-normed
            hidden[-1] = enc.layer_norm(hidden[-1])
        return torch.stack(hidden), out_lengths

    def num_frames(self, num_samples: int) -> int:
        return (num_samples // HOP + 1) // 2

    # ---- identity -----------------------------------------------------------------------
    def weights_hash(self) -> str:
        """Hash of the weight files' bytes (see :mod:`emoboost.upstreams.identity`)."""
        return self.config_dict()["weights"]

    def config_dict(self) -> dict:
        if self._identity is None:
            self._identity = whisper_identity(self.directory, self.name)
        return dict(self._identity)
