"""wav2vec 2.0 / HuBERT / WavLM from Hugging Face transformers as upstreams.

Loaded from a hub id (users with internet) or a local directory; a local directory is always
opened with ``local_files_only=True`` so no hub is ever contacted for it. Every hidden state is
returned (CNN-projection output + each transformer layer), as the :class:`Upstream` protocol asks.

Input normalisation matters and differs between checkpoints: fairseq trained the base models on
raw waveforms and the large (layer-norm) ones on per-utterance zero-mean/unit-variance input. The
choice is, in order: the explicit ``normalize`` argument, ``do_normalize`` in the checkpoint's
``preprocessor_config.json``, else ``feat_extract_norm == "layer"`` (the fairseq convention).

``max_layer=k`` loads the model with ``num_hidden_layers=k`` (the deeper layers' weights are never
read) and returns hidden states 0..k. Checkpoints with ``do_stable_layer_norm`` (the large ones)
apply the encoder's ``layer_norm`` after the last layer only, i.e. never to hidden state k < L-1
(transformers 5 leaves it off ``hidden_states`` altogether); a cut model therefore replaces it by
the identity, so hidden state k is the same tensor as in the full model.

A hub id is first fetched as a local snapshot (config, preprocessor config, one weight format) and
loaded from there with ``local_files_only``; the model class is the bare ``AutoModel``
(``Wav2Vec2Model`` ...): pretraining heads (quantizer, ``project_q``, CTC) are never built.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from emoboost.upstreams.base import Upstream, check_max_layer
from emoboost.upstreams.identity import default_name, hf_identity, local_dir, read_config, resolve_normalize

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")


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


class HFUpstream(Upstream):
    """A transformers wav2vec2/HuBERT/WavLM model returning all hidden states [L, B, T', D].

    ``normalize`` (None = decide from the checkpoint, see module doc) standardises each utterance
    over its own samples (padding excluded) before the model sees it. ``max_layer=k`` builds layers
    1..k only and returns hidden states 0..k (``num_layers`` stays the model's count).
    """

    def __init__(
        self,
        source: str | Path,
        name: str | None = None,
        normalize: bool | None = None,
        device: str | torch.device = "cpu",
        max_layer: int | None = None,
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        source = str(source)
        self.source = source
        self.directory = local_dir(source)
        config = AutoConfig.from_pretrained(str(self.directory), local_files_only=True)
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"{source}: model_type {config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
            )
        self.num_layers = config.num_hidden_layers + 1
        self.max_layer = check_max_layer(max_layer, self.num_layers, source)
        cut = max_layer is not None and max_layer < config.num_hidden_layers
        load_config = copy.deepcopy(config)
        if cut:
            load_config.num_hidden_layers = max_layer
        with quiet_transformers():  # pretraining heads / cut layers in the checkpoint are unused: expected
            model = AutoModel.from_pretrained(str(self.directory), config=load_config, local_files_only=True,
                                              dtype=torch.float32)
        if cut and config.do_stable_layer_norm:
            model.encoder.layer_norm = torch.nn.Identity()  # it follows the full model's last layer only
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.model_config = config  # the full model's config
        self.model_type = config.model_type
        self.name = name or default_name(source)
        self.hidden_size = config.hidden_size
        self.frame_rate = 16000 / math.prod(config.conv_stride)
        self.use_attention_mask = config.feat_extract_norm == "layer"
        self.normalize = resolve_normalize(self.directory, read_config(self.directory), normalize)
        self._identity: dict | None = None
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
        hidden = out.hidden_states
        if not hidden:  # max_layer=0: no layer to record; the encoder output is hidden state 0
            hidden = (out.last_hidden_state,)
        layers = torch.stack(hidden)
        frame_lengths = self.model._get_feat_extract_output_lengths(lengths).long()
        return layers, frame_lengths

    def num_frames(self, num_samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def weights_hash(self) -> str:
        """Hash of the weight files' bytes (see :mod:`emoboost.upstreams.identity`)."""
        return self.config_dict()["weights"]

    def config_dict(self) -> dict:
        if self._identity is None:
            self._identity = hf_identity(self.directory, self.name, self.normalize)
        return dict(self._identity)
