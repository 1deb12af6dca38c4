"""Weight-file hashing and its cache, checkpoint file discovery, hub snapshots (offline)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from emoboost.upstreams import identity
from emoboost.upstreams.identity import HASH_CACHE_FILE, file_sha256, weight_files, weights_hash


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(identity, "_memo", {})


def _age(path: Path, seconds: float = 60.0) -> None:
    """Backdate a file's mtime and close the racy window, so its hash is remembered.

    The ctime cannot be backdated (``utime`` itself sets it to now), so the window is closed by
    setting it to 0 for the test: remembering fresh files is what the window prevents."""
    t = time.time() - seconds
    os.utime(path, (t, t))
    identity.RACY_SECONDS = 0.0


@pytest.fixture(autouse=True)
def racy_window():
    yield
    identity.RACY_SECONDS = 2.0


def test_file_hash_is_sha256_of_bytes_and_is_remembered(tmp_path, private_cache):
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(10_000))
    _age(f)
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    cache = json.loads((private_cache / HASH_CACHE_FILE).read_text())
    entry = cache[os.path.realpath(f)]
    assert entry["size"] == 10_000 and entry["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    # The remembered value is what is served while (size, mtime, inode) match ...
    entry["sha256"] = "f" * 64
    (private_cache / HASH_CACHE_FILE).write_text(json.dumps(cache))
    identity._memo.clear()
    assert file_sha256(f) == "f" * 64
    # ... and a rewrite (same size, new mtime) is hashed again.
    f.write_bytes(os.urandom(10_000))
    _age(f, 30.0)
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


def test_rewrite_in_place_with_the_old_mtime_is_hashed_again(tmp_path, private_cache):
    """Same size, same mtime, same inode (written in place, mtime put back): the ctime tells."""
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(4096))
    _age(f)
    before = os.stat(f)
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()  # remembered (memo and disk)
    time.sleep(0.05)  # past the file system's timestamp tick
    with open(f, "r+b") as w:  # in place: the inode stays
        w.write(os.urandom(4096))
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(f)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    new = hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(f) == new  # this process's memo
    identity._memo.clear()
    assert file_sha256(f) == new  # the on-disk cache


def test_fresh_files_are_not_remembered(tmp_path, private_cache):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == hashlib.sha256(b"abc").hexdigest()
    assert not (private_cache / HASH_CACHE_FILE).exists()  # within the racy window
    f.write_bytes(b"abd")  # same size, possibly the same coarse mtime: must not be served stale
    assert file_sha256(f) == hashlib.sha256(b"abd").hexdigest()


def test_unwritable_or_corrupt_cache_is_tolerated(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 100)
    _age(f)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("EMOBOOST_CACHE", str(blocker))  # mkdir/write fail even as root
    assert file_sha256(f) == hashlib.sha256(b"x" * 100).hexdigest()
    bad = tmp_path / "bad-cache"
    bad.mkdir()
    (bad / HASH_CACHE_FILE).write_text("{truncated")
    monkeypatch.setenv("EMOBOOST_CACHE", str(bad))
    identity._memo.clear()
    assert file_sha256(f) == hashlib.sha256(b"x" * 100).hexdigest()
    assert os.path.realpath(f) in json.loads((bad / HASH_CACHE_FILE).read_text())  # rewritten whole


def test_entries_of_vanished_files_are_dropped(tmp_path, private_cache):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    _age(a)
    _age(b)
    file_sha256(a)
    a.unlink()
    file_sha256(b)
    cache = json.loads((private_cache / HASH_CACHE_FILE).read_text())
    assert list(cache) == [os.path.realpath(b)]


def test_not_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        file_sha256(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        file_sha256(tmp_path / "missing.bin")


def test_weight_files_single_sharded_and_missing(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    with pytest.raises(FileNotFoundError, match="no model weights"):
        weight_files(d)
    (d / "pytorch_model.bin").write_bytes(b"bin")
    assert weight_files(d) == [d / "pytorch_model.bin"]
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        weight_files(d)
    for i in (1, 2):
        (d / f"model-0000{i}-of-00002.safetensors").write_bytes(bytes([i]) * 10)
    assert [p.name for p in weight_files(d)] == ["model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors"]
    h = weights_hash(d)
    (d / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 9 + b"\x03")
    assert weights_hash(d) != h
    (d / "model.safetensors").write_bytes(b"single")  # preferred, as transformers does
    assert weight_files(d) == [d / "model.safetensors"]
    (d / "model.safetensors").unlink()
    (d / "model.safetensors.index.json").write_text("{oops")
    with pytest.raises(ValueError, match="unreadable weight index"):
        weight_files(d)


def test_weights_hash_follows_bytes_not_location(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    (d / "model.safetensors").write_bytes(os.urandom(1000))
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(d, moved)
    assert weights_hash(d) == weights_hash(moved) and len(weights_hash(d)) == 16


def _fake_hub_cache(root: Path, repo_id: str, files_from: Path) -> Path:
    """A Hugging Face cache entry (refs/main -> snapshot) holding the files of a saved checkpoint."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(files_from, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return snap


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE with the hub cache in tmp_path; any network connection fails the test."""
    import socket

    from huggingface_hub import constants

    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    identity.hub_snapshot.cache_clear()
    yield hub
    identity.hub_snapshot.cache_clear()


def test_hub_id_loads_from_the_local_hub_cache_offline(tiny_whisper, offline_hub):
    """The hub path (snapshot -> local files -> encoder-only load), offline."""
    from emoboost.upstreams import build_upstream, fingerprint_spec

    snap = _fake_hub_cache(offline_hub, "someone/tiny-whisper", tiny_whisper())
    fp = fingerprint_spec("someone/tiny-whisper")
    up = build_upstream("someone/tiny-whisper", expect_fingerprint=fp, max_layer=1)
    assert up.name == "someone_tiny-whisper" and up.source == "someone/tiny-whisper"
    assert up.directory == snap and up.fingerprint() == fp and up.layers_out == 2
    assert up.extract(np.zeros(1600, dtype=np.float32)).shape == (2, 5, 32)
    with pytest.raises(OSError, match="'someone/not-cached': not in the local Hugging Face cache"):
        build_upstream("someone/not-cached")


def test_hub_snapshot_prefers_safetensors_and_falls_back_to_the_cache(tmp_path, monkeypatch):
    import huggingface_hub

    d = tmp_path / "snap"
    d.mkdir()
    (d / "config.json").write_text("{}")
    calls = []

    def fake(repo_id, allow_patterns=None, local_files_only=False):
        calls.append((allow_patterns, local_files_only))
        if allow_patterns and "pytorch_model*.bin" in allow_patterns:
            (d / "pytorch_model.bin").write_bytes(b"w")  # this repo only has .bin weights
        return str(d)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    identity.hub_snapshot.cache_clear()
    assert identity.hub_snapshot("a/b") == d
    assert [c[0][2] for c in calls] == ["*.safetensors", "pytorch_model*.bin"]  # after config files
    assert identity.hub_snapshot("a/b") == d and len(calls) == 2  # remembered in-process

    def unreachable(repo_id, allow_patterns=None, local_files_only=False):
        calls.append((allow_patterns, local_files_only))
        if not local_files_only:
            raise ConnectionError("no route to host")
        return str(d)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    identity.hub_snapshot.cache_clear()
    assert identity.hub_snapshot("a/b") == d and calls[-1] == (None, True)
    identity.hub_snapshot.cache_clear()
