"""The one reader of pretrained torchvision state dicts: files, wrappers, safetensors and broken files."""

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from emoboost.methods.torch_weights import read_state_dict

URL = "https://example.invalid/net-00000000.pth"  # never fetched: every test reads a local file


def test_pth_safetensors_and_wrapped_checkpoints_read_the_same(tmp_path):
    state = {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3)}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.pth")
    for name in ("w.pth", "w.safetensors", "ckpt.pth"):
        got, info = read_state_dict(tmp_path / name, "Net", URL)
        assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
        assert info.sha256 == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert info.describe() == f"ImageNet Net weights from {tmp_path / name}, sha256 {info.sha256}"


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.pth: Net weights file does not exist"):
        read_state_dict(tmp_path / "missing.pth", "Net", URL)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth: not a readable torch state dict"):
        read_state_dict(tmp_path / "junk.pth", "Net", URL)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: expected a state dict, found list"):
        read_state_dict(tmp_path / "list.pth", "Net", URL)
