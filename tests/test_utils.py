"""emoboost.utils: JSON files that name themselves when broken, writes that name the file on OSError."""

from __future__ import annotations

import errno
import os

import pytest

from emoboost import utils
from emoboost.utils import atomic_write_text, default_cache_dir, parse_value, read_json


def test_read_json_names_the_file(tmp_path):
    p = tmp_path / "bundle.json"
    p.write_text('{"classes": ["a", "b"]}')
    assert read_json(p) == {"classes": ["a", "b"]}
    p.write_text('{"classes": ["a", ')
    with pytest.raises(ValueError, match=r"bundle.json: broken run bundle: not valid JSON \(Expecting value at "
                                         r"line 1 column 19\)") as e:
        read_json(p, "run bundle")
    assert str(e.value).startswith(str(p))
    p.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match=r"bundle.json: not valid JSON \(not UTF-8 text"):
        read_json(p)
    with pytest.raises(FileNotFoundError, match=r"gone.json: model config does not exist"):
        read_json(tmp_path / "gone.json", "model config")


def test_atomic_write_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out" / "summary.json"
    atomic_write_text(target, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(utils.os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write_text(target, "new")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_default_cache_dir_and_parse_value(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOBOOST_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == str(tmp_path / "c")
    monkeypatch.delenv("EMOBOOST_CACHE")
    assert default_cache_dir().endswith(os.path.join(".cache", "emoboost"))
    assert parse_value("1e-4") == 1e-4 and parse_value("[1, 2]") == [1, 2] and parse_value("[0-9]+") == "[0-9]+"


def test_resolve_device_auto_and_one_line_errors(monkeypatch):
    import torch

    from emoboost.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == resolve_device("CPU") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:1")


SHORT_WRITE = """
import json, resource, shutil, signal, sys
import numpy as np
from emoboost.cli import error_line
from emoboost.utils import atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
if sys.argv[2] == "full":
    shutil.disk_usage = lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100)
try:
    atomic_write(sys.argv[1], lambda f: np.save(f, np.zeros(20000, np.float32)))
except OSError as e:
    print(json.dumps({"errno": e.errno, "line": error_line(e)}))
"""


@pytest.mark.parametrize("disk", ["full", "room"])
def test_a_short_write_is_one_line_naming_the_file(tmp_path, disk):
    """np.save's short write says only "80128 requested and 4096 written" (no errno, no file): it becomes the
    usual ENOSPC line naming the file when the disk is full, and an I/O error naming it otherwise."""
    import json
    import subprocess
    import sys

    target = tmp_path / "x.npy"
    r = subprocess.run([sys.executable, "-c", SHORT_WRITE, str(target), disk], capture_output=True, text=True,
                       timeout=120)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    if disk == "full":
        assert got == {"errno": errno.ENOSPC, "line": f"{target}: No space left on device (the disk is full: free "
                                                        f"space, or point --out / --cache-dir elsewhere)"}
    else:
        assert got["errno"] == errno.EIO and got["line"].startswith(f"{target}: short write (")
    assert list(tmp_path.iterdir()) == []
