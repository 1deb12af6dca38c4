"""FeatureCache (atomic, concurrent-safe) and extract_ssl (batched, resumable, skips bad files)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from emoboost.audio import Segmenting, content_hash, load_audio, segment
from emoboost.data.manifest import Manifest, Utterance
from emoboost.features.cache import FeatureCache, extract_ssl, feature_key, to_float16
from emoboost.upstreams.base import Upstream

H = "ab" + "0" * 62


def test_round_trip_and_layout(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    key = feature_key("ssl", "enc-1234", Segmenting(3.0))
    assert key == "ssl__enc-1234__seg3-hop3-sr16000"
    assert cache.get(key, H) is None and (key, H) not in cache
    a = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    p = cache.put(key, H, a)
    assert p == tmp_path / "c" / key / "ab" / f"{H}.npy"
    np.testing.assert_array_equal(cache.get(key, H), a)
    assert cache.get(key, H).dtype == np.float32 and (key, H) in cache
    cache.put(key, H, a.astype(np.float16))  # overwrite keeps the stored dtype
    assert cache.get(key, H).dtype == np.float16
    assert cache.keys() == [key] and cache.entries(key) == [H]
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


def test_get_or_compute_computes_once(tmp_path):
    cache = FeatureCache(tmp_path)
    calls = []

    def fn():
        calls.append(1)
        return np.arange(4.0)

    a = cache.get_or_compute("k", H, fn)
    b = cache.get_or_compute("k", H, fn)
    np.testing.assert_array_equal(a, b)
    assert len(calls) == 1


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
    assert cache.get("k", H) is None and cache.entries("k") == []
    assert len(list((tmp_path / "k" / "ab").glob("*.tmp"))) == 1  # debris, never mistaken for an entry
    np.testing.assert_array_equal(cache.get_or_compute("k", H, lambda: np.zeros(3)), np.zeros(3))


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


# ---- extract_ssl --------------------------------------------------------------------------------

class CountingUpstream(Upstream):
    """A deterministic 2-layer 'encoder' (frame energy + mean) that counts its calls and batch sizes."""

    name, num_layers, hidden_size, frame_rate = "counting", 2, 3, 100.0

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, wavs, lengths):
        self.batches.append(len(wavs))
        frames = wavs[:, : wavs.shape[1] // 160 * 160].reshape(len(wavs), -1, 160)
        feats = torch.stack([frames.mean(-1), frames.std(-1), frames.abs().max(-1).values], -1)
        return torch.stack([feats, 2 * feats]), lengths // 160


def _manifest(tmp_path: Path, tone, durations) -> Manifest:
    utts = []
    for i, d in enumerate(durations):
        p = tone(f"u{i}.wav", seconds=d, seed=i, freq=200 + 50 * i)
        utts.append(Utterance(id=f"u{i}", path=str(p), speaker="s", label="a", duration=d, corpus="t"))
    return Manifest(utts)


def test_extract_ssl_batches_caches_and_resumes(tmp_path, tone):
    man = _manifest(tmp_path, tone, [1.0, 2.5, 0.4, 1.9])
    seg = Segmenting(length=1.0)
    up = CountingUpstream()
    cache = FeatureCache(tmp_path / "cache")
    feats, skipped = extract_ssl(man, up, cache, seg, batch_size=4, progress=False)
    assert skipped == [] and list(feats) == ["u0", "u1", "u2", "u3"]
    assert [feats[u].shape[0] for u in feats] == [1, 3, 1, 2]
    assert all(a.shape[1:] == (2, 100, 3) and a.dtype == np.float16 for a in feats.values())
    assert sum(up.batches) == 7 and max(up.batches) <= 4  # segments of several utterances share batches
    # values = the upstream on each segment, utterance by utterance
    wav1 = load_audio(man[1].path)
    with torch.inference_mode():
        direct, _ = up(torch.from_numpy(segment(wav1, seg)), torch.full((3,), 16000))
    np.testing.assert_allclose(feats["u1"].astype(np.float32), direct.permute(1, 0, 2, 3).numpy(), rtol=1e-3,
                               atol=1e-3)
    # rerun: nothing recomputed
    up.batches.clear()
    again, _ = extract_ssl(man, up, cache, seg, batch_size=4, progress=False)
    assert up.batches == []
    for k in feats:
        np.testing.assert_array_equal(again[k], feats[k])
    # resume: only the missing utterance is computed
    key = feature_key("ssl", up.fingerprint(), seg)
    os.unlink(cache.path(key, content_hash(man[1].path)))
    extract_ssl(man, up, cache, seg, batch_size=4, progress=False)
    assert up.batches == [3]
    assert (cache.root / key / "info.json").is_file()


def test_extract_ssl_skips_bad_files_and_continues(tmp_path, tone):
    man = _manifest(tmp_path, tone, [1.0, 1.0])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio at all")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    extra = [Utterance(id="bad", path=str(bad), speaker="s", label="a", duration=1.0, corpus="t"),
             Utterance(id="gone", path=str(tmp_path / "gone.wav"), speaker="s", label="a", duration=1.0, corpus="t"),
             Utterance(id="empty", path=str(empty), speaker="s", label="a", duration=1.0, corpus="t")]
    man = Manifest([man[0], *extra, man[1]])
    feats, skipped = extract_ssl(man, CountingUpstream(), FeatureCache(tmp_path / "c"), Segmenting(1.0),
                                 progress=False)
    assert list(feats) == ["u0", "u1"]
    problems = dict(skipped)
    assert set(problems) == {str(bad), str(tmp_path / "gone.wav"), str(empty)}
    assert "unreadable" in problems[str(bad)] and "empty" in problems[str(empty)]


def test_extract_ssl_min_duration_applies_to_cached_entries_too(tmp_path, tone):
    man = _manifest(tmp_path, tone, [1.0, 0.3])
    cache = FeatureCache(tmp_path / "c")
    extract_ssl(man, CountingUpstream(), cache, Segmenting(1.0), progress=False)
    feats, skipped = extract_ssl(man, CountingUpstream(), cache, Segmenting(1.0), progress=False,
                                 min_duration=0.5)
    assert list(feats) == ["u0"] and "too short" in skipped[0][1]


@pytest.mark.shared
def test_extract_ssl_whisper_base_on_emodb(shared_dir, tmp_path):
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    d = shared_dir / "weights" / "whisper-base-encoder"
    if not d.is_dir():
        pytest.skip(f"no whisper-base encoder at {d}")
    wav_dir = shared_dir / "data" / "emodb" / "wav"
    files = ["03a01Fa.wav", "08b03Tc.wav"]  # 1.9 s -> 1 segment, 9.0 s -> 3 segments
    man = Manifest(Utterance(id=f[:-4], path=str(wav_dir / f), speaker=f[:2], label=f[5], duration=0.0,
                             corpus="emodb") for f in files)
    feats, skipped = extract_ssl(man, WhisperEncoderUpstream(d), FeatureCache(tmp_path), Segmenting(3.0),
                                 batch_size=4, progress=False)
    assert skipped == []
    assert feats["03a01Fa"].shape == (1, 7, 150, 512) and feats["08b03Tc"].shape == (3, 7, 150, 512)
    assert np.isfinite(feats["08b03Tc"].astype(np.float32)).all()


def test_entries_are_validated_on_read(tmp_path):
    """A NaN-filled or empty entry is treated as missing (recomputed), never served."""
    from emoboost.features.cache import FeatureCache

    c = FeatureCache(tmp_path)
    c.put("mfcc-k", "abcd1234", np.full((2, 3), np.nan, dtype=np.float32))
    assert c.get("mfcc-k", "abcd1234") is None
    assert c.get_or_compute("mfcc-k", "abcd1234", lambda: np.ones((2, 3), np.float32)).sum() == 6
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
