"""Pretraining objectives: they learn, they cover exactly the frames they should, EMS changes them."""

import numpy as np
import pytest
import torch

from emoboost.pretrain.losses import mockingjay_loss, npc_loss, pretrain_loss
from emoboost.pretrain.masking import MaskConfig, mask_batch
from emoboost.upstreams.frontend import FeatureConfig
from emoboost.upstreams.mockingjay import Mockingjay, MockingjayConfig
from emoboost.upstreams.npc import NPC, NPCConfig

MJ_FEAT = FeatureConfig(n_mels=16, normalize="utterance")
MJ_TINY = MockingjayConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0)
NPC_FEAT = FeatureConfig(n_mels=16, normalize="none")


def _mj_batch() -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(60, dtype=torch.float32)
    mel = torch.stack([torch.sin(t[:, None] * 0.2 + k + torch.arange(16) * 0.3) for k in range(4)])
    return mel, torch.tensor([60, 60, 45, 60])


def test_masked_reconstruction_loss_decreases_and_uses_intensity():
    torch.manual_seed(0)
    m = Mockingjay(MJ_TINY, MJ_FEAT)
    mel, lengths = _mj_batch()
    opt = torch.optim.Adam(m.parameters(), 2e-3)
    losses = []
    for step in range(40):
        loss = mockingjay_loss(m, mel, lengths, MaskConfig(), np.random.default_rng(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    m.eval()
    peaked = [np.where(np.arange(int(n)) < 15, 1.0, 0.0) for n in lengths]  # all intensity at the start
    ems = MaskConfig(strategy="ems", alpha=1.0)
    l_ems = mockingjay_loss(m, mel, lengths, ems, np.random.default_rng(0), peaked)
    l_rand = mockingjay_loss(m, mel, lengths, MaskConfig(), np.random.default_rng(0))
    assert torch.isfinite(l_ems) and not torch.isclose(l_ems, l_rand)
    with pytest.raises(ValueError, match="intensity"):
        mockingjay_loss(m, mel, lengths, ems, np.random.default_rng(0))


def test_mockingjay_loss_is_l1_on_the_selected_stacked_frames_only():
    torch.manual_seed(0)
    m = Mockingjay(MJ_TINY, MJ_FEAT).eval()
    mel, lengths = _mj_batch()
    loss = mockingjay_loss(m, mel, lengths, MaskConfig(), np.random.default_rng(5))
    x, xl = m.stack(m.frontend.normalize(mel, lengths), lengths)  # the same draws, by hand
    mb = mask_batch(x, xl, MaskConfig(), np.random.default_rng(5))
    with torch.no_grad():
        pred = m.head(m.encode(mb.inputs, xl)[-1])
    assert mb.selected.any() and not mb.selected.all()
    torch.testing.assert_close(loss.detach(), (pred[mb.selected] - x[mb.selected]).abs().mean())


def test_npc_loss_decreases_and_ems_weights_apply():
    torch.manual_seed(0)
    model = NPC(NPCConfig(hidden_size=32, num_blocks=2, kernel_size=9, mask_size=3), NPC_FEAT)
    mel = torch.randn(4, 50, 16).cumsum(1) * 0.1
    lengths = torch.tensor([50, 50, 40, 30])
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss = npc_loss(model, mel, lengths, MaskConfig(), rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    inten = [np.linspace(0, 1, int(n)) for n in lengths]
    model.eval()
    l_ems = npc_loss(model, mel, lengths, MaskConfig(strategy="ems", alpha=1.0), rng, inten)
    l_rand = npc_loss(model, mel, lengths, MaskConfig(), rng)
    assert torch.isfinite(l_ems) and not torch.isclose(l_ems, l_rand)
    with pytest.raises(ValueError, match="intensity"):
        npc_loss(model, mel, lengths, MaskConfig(strategy="ems"), rng)


def test_npc_loss_ignores_padded_frames():
    torch.manual_seed(0)
    model = NPC(NPCConfig(hidden_size=16, num_blocks=2, kernel_size=9, mask_size=3, dropout=0.0), NPC_FEAT).eval()
    mel = torch.randn(2, 40, 16)
    lengths = torch.tensor([40, 25])
    ref = npc_loss(model, mel, lengths, MaskConfig(), np.random.default_rng(0))
    noisy = mel.clone()
    noisy[1, 25:] = 100.0  # whatever lies past a clip's end must not count
    torch.testing.assert_close(npc_loss(model, noisy, lengths, MaskConfig(), np.random.default_rng(0)), ref)


def test_pretrain_loss_dispatches_on_the_model_type():
    torch.manual_seed(0)
    m = Mockingjay(MJ_TINY, MJ_FEAT).eval()
    mel, lengths = _mj_batch()
    torch.testing.assert_close(pretrain_loss(m, mel, lengths, MaskConfig(), np.random.default_rng(1)),
                               mockingjay_loss(m, mel, lengths, MaskConfig(), np.random.default_rng(1)))
    n = NPC(NPCConfig(hidden_size=16, num_blocks=2, kernel_size=9, mask_size=3), NPC_FEAT).eval()
    torch.testing.assert_close(pretrain_loss(n, mel, lengths, MaskConfig(), np.random.default_rng(1)),
                               npc_loss(n, mel, lengths, MaskConfig(), np.random.default_rng(1)))
    with pytest.raises(ValueError, match="no pretraining loss"):
        pretrain_loss(torch.nn.Linear(2, 2), mel, lengths, MaskConfig(), np.random.default_rng(1))
