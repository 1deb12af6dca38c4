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
    fake.load_local_upstream = (lambda path, device="cpu", max_layer=None:
                                calls.append((str(path), device, max_layer)) or _Dummy())
    monkeypatch.setitem(sys.modules, "emoboost.upstreams.local", fake)
    up = build_upstream(str(d), max_layer=2)
    assert isinstance(up, _Dummy) and calls == [(str(d), "cpu", 2)]


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


# ---- fingerprints without loading ----------------------------------------------------------------

def _own_checkpoint(tmp_path, model_type="npc") -> Path:
    from emoboost.pretrain.train import PretrainConfig, export_upstream
    from emoboost.upstreams.local import build_model

    mc = {"hidden_size": 16, "num_blocks": 2, "kernel_size": 9, "mask_size": 3, "vq_codebook_sizes": [4, 4]}
    cfg = PretrainConfig(model=model_type, model_config=mc, feature={"n_mels": 20})
    torch.manual_seed(0)
    return export_upstream(tmp_path / "own", build_model(model_type, mc, cfg.feature).eval(), cfg, {})


def test_fingerprint_spec_equals_the_built_upstreams(tiny_ssl, tiny_whisper, tmp_path):
    from emoboost.upstreams import fingerprint_spec

    w = str(tiny_whisper())
    assert fingerprint_spec(w) == build_upstream(w).fingerprint()
    assert fingerprint_spec(w, name="x") == build_upstream(w, name="x").fingerprint() != fingerprint_spec(w)
    h = str(tiny_ssl("hubert", preprocessor={"do_normalize": True}))
    assert fingerprint_spec(h) == build_upstream(h).fingerprint()
    assert fingerprint_spec(h, normalize=False) == build_upstream(h, normalize=False).fingerprint()
    assert fingerprint_spec(h, normalize=False) != fingerprint_spec(h)
    own = str(_own_checkpoint(tmp_path))
    assert fingerprint_spec(own) == build_upstream(own).fingerprint()
    with pytest.raises(TypeError, match="normalize"):
        fingerprint_spec(w, normalize=True)
    # a cut encoder computes the same hidden states, so it has the same fingerprint
    assert build_upstream(w, max_layer=1).fingerprint() == fingerprint_spec(w)


def test_fingerprint_spec_reads_no_weights_and_imports_no_torch(tiny_whisper, tmp_path):
    """In a fresh process: the same string as in this one, and neither torch nor transformers loaded."""
    from emoboost.upstreams import fingerprint_spec

    d = str(tiny_whisper())
    code = ("import sys; from emoboost.upstreams import fingerprint_spec; "
            f"print(fingerprint_spec({d!r}), 'torch' in sys.modules, 'transformers' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "EMOBOOST_CACHE": str(tmp_path / "other-cache")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [fingerprint_spec(d), "False", "False"]


def test_fingerprint_changes_with_the_weights_and_the_config(tiny_whisper, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from emoboost.upstreams import fingerprint_spec

    src = tiny_whisper("enc")
    fp = fingerprint_spec(str(src))
    changed = tmp_path / "changed" / "enc"
    shutil.copytree(src, changed)
    assert fingerprint_spec(str(changed)) == fp  # same bytes elsewhere: same identity
    sd = load_file(str(changed / "model.safetensors"))
    sd["encoder.layer_norm.bias"] = sd["encoder.layer_norm.bias"] + 1e-3
    save_file(sd, str(changed / "model.safetensors"), metadata={"format": "pt"})
    assert fingerprint_spec(str(changed)) != fp
    assert build_upstream(str(changed)).fingerprint() == fingerprint_spec(str(changed))
    cfg = json.loads((src / "config.json").read_text())
    cfg["transformers_version"] = "0.0.0"  # load-time noise: ignored
    (src / "config.json").write_text(json.dumps(cfg))
    assert fingerprint_spec(str(src)) == fp
    cfg["encoder_attention_heads"] = 4  # computes something else
    (src / "config.json").write_text(json.dumps(cfg))
    assert fingerprint_spec(str(src)) != fp


def test_expect_fingerprint_is_checked_before_loading(tiny_whisper, tmp_path, monkeypatch):
    from emoboost.upstreams import fingerprint_spec
    from emoboost.upstreams import whisper as whisper_mod

    trained = str(tiny_whisper("trained", seed=0))
    other = tiny_whisper("other", seed=1)
    want = fingerprint_spec(trained)

    def no_loading(*a, **k):
        raise AssertionError("weights were loaded before the fingerprint check")

    monkeypatch.setattr(whisper_mod, "load_encoder", no_loading)
    with pytest.raises(ValueError) as e:
        build_upstream(str(other), expect_fingerprint=want)
    msg = str(e.value)
    assert str(other) in msg and want in msg and fingerprint_spec(str(other)) in msg
    monkeypatch.undo()
    up = build_upstream(trained, expect_fingerprint=want, max_layer=1)
    assert up.fingerprint() == want and up.layers_out == 2 and up.num_layers == 3
    own = str(_own_checkpoint(tmp_path))
    with pytest.raises(ValueError, match="does not match the expected"):
        build_upstream(own, expect_fingerprint=want)


@pytest.mark.shared
def test_shared_whisper_fingerprint_without_loading(shared_dir, monkeypatch):
    from emoboost.upstreams import fingerprint_spec

    d = shared_dir / "weights" / "whisper-tiny.en-encoder"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"whisper-tiny.en encoder weights not found at {d}")
    monkeypatch.setenv("EMOBOOST_SHARED", str(shared_dir))
    fp = fingerprint_spec("whisper-tiny.en")
    assert fp.startswith("whisper-tiny.en-") and fp == fingerprint_spec(str(d))
    assert build_upstream("whisper-tiny.en", expect_fingerprint=fp).fingerprint() == fp
