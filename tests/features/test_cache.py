"""FeatureCache: content-addressed acoustic feature entries, atomic and safe for concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest

from emoboost.audio import Segmenting
from emoboost.features.cache import FeatureCache, feature_key
from emoboost.features.store import to_float16

H = "ab" + "0" * 62


def test_round_trip_and_layout(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    key = feature_key("ssl", "enc-1234", Segmenting(3.0))
    assert key == "ssl__enc-1234__seg3-hop3-sr16000"
    assert cache.get(key, H) is None
    a = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    p = cache.put(key, H, a)
    assert p == tmp_path / "c" / key / "ab" / f"{H}.npy"
    np.testing.assert_array_equal(cache.get(key, H), a)
    assert cache.get(key, H).dtype == np.float32
    cache.put(key, H, a.astype(np.float16))  # overwrite keeps the stored dtype
    assert cache.get(key, H).dtype == np.float16
    assert [p.name for p in (tmp_path / "c").iterdir()] == [key]
    assert not [f for f in p.parent.iterdir() if f.suffix == ".tmp"]


def test_keys_differ_by_every_component():
    seg = Segmenting(3.0)
    keys = {feature_key("ssl", "a", seg), feature_key("ssl", "b", seg), feature_key("mfcc", "a", seg),
            feature_key("ssl", "a", Segmenting(2.0)), feature_key("ssl", "a", Segmenting(3.0, hop=1.5)),
            feature_key("ssl", "a", None)}
    assert len(keys) == 6
    assert "/" not in feature_key("ssl", "org/model-1", seg)


def test_invalid_key_or_hash(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match="invalid audio hash"):
        cache.get("k", "../../etc")
    with pytest.raises(ValueError, match="invalid feature key"):
        cache.put("a/b", H, np.zeros(1))


def test_failed_writer_leaves_no_entry(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    real_save = np.save

    def half_then_crash(f, arr, **kw):
        real_save(f, arr[: len(arr) // 2], **kw)  # partial bytes on disk...
        raise KeyboardInterrupt("killed")  # ...then the writer dies

    monkeypatch.setattr(np, "save", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        cache.put("k", H, np.ones(1000, dtype=np.float32))
    monkeypatch.undo()
    assert cache.get("k", H) is None
    assert list((tmp_path / "k" / "ab").iterdir()) == []  # temp file cleaned up too


def _die_mid_write(root: str) -> None:
    """Child process killed (os._exit, no cleanup) while its temp file is half written."""
    cache = FeatureCache(root)
    real_save = np.save

    def partial(f, arr, **kw):
        real_save(f, arr[:10], **kw)
        f.flush()
        os._exit(9)

    np.save = partial
    cache.put("k", H, np.ones(10_000, dtype=np.float32))


def test_killed_writer_process_leaves_no_entry(tmp_path):
    p = mp.get_context("fork").Process(target=_die_mid_write, args=(str(tmp_path),))
    p.start()
    p.join(30)
    assert p.exitcode == 9
    cache = FeatureCache(tmp_path)
    assert cache.get("k", H) is None and not cache.path("k", H).exists()
    assert len(list((tmp_path / "k" / "ab").glob("*.tmp"))) == 1  # debris, never mistaken for an entry
    cache.put("k", H, np.zeros(3))
    np.testing.assert_array_equal(cache.get("k", H), np.zeros(3))


def _hammer(root: str, value: float, n: int) -> None:
    cache = FeatureCache(root)
    for _ in range(n):
        cache.put("k", H, np.full((64, 1024), value, dtype=np.float32))  # 256 KB per write


def test_two_writers_and_a_reader_never_see_a_corrupt_file(tmp_path):
    ctx = mp.get_context("fork")
    writers = [ctx.Process(target=_hammer, args=(str(tmp_path), v, 40)) for v in (1.0, 2.0)]
    for w in writers:
        w.start()
    cache = FeatureCache(tmp_path)
    path = cache.path("k", H)
    seen = set()
    while any(w.is_alive() for w in writers):
        try:  # read the file itself: get() would hide a half-written file as a miss
            a = np.load(path)
        except FileNotFoundError:
            a = None
        if a is not None:
            assert a.shape == (64, 1024)
            vals = np.unique(a)
            assert len(vals) == 1, "a reader saw a mix of two writes"
            seen.add(float(vals[0]))
    for w in writers:
        w.join(60)
        assert w.exitcode == 0
    final = cache.get("k", H)
    assert final.shape == (64, 1024) and float(np.unique(final)[0]) in (1.0, 2.0)
    assert seen <= {1.0, 2.0} and seen
    assert list((tmp_path / "k" / "ab").glob("*.tmp")) == []


def test_float16_clips_instead_of_overflowing():
    a = to_float16(np.array([1.5, 1e6, -1e6], dtype=np.float32))
    assert a.dtype == np.float16 and np.isfinite(a).all() and a[1] == np.finfo(np.float16).max


def test_entries_are_validated_on_read(tmp_path):
    """A NaN-filled or empty entry is treated as missing (recomputed), never served."""
    c = FeatureCache(tmp_path)
    c.put("mfcc-k", "abcd1234", np.full((2, 3), np.nan, dtype=np.float32))
    assert c.get("mfcc-k", "abcd1234") is None
    c.put("mfcc-k", "abcd1234", np.ones((2, 3), np.float32))
    assert c.get("mfcc-k", "abcd1234").sum() == 6
    c.put("mfcc-k", "abcd1235", np.zeros((0,), dtype=np.float32))
    assert c.get("mfcc-k", "abcd1235") is None


def test_skipped_warning_names_a_few_files_not_all(caplog):
    import logging

    from emoboost.features.cache import warn_skipped

    with caplog.at_level(logging.WARNING):
        warn_skipped([(f"/c/{i}.wav", "digital silence") for i in range(1000)])
    (rec,) = caplog.records
    msg = rec.getMessage()
    assert msg.startswith("skipped 1000 unusable file(s): /c/0.wav: digital silence")
    assert "/c/4.wav" in msg and "/c/5.wav" not in msg and "995 more" in msg
