"""Training on a GPU (``--device cuda``): checks that need one skip elsewhere (CI has no GPU).

On a machine with CUDA: ``python -m pytest -q tests/methods/test_device.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import finetune_data, pitch_tone, pooled_ensemble, save_tiny_whisper, synthetic, write_wav
from emoboost.methods import Method, get_method


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return pooled_ensemble(tmp_path_factory.mktemp("predict"))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch here)")


@needs_cuda
def test_linear_trains_on_the_gpu_and_loads_on_the_cpu(tmp_path):
    data = synthetic()
    train, valid, test = data.subset(range(0, 40)), data.subset(range(40, 50)), data.subset(range(50, 60))
    gpu = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=60, lr=3e-3)
    gpu.device = "cuda"
    gpu.fit(train, valid, seed=0)
    assert {p.device.type for p in gpu.module_.parameters()} == {"cuda"}
    p = gpu.predict_proba(test)
    assert (p.argmax(1) == test.y).mean() >= 0.9
    cpu = get_method("linear")(["a", "b", "c"], layer=1, max_epochs=60, lr=3e-3).fit(train, valid, seed=0)
    assert (cpu.predict_proba(test).argmax(1) == p.argmax(1)).mean() >= 0.9  # same experiment, other rounding
    gpu.save(tmp_path / "m")
    loaded = Method.load(tmp_path / "m")
    assert {q.device.type for q in loaded.module_.parameters()} == {"cpu"}
    np.testing.assert_allclose(loaded.predict_proba(test), p, atol=1e-5)


@needs_cuda
def test_finetuned_msemoboost_on_the_gpu(tmp_path):
    from emoboost.methods.msemoboost import MSEmoBoost

    data = finetune_data(tmp_path)[3]
    m = MSEmoBoost(["a", "b"], layer=-1, finetune_top=1, guidance="mfcc", lstm_hidden=4, branch_dim=8,
                   mask_padding=True, max_epochs=2, batch_size=4)
    m.device = "cuda"
    m.fit(data, seed=0)
    assert next(m.module_.top.parameters()).device.type == "cuda"
    p = m.predict_proba(data)
    m.save(tmp_path / "m")
    np.testing.assert_allclose(Method.load(tmp_path / "m").predict_proba(data), p, atol=1e-4)


@needs_cuda
def test_whisper_upstream_on_the_gpu_matches_the_cpu(tmp_path):
    from emoboost.upstreams import build_upstream
    d = save_tiny_whisper(tmp_path / "tiny")
    wav = (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32)
    np.testing.assert_allclose(build_upstream(str(d), device="cuda").extract(wav),
                               build_upstream(str(d)).extract(wav), rtol=1e-3, atol=1e-3)



@needs_cuda
def test_predictor_on_the_gpu_matches_the_cpu(models, tmp_path, monkeypatch):  # noqa: F811
    from emoboost.inference.engine import Engine

    monkeypatch.setenv("EMOBOOST_CACHE", str(models[0] / "cache"))
    wav = write_wav(tmp_path / "a.wav", pitch_tone(1.0, 200.0))
    gpu = Engine.load(models[0], device="cuda").predict_file(wav).to_dict()
    cpu = Engine.load(models[0]).predict_file(wav).to_dict()
    assert gpu["label"] == cpu["label"]
    np.testing.assert_allclose([gpu["probabilities"][c] for c in cpu["probabilities"]],
                               list(cpu["probabilities"].values()), atol=1e-3)
