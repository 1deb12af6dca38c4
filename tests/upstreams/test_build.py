"""build_upstream: names, hub ids, local dirs, shared offline weights, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from emoboost.upstreams import KNOWN_UPSTREAMS, Upstream, build_upstream, resolve_upstream

REPO = Path(__file__).resolve().parents[2]


def test_known_names_resolve_to_hub_ids_without_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOBOOST_SHARED", str(tmp_path / "empty"))
    assert resolve_upstream("wav2vec2-base") == ("facebook/wav2vec2-base", False)
    assert resolve_upstream("hubert-base") == ("facebook/hubert-base-ls960", False)
    assert resolve_upstream("wavlm-base-plus") == ("microsoft/wavlm-base-plus", False)
    assert resolve_upstream("whisper-base") == ("openai/whisper-base", False)
    assert resolve_upstream("someone/some-model") == ("someone/some-model", False)


def test_names_resolve_to_shared_weights(tmp_path, monkeypatch):
    d = tmp_path / "shared" / "weights" / "whisper-base-encoder"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    monkeypatch.setenv("EMOBOOST_SHARED", str(tmp_path / "shared"))
    assert resolve_upstream("whisper-base") == (str(d), True)
    assert resolve_upstream("whisper-tiny.en") == (KNOWN_UPSTREAMS["whisper-tiny.en"], False)


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown upstream 'wav2vec3'"):
        build_upstream("wav2vec3")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        build_upstream(str(tmp_path / "missing" / "dir"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        build_upstream(str(empty))
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' is not supported"):
        build_upstream(str(empty))
    (empty / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable model config"):
        build_upstream(str(empty))


def test_dispatch_on_model_type(tiny_ssl, tiny_whisper):
    from emoboost.upstreams.hf import HFUpstream
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    assert isinstance(build_upstream(str(tiny_whisper())), WhisperEncoderUpstream)
    for mt in ("wav2vec2", "hubert", "wavlm"):
        up = build_upstream(str(tiny_ssl(mt)))
        assert isinstance(up, HFUpstream) and up.model_type == mt and not up.training


class _Dummy(Upstream):
    name, num_layers, hidden_size, frame_rate = "dummy", 1, 2, 100.0

    def forward(self, wavs, lengths):
        return torch.zeros(1, len(wavs), 1, 2), torch.ones(len(wavs), dtype=torch.long)


def test_emoboost_local_dir_uses_load_local_upstream(tmp_path, monkeypatch):
    d = tmp_path / "my-ems"
    d.mkdir()
    (d / "emoboost_upstream.json").write_text("{}")
    (d / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))  # marker wins
    calls = []
    fake = types.ModuleType("emoboost.upstreams.local")
    fake.load_local_upstream = lambda path, device="cpu": calls.append((str(path), device)) or _Dummy()
    monkeypatch.setitem(sys.modules, "emoboost.upstreams.local", fake)
    up = build_upstream(str(d))
    assert isinstance(up, _Dummy) and calls == [(str(d), "cpu")]


def test_one_broken_upstream_module_does_not_break_the_others(tiny_ssl, monkeypatch):
    monkeypatch.setitem(sys.modules, "emoboost.upstreams.whisper", None)  # import now raises ImportError
    up = build_upstream(str(tiny_ssl("hubert")))
    assert up.num_layers == 3


def test_importing_the_package_is_light():
    code = "import sys, emoboost.upstreams; print('transformers' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.shared
def test_shared_whisper_by_name(shared_dir, monkeypatch):
    if not (shared_dir / "weights" / "whisper-tiny.en-encoder" / "model.safetensors").is_file():
        pytest.skip("whisper-tiny.en encoder weights not in shared/weights")
    monkeypatch.setenv("EMOBOOST_SHARED", str(shared_dir))
    up = build_upstream("whisper-tiny.en")
    assert up.name == "whisper-tiny.en"
    assert up.source == str(shared_dir / "weights" / "whisper-tiny.en-encoder")
    out = up.extract(torch.zeros(16000).numpy())
    assert out.shape == (5, 50, 384)
    same = build_upstream(str(shared_dir / "weights" / "whisper-tiny.en-encoder"))  # by path: same identity
    assert same.name == "whisper-tiny.en" and same.fingerprint() == up.fingerprint()
