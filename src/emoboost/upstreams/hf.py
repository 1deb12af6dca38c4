"""wav2vec 2.0 / HuBERT / WavLM from Hugging Face transformers as upstreams.

Loaded from a hub id (users with internet) or a local directory; a local directory is always
opened with ``local_files_only=True`` so no hub is ever contacted for it. Every hidden state is
returned (CNN-projection output + each transformer layer), as the :class:`Upstream` protocol asks.

Input normalisation matters and differs between checkpoints: fairseq trained the base models on
raw waveforms and the large (layer-norm) ones on per-utterance zero-mean/unit-variance input. The
choice is, in order: the explicit ``normalize`` argument, ``do_normalize`` in the checkpoint's
``preprocessor_config.json``, else ``feat_extract_norm == "layer"`` (the fairseq convention).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from emoboost.upstreams.base import Upstream, state_dict_hash

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")

# Config fields that say where/how a checkpoint was loaded, not what it computes: kept out of fingerprints.
_VOLATILE_CONFIG_KEYS = (
    "_name_or_path", "name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash",
    "_attn_implementation", "_attn_implementation_autoset", "output_hidden_states", "output_attentions",
    "return_dict", "architectures", "id2label", "label2id", "use_cache",
)


def stable_config(config) -> dict:
    """A transformers config as a dict without path/version/runtime fields (for fingerprints)."""
    d = json.loads(config.to_json_string(use_diff=False))
    for k in _VOLATILE_CONFIG_KEYS:
        d.pop(k, None)
    return d


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Mute expected load-time noise (unused-head / missing-decoder warnings, weight-loading bars)."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _read_do_normalize(source: str, local: bool) -> bool | None:
    """``do_normalize`` from preprocessor_config.json (local file, or the hub's when online); None if absent."""
    path: str | None = None
    if local:
        p = Path(source) / "preprocessor_config.json"
        path = str(p) if p.is_file() else None
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(source, "preprocessor_config.json")
        except Exception as e:  # no such file, offline, no network: fall back to the config heuristic
            log.info("no preprocessor_config.json for %s (%s)", source, e)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("do_normalize")
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable preprocessor config ({e})") from e
    return None if value is None else bool(value)


class HFUpstream(Upstream):
    """A transformers wav2vec2/HuBERT/WavLM model returning all hidden states [L, B, T', D].

    ``normalize`` (None = decide from the checkpoint, see module doc) standardises each utterance
    over its own samples (padding excluded) before the model sees it.
    """

    def __init__(
        self,
        source: str | Path,
        name: str | None = None,
        normalize: bool | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        source = str(source)
        local = Path(source).is_dir()
        self.source = source
        config = AutoConfig.from_pretrained(source, local_files_only=local)
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"{source}: model_type {config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
            )
        with quiet_transformers():  # pretraining heads (quantizer, project_q) are unused: expected
            model = AutoModel.from_pretrained(source, config=config, local_files_only=local, dtype=torch.float32)
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.model_config = config
        self.model_type = config.model_type
        self.name = name or (Path(source).name if local else source.replace("/", "_"))
        self.num_layers = config.num_hidden_layers + 1
        self.hidden_size = config.hidden_size
        self.frame_rate = 16000 / math.prod(config.conv_stride)
        self.use_attention_mask = config.feat_extract_norm == "layer"
        if normalize is None:
            normalize = _read_do_normalize(source, local)
        if normalize is None:
            normalize = config.feat_extract_norm == "layer"
        self.normalize = bool(normalize)
        self._weights_hash: str | None = None
        self.to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs [B, T] float32 at 16 kHz (zero-padded), lengths [B] samples -> ([L, B, T', D], [B])."""
        dev = self.device
        wavs = wavs.to(dev, torch.float32)
        lengths = torch.as_tensor(lengths).long().to(dev)
        mask = torch.arange(wavs.shape[1], device=dev)[None] < lengths[:, None]
        wavs = wavs * mask  # whatever the caller padded with, the model sees zeros
        if self.normalize:
            n = lengths.clamp(min=1)[:, None].to(wavs.dtype)
            mean = wavs.sum(1, keepdim=True) / n
            var = ((wavs - mean) ** 2 * mask).sum(1, keepdim=True) / n
            wavs = (wavs - mean) / torch.sqrt(var + 1e-7) * mask
        with warnings.catch_warnings():
            # WavLM's own attention mixes bool and float masks inside torch; harmless and not ours to fix.
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            out = self.model(
                wavs,
                attention_mask=mask.long() if self.use_attention_mask else None,
                output_hidden_states=True,
                return_dict=True,
            )
        layers = torch.stack(out.hidden_states)
        frame_lengths = self.model._get_feat_extract_output_lengths(lengths).long()
        return layers, frame_lengths

    def num_frames(self, num_samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def weights_hash(self) -> str:
        if self._weights_hash is None:
            self._weights_hash = state_dict_hash(self.model)
        return self._weights_hash

    def config_dict(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.model_type,
            "config": stable_config(self.model_config),
            "weights": self.weights_hash(),
            "normalize": self.normalize,
            "attention_mask": self.use_attention_mask,
        }
