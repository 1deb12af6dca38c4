"""Mockingjay network: geometry, batch independence (its training loss: tests/pretrain/test_losses.py)."""

import numpy as np
import pytest
import torch

from emoboost.upstreams.frontend import FeatureConfig
from emoboost.upstreams.mockingjay import Mockingjay, MockingjayConfig

FEAT = FeatureConfig(n_mels=16, normalize="utterance")
TINY = MockingjayConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0)


def test_geometry_and_frame_times():
    m = Mockingjay(TINY, FEAT)
    assert m.frame_rate == pytest.approx(100 / 3)
    np.testing.assert_allclose(m.frame_times(3), [0.01, 0.04, 0.07])
    x, xl = m.stack(torch.arange(2 * 10 * 16, dtype=torch.float32).reshape(2, 10, 16), torch.tensor([10, 7]))
    assert x.shape == (2, 3, 48) and xl.tolist() == [3, 2]
    torch.testing.assert_close(x[0, 1, :16], torch.arange(48, 64, dtype=torch.float32))


def test_hidden_states_batch_independent():
    torch.manual_seed(0)
    m = Mockingjay(TINY, FEAT).eval()
    wavs = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 8000])
    states, lens = m.hidden_states(wavs, lengths)
    assert len(states) == 3 and lens.tolist() == [33, 17]
    alone, _ = m.hidden_states(wavs[1:, :8000], torch.tensor([8000]))
    for a, b in zip(alone, states):
        torch.testing.assert_close(a[0], b[1, :17], rtol=1e-4, atol=1e-4)
