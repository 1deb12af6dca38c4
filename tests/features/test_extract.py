"""``emoboost extract``: a CSV corpus + tiny local wav2vec2 -> store summary, reuse by ``run``, disjoint shards; the report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from builders import tiny_wav2vec2, write_tone
from emoboost.audio import Segmenting, content_hash
from emoboost.cli import extract
from emoboost.data.manifest import Manifest, Utterance
from emoboost.experiment import run as runner
from emoboost.features.pipeline import open_store
from emoboost.features.report import ExtractReport
from emoboost.features.store import FeatureStore, StoreSpec
from emoboost.methods import get_method

N_GOOD = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """CSV corpus: 8 clips (2 speakers x 2 labels x 2), a NaN-filled and a silent clip that only decoding
    refuses, a file that is not audio (refused by the scan). -> (csv path, {id: seconds})."""
    root = tmp_path_factory.mktemp("corpus")
    rows, seconds = ["path,label,speaker,id"], {}
    for i in range(N_GOOD):
        spk, lab = f"s{i % 2}", ("ang" if i // 2 % 2 else "neu")
        sec = 0.4 + 0.15 * i
        write_tone(root / f"c{i}.wav", seconds=sec, freq=150.0 + 40 * i, seed=i)
        rows.append(f"c{i}.wav,{lab},{spk},c{i}")
        seconds[f"c{i}"] = sec
    sf.write(str(root / "nan.wav"), np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    rows.append("nan.wav,neu,s0,nan")
    sf.write(str(root / "silent.wav"), np.zeros(8000, dtype=np.float32), 16000)
    rows.append("silent.wav,ang,s0,silent")
    (root / "junk.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    rows.append("junk.wav,ang,s1,junk")
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")
    return root / "corpus.csv", seconds


@pytest.fixture(scope="module")
def upstream_dir(tmp_path_factory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("up") / "tiny-w2v2")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOBOOST_CACHE", str(tmp_path / "hash-cache"))  # weight-file hashes stay per test


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    extract.add_args(p)
    return p.parse_args(list(argv))


def run_extract(corpus, upstream_dir, cache: Path, report: Path, *extra: str) -> tuple[int, dict]:
    rc = extract.main(parse("--corpus", "csv", "--data-root", str(corpus[0]), "--upstream", str(upstream_dir),
                            "--cache-dir", str(cache), "--report", str(report), "--no-progress", *extra))
    return rc, json.loads(report.read_text())


def entries(store: FeatureStore) -> set[str]:
    """Audio hashes with statistics in the store (the completion mark of an entry)."""
    d = store.root / store.stats_key
    return {p.name.removesuffix(".stats.npz") for p in d.glob("*/*.stats.npz")} if d.is_dir() else set()


def key_bytes(store: FeatureStore) -> int:
    return sum(p.stat().st_size for key in filter(None, (store.stats_key, store.frames_key))
               for p in (store.root / key).glob("*/*") if p.is_file())


def test_extract_summary_then_reuse_by_extract_and_run(corpus, upstream_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    rc, s = run_extract(corpus, upstream_dir, cache, tmp_path / "r1.json", "--layers", "0,2")
    assert rc == 0
    out = capsys.readouterr().out
    assert (s["files"], s["computed"], s["reused"], s["skipped"]) == (N_GOOD + 3, N_GOOD, 0, 3)
    problems = {Path(f["path"]).name: f["problem"] for f in s["skipped_files"]}
    assert set(problems) == {"nan.wav", "silent.wav", "junk.wav"} and "NaN" in problems["nan.wav"]
    assert "silen" in problems["silent.wav"]  # as run skips it: no entry that no run reads
    assert "skipped " in out and "nan.wav" in out and "bytes per audio hour" in out
    hours = sum(corpus[1].values()) / 3600
    assert s["audio_hours"] == pytest.approx(hours, abs=1e-4)
    assert s["computed_audio_hours"] == pytest.approx(hours, abs=1e-4)
    spec = StoreSpec(frames=(0, 2))
    store, _ = open_store(str(upstream_dir), str(cache), spec)
    assert s["stats_key"] == store.stats_key and s["frames_key"] == store.frames_key
    assert s["bytes"] == key_bytes(store) > 0
    assert s["bytes_per_audio_hour"] == pytest.approx(s["bytes"] / hours, rel=1e-3)
    assert s["x_real_time"] > 0
    # frames of layers 0 and 2 only: [2, T, 32] float16, T the clip's own frames (200 frames/s, no padding)
    h = content_hash(corpus[0].parent / "c3.wav")
    fr = store.open_frames(h)
    assert fr.dtype == np.float16 and fr.shape[0] == 2 and fr.shape[2] == 32
    assert abs(fr.shape[1] - corpus[1]["c3"] * 200) <= 2

    rc, s2 = run_extract(corpus, upstream_dir, cache, tmp_path / "r2.json", "--layers", "0,2")
    assert rc == 0 and (s2["computed"], s2["reused"], s2["bytes"]) == (0, N_GOOD, s["bytes"])
    assert s2["x_real_time"] is None

    # run reuses the store: pooled statistics (shared key) and frames of the same layers, encoder never built
    base = dict(corpus="csv", data_root=str(corpus[0]), upstream=str(upstream_dir), cache_dir=str(cache),
                progress=False, min_class_count=1)
    for method, params, more in (("linear", {"layer": 2}, {}),
                                 ("ssl_cnn", {"layer": 2}, {"store_layers": [0, 2]})):
        cfg = runner.ExperimentConfig(method=method, method_params=params, **base, **more)
        manifest, _, _ = runner.load_manifest(cfg)
        manifest = manifest.filter(lambda u: u.id not in ("nan", "silent"))  # refused clips are always retried
        probe = get_method(method)(manifest.labels(), **params)
        view, skipped, info = runner.prepare_ssl(cfg, manifest, probe)
        assert info["extraction"]["computed"] == 0 and not info["encoder_built"], method
        assert len(view) == N_GOOD and not skipped


def test_pooled_store_keeps_statistics_only(corpus, upstream_dir, tmp_path):
    cache = tmp_path / "cache"
    rc, s = run_extract(corpus, upstream_dir, cache, tmp_path / "r.json", "--store", "pooled")
    assert rc == 0 and s["computed"] == N_GOOD and s["frames_key"] is None
    frames_dirs = [d for d in cache.iterdir() if d.name.startswith("sslframes")]
    assert frames_dirs == []
    store, _ = open_store(str(upstream_dir), str(cache), StoreSpec(frames=None))
    assert len(entries(store)) == N_GOOD
    st = store.read_stats(content_hash(corpus[0].parent / "c0.wav"))
    assert st.mean.shape == (3, 32) and st.mean.dtype == np.float32
    # a frames store over the same encoding shares the statistics key: only frames are new
    rc, s2 = run_extract(corpus, upstream_dir, cache, tmp_path / "r2.json")
    assert s2["stats_key"] == s["stats_key"] and s2["computed"] == N_GOOD and s2["bytes"] > s["bytes"]


def test_shards_cover_every_utterance_exactly_once(corpus, upstream_dir, tmp_path):
    cache = tmp_path / "cache"
    store, _ = open_store(str(upstream_dir), str(cache), StoreSpec())
    id_of = {content_hash(corpus[0].parent / f"{i}.wav"): i for i in corpus[1]}
    shares, files = [], 0
    for i in range(3):
        before = entries(store)
        rc, s = run_extract(corpus, upstream_dir, cache, tmp_path / f"s{i}.json", "--shard", f"{i}/3")
        assert rc == 0 and s["shard"] == f"{i}/3" and s["reused"] == 0
        new = entries(store) - before
        assert len(new) == s["computed"]  # the share's report counts exactly what it wrote
        shares.append({id_of[h] for h in new})
        files += s["files"]
    assert sum(len(x) for x in shares) == N_GOOD  # disjoint ...
    assert set().union(*shares) == set(corpus[1])  # ... and covering
    assert files == N_GOOD + 3  # each bad file is listed by exactly one share
    rc, s = run_extract(corpus, upstream_dir, cache, tmp_path / "all.json")
    assert rc == 0 and (s["computed"], s["reused"]) == (0, N_GOOD)
    # deterministic: the same shard again computes nothing and names the same share
    rc, s = run_extract(corpus, upstream_dir, cache, tmp_path / "again.json", "--shard", "1/3")
    assert (s["computed"], s["reused"]) == (0, len(shares[1]))


def test_segment_encoding_key_and_layout(corpus, upstream_dir, tmp_path):
    cache = tmp_path / "cache"
    rc, s = run_extract(corpus, upstream_dir, cache, tmp_path / "r.json", "--segment-encoding", "segment",
                        "--segment-length", "0.5", "--layers", "1")
    assert rc == 0 and s["computed"] == N_GOOD
    seg = StoreSpec(encoding="segment", frames=(1,), segmenting=Segmenting(0.5))
    store, _ = open_store(str(upstream_dir), str(cache), seg)
    assert s["stats_key"] == store.stats_key and "segenc" in store.stats_key
    h = content_hash(corpus[0].parent / "c7.wav")  # 1.45 s -> 3 segments of 0.5 s, each ~100 frames
    st = store.read_stats(h)
    assert st.segment_frames > 0 and st.num_frames == 3 * st.segment_frames
    assert store.open_frames(h).shape == (1, st.num_frames, 32)


@pytest.mark.parametrize("argv, message", [
    (("--shard", "3/3"), "0 <= i < N"),
    (("--shard", "one"), "i/N"),
    (("--store", "pooled", "--layers", "1"), "--store pooled"),
    (("--num-gpus", "1"), "--engine ray"),
    (("--layers", "1,x"), "comma-separated"),
])
def test_bad_options_are_one_line_errors(corpus, upstream_dir, tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        run_extract(corpus, upstream_dir, tmp_path / "c", tmp_path / "r.json", *argv)
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_nothing_usable_returns_1(tmp_path, upstream_dir, capsys):
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(2):
        sf.write(str(root / f"n{i}.wav"), np.full(4000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    (root / "c.csv").write_text("path,label,speaker\nn0.wav,a,s0\nn1.wav,b,s1\n")
    rc = extract.main(parse("--corpus", "csv", "--data-root", str(root / "c.csv"), "--upstream", str(upstream_dir),
                            "--cache-dir", str(tmp_path / "c"), "--no-progress"))
    assert rc == 1
    err = capsys.readouterr().err
    assert "no file could be encoded" in err and "n0.wav" in err and err.count("\n") == 1


# ---- the report both engines return -----------------------------------------------------------

def _stats(seconds: float, layers: int = 3, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, int]:
    frames = np.random.default_rng(seed).standard_normal((layers, int(seconds * 50), dim)).astype(np.float32)
    return frames, int(seconds * 16000)


def test_real_time_is_encoded_audio_over_encoding_wall_time(tmp_path):
    store = FeatureStore(tmp_path, "enc-1234", StoreSpec(frames=None))
    man = Manifest([Utterance(id=f"u{i}", path=f"u{i}.wav", speaker="s", label="a", corpus="t",
                               duration=1.0) for i in range(3)])
    rep = ExtractReport(files=3, keep_layers=[2])
    for i, (uid, sec) in enumerate([("u0", 2.0), ("u2", 4.0)]):
        frames, n = _stats(sec, seed=i)
        st = store.write(f"hash{uid}", frames, n, 50.0)
        rep.add(uid, f"hash{uid}", st, computed=uid == "u2")  # u0 was in the store already
    frames, n = _stats(6.0, seed=5)
    store.write("hashu1", frames, n, 50.0)
    rep.add("u1", "hashu1", None, computed=True)  # written by a Ray worker: sizes read at finish
    rep.encode_s = 2.5
    rep.finish(man, store, wall_s=7.0)
    assert list(rep.hashes) == ["u0", "u1", "u2"]  # manifest order
    assert (rep.computed, rep.reused) == (2, 1)
    assert rep.computed_seconds == pytest.approx(10.0) and rep.audio_seconds == pytest.approx(12.0)
    assert rep.samples["u1"] == 96000 and rep.frames["u1"] == 300
    assert rep.x_real_time == pytest.approx(10.0 / 2.5)  # reused audio and time outside encoding excluded
    assert list(rep.kept) == ["u0", "u2"] and rep.kept["u2"][0].shape == (1, 4)
    s = rep.summary()
    assert s["x_real_time"] == 4.0 and s["files"] == 3 and s["computed_audio_hours"] == round(10 / 3600, 4)
    assert s["bytes"] == sum(store.entry_bytes(h) for h in ("hashu0", "hashu1", "hashu2")) > 0


def test_nothing_encoded_has_no_speed():
    rep = ExtractReport(files=2, reused=2, encode_s=0.0)
    assert rep.x_real_time is None and rep.summary()["x_real_time"] is None
