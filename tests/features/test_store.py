"""The SSL feature store: windowed encoding, pooled statistics, memory-mapped lazy reads, validation."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emoboost.audio import Segmenting, content_hash
from emoboost.data.manifest import Manifest, Utterance
from emoboost.features import extract as ex
from emoboost.features.encode import encode_clip
from emoboost.features.extract import extract_to_store
from emoboost.features.store import FeatureStore, Stats, StoreSpec
from emoboost.features.views import SSLView, StoreSource


class TinyUpstream(torch.nn.Module):
    """Deterministic frame encoder with context (a causal running mean), so windowing is visible."""

    name = "tiny"
    num_layers = 3
    hidden_size = 4
    frame_rate = 50.0
    sample_rate = 16000

    def forward(self, wavs, lengths):
        b, n = wavs.shape
        t = n // 320
        x = wavs[:, : t * 320].reshape(b, t, 320)
        f0 = torch.stack([x.mean(-1), x.abs().mean(-1), x.std(-1), x.max(-1).values], -1)
        f1 = torch.cumsum(f0, 1) / torch.arange(1, t + 1)[None, :, None]
        f2 = torch.tanh(f1 * 3 + f0)
        lens = torch.as_tensor(lengths) // 320
        return torch.stack([f0, f1, f2]), lens

    def config_dict(self):
        return {"name": "tiny"}


def write(path: Path, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(str(path), (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    return path


def manifest_of(tmp_path: Path, durations, speakers=None) -> Manifest:
    utts = []
    for i, d in enumerate(durations):
        p = write(tmp_path / f"u{i}.wav", d, i)
        utts.append(Utterance(id=f"u{i}", corpus="t", path=str(p), label="ab"[i % 2],
                              speaker=(speakers[i] if speakers else f"s{i % 3}"), duration=d))
    return Manifest(utts)


def test_windowed_encoding_equals_frames_of_its_windows():
    up = TinyUpstream()
    wav = np.random.default_rng(0).standard_normal(16000 * 5 + 1000).astype(np.float32)
    spec = StoreSpec(window=2.0)  # stands in for Whisper's 30 s limit
    frames, seg_frames = encode_clip(up, wav, spec)
    assert seg_frames == 0
    parts = [encode_clip(up, wav[s : s + 32000], StoreSpec(window=100.0))[0] for s in range(0, len(wav), 32000)]
    assert np.array_equal(frames, np.concatenate(parts, axis=1))
    # the running mean restarts in each window: a single 100 s window differs
    assert not np.allclose(encode_clip(up, wav, StoreSpec(window=100.0))[0][1], frames[1])


def test_segment_encoding_stores_segments_back_to_back():
    up = TinyUpstream()
    wav = np.random.default_rng(1).standard_normal(16000 * 7).astype(np.float32)
    frames, t = encode_clip(up, wav, StoreSpec(encoding="segment", segmenting=Segmenting(3.0)))
    assert t == 150 and frames.shape == (3, 450, 4)  # 3 segments, last zero-padded
    seg2 = np.zeros(48000, dtype=np.float32)
    seg2[:16000] = wav[96000:]
    alone = encode_clip(up, seg2, StoreSpec(window=100.0))[0]
    assert np.allclose(frames[:, 300:], alone, atol=1e-6)


def test_pooled_statistics_match_frames(tmp_path):
    m = manifest_of(tmp_path, [1.3, 2.0, 4.1])
    store = FeatureStore(tmp_path / "cache", "tiny-0", StoreSpec())
    rep = extract_to_store(m, store, TinyUpstream(), progress=False)
    assert rep.computed == 3 and not rep.skipped
    src = StoreSource(store, list(rep.hashes.values()))
    for i in range(3):
        f = src.raw_frames(i).astype(np.float64)  # float16 on disk
        s = src.stats(i)
        assert s.mean.dtype == np.float32 and s.mean.shape == (3, 4)
        assert np.allclose(s.mean, f.mean(axis=1), atol=2e-3)
        assert np.allclose(s.std, f.std(axis=1), atol=2e-3)
        assert s.num_frames == f.shape[1]
    # a rerun computes nothing and never needs the encoder
    rep2 = extract_to_store(m, store, lambda: pytest.fail("encoder built for a cached corpus"), progress=False)
    assert rep2.computed == 0 and rep2.reused == 3


def test_pooled_store_keeps_no_frames_and_layer_subset_keeps_only_those(tmp_path):
    m = manifest_of(tmp_path, [1.0, 2.0])
    pooled = FeatureStore(tmp_path / "c", "tiny-0", StoreSpec(frames=None))
    rep = extract_to_store(m, pooled, TinyUpstream(), progress=False)
    assert not list((tmp_path / "c").glob("sslframes*"))
    src = StoreSource(pooled, list(rep.hashes.values()))
    assert src.frame_layers == ()
    with pytest.raises(ValueError, match="not in the feature store"):
        src.frames(0, [1])
    sub = FeatureStore(tmp_path / "c", "tiny-0", StoreSpec(frames=(1, 2)))
    rep = extract_to_store(m, sub, TinyUpstream(), progress=False)
    src = StoreSource(sub, list(rep.hashes.values()))
    assert src.raw_frames(0).shape[0] == 2 and src.frame_layers == (1, 2)
    assert src.frames(0, [2]).shape[0] == 1
    assert rep.reused == 0 or rep.computed >= 0  # pooled statistics are shared between the two stores
    assert pooled.stats_key == sub.stats_key


def test_frames_are_memory_mapped_and_read_per_batch(tmp_path, monkeypatch):
    m = manifest_of(tmp_path, [3.5, 6.2, 1.1, 4.0])
    store = FeatureStore(tmp_path / "cache", "tiny-0", StoreSpec())
    rep = extract_to_store(m, store, TinyUpstream(), progress=False)
    src = StoreSource(store, list(rep.hashes.values()), segmenting=Segmenting(3.0))
    assert isinstance(src.raw_frames(1), np.memmap)
    opened = []
    real = StoreSource.raw_frames

    def counting(self, i):
        opened.append(i)
        return real(self, i)
    monkeypatch.setattr(StoreSource, "raw_frames", counting)
    view = SSLView(src)
    view.pooled([1])  # pooled features never touch frames
    assert opened == []
    win, seg_utt = view.segments([1])
    assert seg_utt.tolist() == [0, 0, 1, 1, 1, 2, 3, 3]
    batch = win[np.array([2, 3])]  # two windows of utterance 1: that utterance is mapped once
    assert batch.shape == (2, 1, 150, 4) and opened == [1]
    np.testing.assert_array_equal(batch[:, 0], np.asarray(real(src, 1)[1, :300], np.float32).reshape(2, 150, 4))
    # the last window of utterance 1 runs past its end: zero-padded, valid frames counted
    assert win.valid_frames()[4] == src.stats(1).num_frames - 300
    assert not win[4][0, win.valid_frames()[4]:].any()


def test_damaged_entries_are_recomputed(tmp_path):
    m = manifest_of(tmp_path, [1.0, 1.5])
    store = FeatureStore(tmp_path / "cache", "tiny-0", StoreSpec())
    extract_to_store(m, store, TinyUpstream(), progress=False)
    h = content_hash(m[0].path)
    p = store.stats_path(h)
    with np.load(p) as z:
        d = dict(z)
    d["mean"] = np.full_like(d["mean"], np.nan)
    np.savez(p, **d)
    store.frames_path(content_hash(m[1].path)).write_bytes(b"\x93NUMPY garbage")
    rep = extract_to_store(m, store, TinyUpstream(), progress=False)
    assert rep.computed == 2 and np.isfinite(store.read_stats(h).mean).all()


def test_truncated_statistics_are_recomputed(tmp_path, caplog):
    """A cut ``.stats.npz`` (a full disk, a copy stopped half-way) is not a zip file: it is recomputed,
    and a reader that meets it names the audio file and the entry (was: BadZipFile, an internal error)."""
    m = manifest_of(tmp_path, [1.0, 1.5])
    store = FeatureStore(tmp_path / "cache", "tiny-0", StoreSpec())
    rep = extract_to_store(m, store, TinyUpstream(), progress=False)
    h = content_hash(m[1].path)
    good = store.stats_path(h).read_bytes()
    store.stats_path(h).write_bytes(good[:300])
    assert store.read_stats(h) is None
    src = StoreSource(store, list(rep.hashes.values()), num_samples=[16000, 24000], num_frames=[50, 75],
                      paths=[u.path for u in m])
    with pytest.raises(ValueError, match=rf"^{m[1].path}: store entry {store.stats_path(h)} is missing or damaged; "
                                         r"rerun the command \(or emoboost extract\) to recompute it$"):
        src.pooled([1], [1])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emoboost.features.store"):
        rep = extract_to_store(m, store, TinyUpstream(), progress=False)
    assert rep.computed == 1 and rep.reused == 1 and store.stats_path(h).read_bytes() == good
    assert [r.getMessage() for r in caplog.records] == [
        f"store entry {store.stats_path(h)} ({m[1].path}) is unreadable (File is not a zip file); recomputing"]


def test_non_finite_frames_name_the_file_and_are_recomputed(tmp_path):
    """NaN inside a frames ``.npy`` (its header intact): a reader names the audio file and the entry and
    removes the entry's completion mark, so the next run recomputes it; ``emoboost extract`` (verify)
    finds it without a reader."""
    m = manifest_of(tmp_path, [1.0, 1.5, 0.7])
    store = FeatureStore(tmp_path / "cache", "tiny-0", StoreSpec())
    rep = extract_to_store(m, store, TinyUpstream(), progress=False)
    h = content_hash(m[1].path)
    fp = store.frames_path(h)
    good = np.load(fp)

    def poison() -> None:
        bad = good.copy()
        bad[1, 3, 2] = np.nan
        np.save(fp, bad)

    poison()
    assert extract_to_store(m, store, TinyUpstream(), progress=False).computed == 0  # the header check passes
    src = StoreSource(store, list(rep.hashes.values()), segmenting=Segmenting(0.5), paths=[u.path for u in m])
    win, _ = SSLView(src).segments([1])
    with pytest.raises(ValueError) as e:
        win[np.arange(len(win))]
    assert str(e.value) == (f"{m[1].path}: store entry {fp} holds non-finite frames; removed from the store: "
                            f"rerun the command (or emoboost extract) to recompute it")
    assert not store.stats_path(h).exists() and store.stats_path(content_hash(m[0].path)).exists()
    again = extract_to_store(m, store, TinyUpstream(), progress=False)
    assert again.computed == 1 and np.array_equal(np.load(fp), good)
    poison()
    healed = ex.fill_store(m, store, "unused", lazy=lambda: TinyUpstream(), progress=False, min_duration=0.0)
    assert healed.computed == 1 and healed.reused == 2 and np.array_equal(np.load(fp), good)


def test_a_warm_store_reads_each_entry_once(tmp_path, monkeypatch):
    """A cached run opens each entry's statistics once: the check keeps the sizes and the layers the
    method reads, and hands them to the source, which keeps nothing else per utterance."""
    m = manifest_of(tmp_path, [1.0, 1.5, 0.7])
    store = FeatureStore(tmp_path / "cache", "tiny-0", StoreSpec())
    first = extract_to_store(m, store, TinyUpstream(), progress=False)
    assert first.computed == 3 and first.kept == {}  # not kept unless asked: memory must not grow with the corpus
    assert first.samples == {"u0": 16000, "u1": 24000, "u2": 11200}
    reads: list[str] = []
    real = FeatureStore.read_stats

    def counting(self, h, audio=None):
        reads.append(h)
        return real(self, h, audio)

    monkeypatch.setattr(FeatureStore, "read_stats", counting)
    rep = extract_to_store(m, store, lambda: pytest.fail("the encoder was built"), progress=False, keep_layers=[1])
    assert rep.reused == 3 and len(reads) == 3
    assert rep.audio_seconds == pytest.approx(first.audio_seconds)
    ids = list(rep.hashes)
    full = [real(store, rep.hashes[u]) for u in ids]
    reads.clear()
    src = StoreSource(store, list(rep.hashes.values()), num_samples=[rep.samples[u] for u in ids],
                      num_frames=[rep.frames[u] for u in ids], kept_layers=[1], kept=[rep.kept[u] for u in ids])
    assert len(reads) == 1  # the first entry, for the encoder's sizes; nothing per utterance
    assert [src.num_samples(i) for i in range(3)] == [16000, 24000, 11200]
    assert [src.num_frames(i) for i in range(3)] == [st.num_frames for st in full]
    got = src.pooled([2, 0], [1], std=True)
    want = np.stack([np.concatenate([full[i].mean[[1]], full[i].std[[1]]], axis=-1) for i in (2, 0)])
    np.testing.assert_array_equal(got, want)
    assert len(reads) == 1
    # the source holds [N, k, D] for the kept layer, never [L, D] per utterance
    assert src._kept_mean.shape == (3, 1, full[0].mean.shape[1])
    assert not any(isinstance(v, (list, dict)) and v and isinstance(next(iter(v.values()) if isinstance(v, dict)
                   else iter(v)), Stats) for v in vars(src).values())
    # a layer that was not kept is read from the entries, and matches
    np.testing.assert_array_equal(src.pooled([0, 1], [0]), np.stack([full[i].mean[[0]] for i in (0, 1)]))
    assert len(reads) == 3
    with pytest.raises(ValueError, match="2 sizes given for 3 entries"):
        StoreSource(store, list(rep.hashes.values()), num_samples=[1, 2], num_frames=[1, 2])


def test_read_only_store_serves_reads(tmp_path):
    m = manifest_of(tmp_path, [1.0, 1.5])
    root = tmp_path / "cache"
    store = FeatureStore(root, "tiny-0", StoreSpec())
    extract_to_store(m, store, TinyUpstream(), progress=False)
    for d, _, files in os.walk(root):
        for f in files:
            os.chmod(Path(d) / f, stat.S_IREAD)
        os.chmod(d, stat.S_IREAD | stat.S_IEXEC)
    try:
        rep = extract_to_store(m, FeatureStore(root, "tiny-0", StoreSpec()), lambda: pytest.fail("built"),
                               progress=False)
        assert rep.reused == 2
    finally:
        for d, _, _ in os.walk(root):
            os.chmod(d, stat.S_IRWXU)


def test_bad_audio_is_listed_and_the_rest_extracted(tmp_path):
    m = manifest_of(tmp_path, [1.0, 1.2])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio")
    m = Manifest([*m, Utterance(id="bad", corpus="t", path=str(bad), label="a", speaker="s9", duration=1.0)])
    rep = extract_to_store(m, FeatureStore(tmp_path / "c", "tiny-0", StoreSpec()), TinyUpstream(), progress=False)
    assert list(rep.hashes) == ["u0", "u1"] and [p for p, _ in rep.skipped] == [str(bad)]


def test_shards_partition_the_corpus():
    ids = [f"utt{i}" for i in range(200)]
    shares = [[u for u in ids if ex.shard_of(u, 4) == k] for k in range(4)]
    assert sorted(sum(shares, [])) == sorted(ids) and all(len(s) > 20 for s in shares)
    assert ex.parse_shard("1/4") == (1, 4)
    with pytest.raises(ValueError):
        ex.parse_shard("4/4")


def test_store_keys_and_paths_are_pinned(tmp_path):
    """Keys and entry paths are the on-disk contract: existing stores must keep being found."""
    fp = "whisper-tiny.en-0df96c3a8248a161"
    utt = FeatureStore(tmp_path, fp, StoreSpec(frames=(3, 1)))
    assert utt.stats_key == f"sslstats__{fp}__full__uttenc-w30__v1"
    assert utt.frames_key == f"sslframes__{fp}__full__uttenc-w30__L1.3__v1"
    seg = FeatureStore(tmp_path, fp, StoreSpec(encoding="segment", segmenting=Segmenting(3.0)))
    assert seg.stats_key == f"sslstats__{fp}__full__segenc-seg3-hop3-sr16000__v1"
    assert seg.frames_key == f"sslframes__{fp}__full__segenc-seg3-hop3-sr16000__Lall__v1"
    pooled = FeatureStore(tmp_path, fp, StoreSpec(frames=None, window=20.0))
    assert pooled.stats_key == f"sslstats__{fp}__full__uttenc-w20__v1" and pooled.frames_key is None
    h = "ab12" + "0" * 60
    assert utt.stats_path(h) == tmp_path / utt.stats_key / "ab" / f"{h}.stats.npz"
    assert utt.frames_path(h) == tmp_path / utt.frames_key / "ab" / f"{h}.npy"


class WideUpstream(TinyUpstream):
    """TinyUpstream with 64 features per frame, so a window's frames are large enough to measure."""

    hidden_size = 64

    def forward(self, wavs, lengths):
        layers, lens = super().forward(wavs, lengths)
        return layers.repeat(1, 1, 1, 16), lens


def test_a_long_clip_is_written_window_by_window(tmp_path):
    """60 one-second windows: the entry equals the one written from all frames at once (frames byte for
    byte, statistics to float64 rounding), while the extraction holds about one window of frames: the
    peak traced allocation stays far below the clip's frames (it held them all, in float32, plus copies)."""
    import tracemalloc

    from emoboost.features.encode import encode_windows

    up = WideUpstream()
    wav = np.random.default_rng(5).standard_normal(16000 * 60).astype(np.float32)
    spec = StoreSpec(window=1.0)
    frames, _ = encode_clip(up, wav, spec)
    whole = FeatureStore(tmp_path / "whole", "tiny-0", spec)
    st_whole = whole.write_windows("ab12", [(frames, 0)], len(wav), 50.0)
    streamed = FeatureStore(tmp_path / "streamed", "tiny-0", spec)
    tracemalloc.start()
    st = streamed.write_windows("ab12", encode_windows(up, wav, spec), len(wav), 50.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert streamed.frames_path("ab12").read_bytes() == whole.frames_path("ab12").read_bytes()
    assert np.array_equal(np.load(streamed.frames_path("ab12")), to16(frames))
    np.testing.assert_allclose(st.mean, st_whole.mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(st.std, st_whole.std, rtol=1e-5, atol=1e-6)
    assert st.num_frames == st_whole.num_frames == 3000
    assert peak < frames.nbytes / 8, (peak, frames.nbytes)  # 2.3 MB of frames; a window is 38 KB
    # one window: the entry is the one np.save and numpy's mean/std give (unchanged from earlier versions)
    one = wav[:16000]
    f1, _ = encode_clip(up, one, spec)
    st1 = streamed.write_windows("cd34", encode_windows(up, one, spec), len(one), 50.0)
    assert streamed.frames_path("cd34").read_bytes() == _npy_bytes(to16(f1))
    assert np.array_equal(st1.mean, f1.mean(axis=1, dtype=np.float64).astype(np.float32))


def to16(a: np.ndarray) -> np.ndarray:
    from emoboost.features.store import to_float16

    return to_float16(a)


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def test_non_finite_windows_write_nothing(tmp_path):
    from emoboost.features.store import NonFiniteFrames

    store = FeatureStore(tmp_path / "c", "tiny-0", StoreSpec())
    good = np.ones((3, 10, 4), np.float32)
    bad = good.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(NonFiniteFrames, match="non-finite"):
        store.write_windows("ab12", [(good, 0), (bad, 0)], 16000, 50.0)
    assert not store.frames_path("ab12").exists() and not store.stats_path("ab12").exists()
    assert [p.name for p in store.frames_path("ab12").parent.iterdir()] == []  # no temporary file left


def test_extraction_memory_does_not_grow_with_a_clips_frames(tmp_path):
    """A 60 s clip of 60 encoder windows: extraction holds the decoded audio and about one window of
    frames, never the clip's frames (which a 1-hour clip turned into gigabytes)."""
    import tracemalloc

    class Wider(TinyUpstream):
        hidden_size = 256

        def forward(self, wavs, lengths):
            layers, lens = super().forward(wavs, lengths)
            return layers.repeat(1, 1, 1, 64), lens

    m = manifest_of(tmp_path, [60.0])
    store = FeatureStore(tmp_path / "c", "tiny-0", StoreSpec(window=1.0))
    wav_bytes, frame_bytes = 60 * 16000 * 4, 3 * 3000 * 256 * 4
    tracemalloc.start()
    rep = extract_to_store(m, store, Wider(), progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rep.computed == 1 and np.load(store.frames_path(rep.hashes["u0"])).shape == (3, 3000, 256)
    assert peak < 2 * wav_bytes + frame_bytes / 4, (peak, wav_bytes, frame_bytes)


class SlowUpstream(TinyUpstream):
    def forward(self, wavs, lengths):
        import time

        time.sleep(0.05)
        return super().forward(wavs, lengths)


def test_two_extractions_split_the_work_and_stale_claims_do_not_block(tmp_path):
    """Two extractions of one corpus at once (threads here: the lock is per open file, as between
    processes) compute each entry once between them; a claim file left by a dead process blocks nothing."""
    import threading

    m = manifest_of(tmp_path, [0.5] * 16)
    store = FeatureStore(tmp_path / "c", "tiny-0", StoreSpec())
    stale = store.stats_path(content_hash(m[3].path)).with_name(f".{content_hash(m[3].path)}.claim")
    stale.parent.mkdir(parents=True)
    stale.write_text("")  # a killed extraction's claim: the file stays, its lock died with the process
    reps: list = []
    go = threading.Barrier(2)

    def extract() -> None:
        go.wait()
        reps.append(extract_to_store(m, FeatureStore(tmp_path / "c", "tiny-0", StoreSpec()), SlowUpstream(),
                                     progress=False))

    threads = [threading.Thread(target=extract) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reps) == 2 and all(len(r.hashes) == 16 and not r.skipped for r in reps)
    assert sum(r.computed for r in reps) == 16, [r.computed for r in reps]  # was 32: both did everything
    assert all(r.computed >= 2 for r in reps)  # both worked
    assert not list((tmp_path / "c").rglob("*.claim"))
