"""finetune_top: a trainable copy of the encoder's top k layers inside MS-EmoBoost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from builders import finetune_data
from emoboost.methods import Method
from emoboost.methods.finetune import top_layers_from_upstream
from emoboost.methods.msemoboost import MSEmoBoost


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return finetune_data(tmp_path_factory.mktemp("w"))


def test_the_copied_layers_reproduce_the_encoder(setup):
    d, up, frames, _ = setup
    top = top_layers_from_upstream(str(d), 1, 2)  # hidden state 1 -> 2 (the last: with the final layer norm)
    assert len(top.layers) == 1 and top.layer_norm is not None
    with torch.no_grad():
        out = top(torch.from_numpy(frames[0][1])[None])[0].numpy()
    np.testing.assert_allclose(out, frames[0][2], atol=2e-5)


def test_padded_frames_do_not_leak_into_real_frames(setup):
    d, _, frames, _ = setup
    top = top_layers_from_upstream(str(d), 1, 2)
    real = torch.from_numpy(frames[0][1][:20])[None]  # 20 real frames
    x = torch.cat([real, torch.zeros(1, 10, real.shape[2])], dim=1)  # + 10 padded ones
    y = x.clone()
    y[:, 20:] = 5.0  # different padding
    with torch.no_grad():
        alone = top(real)[0]
        a, b = top(x, torch.tensor([20.0]))[0, :20], top(y, torch.tensor([20.0]))[0, :20]
        unmasked = top(x)[0, :20]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, alone, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(unmasked, alone, atol=1e-3)  # without the mask the padding does leak


def test_finetune_top_trains_only_the_top_layers(setup, tmp_path):
    d, up, _, data = setup
    m = MSEmoBoost(["a", "b"], layer=-1, finetune_top=1, guidance="mfcc", lstm_hidden=4, branch_dim=8,
                   max_epochs=3, batch_size=4, lr=1e-2, finetune_lr_scale=1.0)
    assert m.ssl_layers(3) == [1]  # the store must hold hidden state 1, below the fine-tuned layer
    m.fit(data, seed=0)
    assert m.module_.top.first == 1 and m.module_.top.last == 2 and len(m.module_.top.layers) == 1
    trained = m.module_.top.layers[0].state_dict()
    original = {k[len("encoder.layers.1."):]: v for k, v in load_file(str(d / "model.safetensors")).items()
                if k.startswith("encoder.layers.1.")}
    assert set(trained) == set(original)
    assert any(not torch.allclose(trained[k], original[k]) for k in original)  # the top layer was trained
    for k, v in up.encoder.layers[1].state_dict().items():  # the upstream's own weights are untouched
        assert torch.equal(v, original[k])
    groups = m.param_groups()
    assert any(g.get("lr") == pytest.approx(1e-2) and g["params"][0] is next(m.module_.top.parameters())
               for g in groups)
    assert "fine-tuned" in m.describe()["finetune"]
    m.save(tmp_path / "m")
    loaded = Method.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(data), m.predict_proba(data), atol=1e-6)


def test_finetune_top_errors():
    with pytest.raises(ValueError, match="not layer=weighted"):
        MSEmoBoost(["a"], layer="weighted", finetune_top=1)
    with pytest.raises(ValueError, match="reaches below the embeddings"):
        MSEmoBoost(["a"], layer=1, finetune_top=2).ssl_layers(3)
    with pytest.raises(ValueError, match="finetune_top must be an integer >= 0"):
        MSEmoBoost(["a"], finetune_top=-1)


def test_whole_encoder_fine_tuned_from_the_embeddings(setup):
    """finetune_top = every layer (the GPU config): the store serves hidden state 0 and all layers train."""
    _, up, _, data = setup
    m = MSEmoBoost(["a", "b"], layer=-1, finetune_top=2, guidance="none", mask_padding=True, max_epochs=2,
                   batch_size=4)
    assert m.ssl_layers(3) == [0]
    m.fit(data, seed=0)
    top = m.module_.top
    assert (top.first, top.last, len(top.layers)) == (0, 2, 2) and top.layer_norm is not None
    assert m.predict_proba(data).shape == (len(data), 2)
