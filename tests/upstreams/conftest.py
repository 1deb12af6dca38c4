"""Tiny randomly-initialised transformers checkpoints saved into tmp_path (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from builders import save_tiny_whisper

TINY_SSL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10,
)


def save_tiny_ssl(path: Path, model_type: str = "wav2vec2", feat_extract_norm: str = "group", seed: int = 0,
                  preprocessor: dict | None = None) -> Path:
    """A 2-layer, 32-dim wav2vec2/HuBERT/WavLM (stride 80 -> 200 frames/s) in save_pretrained layout."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

    classes = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel),
               "wavlm": (WavLMConfig, WavLMModel)}
    cfg_cls, model_cls = classes[model_type]
    torch.manual_seed(seed)
    cfg = cfg_cls(**TINY_SSL, feat_extract_norm=feat_extract_norm,
                  do_stable_layer_norm=feat_extract_norm == "layer")
    model_cls(cfg).save_pretrained(path)
    if preprocessor is not None:
        (path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Weight-file hashes are remembered under $EMOBOOST_CACHE: keep each test's to itself."""
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EMOBOOST_CACHE", str(d))
    return d


@pytest.fixture
def tiny_ssl(tmp_path):
    def make(model_type: str = "wav2vec2", name: str | None = None, **kw) -> Path:
        return save_tiny_ssl(tmp_path / (name or f"tiny-{model_type}"), model_type, **kw)
    return make


@pytest.fixture
def tiny_whisper(tmp_path):
    def make(name: str = "tiny-whisper", **kw) -> Path:
        return save_tiny_whisper(tmp_path / name, **kw)
    return make
