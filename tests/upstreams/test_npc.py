"""NPC network: the masked window is never seen (gradient test), shapes, VQ, batch independence
(its training loss: tests/pretrain/test_losses.py)."""

import pytest
import torch

from emoboost.upstreams.frontend import FeatureConfig
from emoboost.upstreams.npc import NPC, MaskedConv, NPCConfig

FEAT = FeatureConfig(n_mels=16, normalize="none")


def _grad_wrt_input(model: NPC, T: int, t: int, which: str) -> torch.Tensor:
    x = torch.randn(1, T, 16, requires_grad=True)
    lengths = torch.tensor([T])
    pred, z = model.predict(x, lengths)
    out = pred if which == "pred" else z
    out[0, t].sum().backward()
    return x.grad[0].abs().sum(-1)  # [T]


@pytest.mark.parametrize("cfg", [
    NPCConfig(hidden_size=24, num_blocks=4, kernel_size=15, mask_size=5, dropout=0.0),
    NPCConfig(hidden_size=24, num_blocks=2, kernel_size=9, mask_size=3, dropout=0.0, norm="none"),
    NPCConfig(hidden_size=24, num_blocks=3, kernel_size=11, mask_size=1, dropout=0.0, vq_codebook_sizes=(8, 8)),
])
def test_prediction_never_sees_the_masked_window(cfg):
    torch.manual_seed(0)
    model = NPC(cfg, FEAT).train()  # training mode: the property must hold while learning
    m = model.input_mask_half_width
    T = 60
    for t in (0, 7, 30, 59):
        for which in ("pred", "z"):
            g = _grad_wrt_input(model, T, t, which)
            lo, hi = max(0, t - m), min(T, t + m + 1)
            assert torch.all(g[lo:hi] == 0), (t, which, g[lo:hi])
            # ... but the frames right outside it are used
            outside = [i for i in (t - m - 1, t + m + 1) if 0 <= i < T]
            assert all(g[i] > 0 for i in outside), (t, which, [float(g[i]) for i in outside])
            # receptive field is finite: kernel_size // 2 + num_blocks
            rf = cfg.kernel_size // 2 + cfg.num_blocks
            far = [i for i in range(T) if abs(i - t) > rf]
            assert torch.all(g[far] == 0)


def test_masked_conv_fast_path_equals_masked_kernel():
    torch.manual_seed(1)
    conv = MaskedConv(5, 7, kernel_size=15, mask_size=9)
    x = torch.randn(2, 5, 40)
    torch.testing.assert_close(conv(x), conv.dense_forward(x), rtol=1e-5, atol=1e-6)


def test_batch_norm_variant_leaks_only_in_training():
    torch.manual_seed(0)
    model = NPC(NPCConfig(hidden_size=16, num_blocks=2, kernel_size=9, mask_size=3, dropout=0.0, norm="batch"),
                FEAT).eval()
    g = _grad_wrt_input(model, 40, 20, "pred")
    assert torch.all(g[19:22] == 0)


def test_hidden_states_shapes_and_batch_independence():
    torch.manual_seed(0)
    model = NPC(NPCConfig(hidden_size=32, num_blocks=3, kernel_size=11, mask_size=3), FEAT).eval()
    wavs = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 9000])
    states, flens = model.hidden_states(wavs, lengths)
    assert len(states) == model.num_hidden_states == 4
    assert flens.tolist() == [101, 57]
    assert all(s.shape == (2, 101, 32) for s in states)
    alone, _ = model.hidden_states(wavs[1:, :9000], torch.tensor([9000]))
    for a, b in zip(alone, states):
        torch.testing.assert_close(a[0], b[1, :57], rtol=1e-4, atol=1e-5)
        assert torch.all(b[1, 57:] == 0)


def test_config_validation():
    with pytest.raises(ValueError, match="odd"):
        NPCConfig(kernel_size=14)
    with pytest.raises(ValueError, match="smaller than kernel_size"):
        NPCConfig(kernel_size=11, mask_size=5, num_blocks=4)
