"""The Ray Data extraction path writes exactly what the single-process path writes (local Ray, 2 CPUs)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from builders import tiny_wav2vec2, write_tone
from emoboost.audio import content_hash
from emoboost.cli import extract
from emoboost.features import ray_engine
from emoboost.features.pipeline import open_store
from emoboost.features.ray_engine import RayOptions, pool_size
from emoboost.features.store import StoreSpec

N_CLIPS = 6


def test_pool_size_follows_resources():
    assert pool_size(RayOptions(), {"CPU": 2.0}, 10) == 1  # one CPU left for reading
    assert pool_size(RayOptions(num_cpus=2), {"CPU": 9.0}, 10) == 4
    assert pool_size(RayOptions(num_gpus=0.5), {"CPU": 8.0, "GPU": 2.0}, 10) == 4
    assert pool_size(RayOptions(actors=3), {"CPU": 4.0}, 2) == 2  # never more actors than clips
    with pytest.raises(ValueError, match="GPU"):
        pool_size(RayOptions(num_gpus=1), {"CPU": 8.0}, 10)
    with pytest.raises(ValueError, match="--num-cpus"):
        RayOptions(num_cpus=0)


def test_what_ray_could_never_schedule_is_refused():
    """Ray waits for ever for resources a cluster does not have: an actor larger than any node, or actors
    that leave no CPU for the reading tasks (both hung: --num-cpus 64 on 2 cores, --actors 2 on 2 CPUs)."""
    with pytest.raises(ValueError, match=r"^--num-cpus 64 per encoder actor, but the largest Ray node has 2 CPU\(s\)"):
        pool_size(RayOptions(num_cpus=64), {"CPU": 2.0}, 10, {"CPU": 2.0})
    with pytest.raises(ValueError, match="largest Ray node has 4 CPU"):  # 8 CPUs in all, 4 per node
        pool_size(RayOptions(num_cpus=6), {"CPU": 8.0}, 10, {"CPU": 4.0})
    with pytest.raises(ValueError, match=r"^2 encoder actor\(s\) × --num-cpus 1 plus 0.5 CPU for reading need 2.5 CPUs, "
                                         r"but the Ray cluster has 2"):
        pool_size(RayOptions(actors=2), {"CPU": 2.0}, 10)
    with pytest.raises(ValueError, match=r"need 4 GPUs, but the Ray cluster has 2"):
        pool_size(RayOptions(actors=4, num_gpus=1), {"CPU": 16.0, "GPU": 2.0}, 10)


def test_an_address_without_a_ray_cluster_is_one_line_not_a_wait(tmp_path):
    import socket
    import time

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(ConnectionError, match=rf"^--ray-address 127.0.0.1:{port}: no Ray cluster answers there"):
        ray_engine.check_address(f"127.0.0.1:{port}", timeout=5)
    with socket.socket() as other:  # a port that answers, but not as Ray (ray.init retries for ever there)
        other.bind(("127.0.0.1", 0))
        other.listen()
        t0 = time.monotonic()
        with pytest.raises(ConnectionError, match="nothing answered as a Ray cluster within 4 s"):
            ray_engine.check_address(f"127.0.0.1:{other.getsockname()[1]}", timeout=4)
        assert time.monotonic() - t0 < 30


def test_read_batch_turns_bad_files_into_rows(tmp_path):
    good = write_tone(tmp_path / "g.wav", seconds=0.3, sr=8000)  # resampled to 16 kHz
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    out = ray_engine.read_batch({"id": np.array(["g", "j", "m"], dtype=object),
                                 "path": np.array([str(good), str(tmp_path / "junk.wav"), str(tmp_path / "no.wav")],
                                                  dtype=object)})
    wav = np.frombuffer(out["wav"][0], dtype=np.float32)
    assert out["problem"][0] == "" and len(wav) == 4800 and out["hash"][0] == content_hash(good)
    assert out["wav"][1] == b"" and "junk.wav" in out["path"][1] and out["problem"][1]
    assert "cannot read file" in out["problem"][2]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A 2-CPU local Ray instance, no dashboard, no usage statistics; shut down after the module."""
    ray_engine.ray_env()
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'emoboost[ray]')")
    hash_cache = tmp_path_factory.mktemp("hash-cache")
    saved = {k: os.environ.get(k) for k in ("EMOBOOST_CACHE", *ray_engine.RAY_ENV)}
    os.environ["EMOBOOST_CACHE"] = str(hash_cache)  # workers inherit the driver's environment at init
    ray = ray_engine.import_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_ray_engine_equals_single_process(local_ray, tmp_path):
    root = tmp_path / "corpus"
    rows = ["path,label,speaker"]
    for i in range(N_CLIPS):
        write_tone(root / f"c{i}.wav", seconds=0.3 + 0.2 * i, freq=170.0 + 60 * i, seed=i)
        rows.append(f"c{i}.wav,{'ab'[i % 2]},s{i % 3}")
    sf.write(str(root / "nan.wav"), np.full(4000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    rows.append("nan.wav,a,s0")  # passes the scan, fails decoding: a skipped row, not a crash
    sf.write(str(root / "silent.wav"), np.zeros(4000, dtype=np.float32), 16000)
    rows.append("silent.wav,b,s1")  # refused as run refuses it
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")
    up = tiny_wav2vec2(tmp_path / "up")

    def run(cache: Path, *more: str) -> dict:
        p = argparse.ArgumentParser()
        extract.add_args(p)
        rep = tmp_path / f"{cache.name}.json"
        args = p.parse_args(["--corpus", "csv", "--data-root", str(root / "corpus.csv"), "--upstream", str(up),
                             "--cache-dir", str(cache), "--layers", "0,2", "--report", str(rep), "--no-progress",
                             *more])
        assert extract.main(args) == 0
        return json.loads(rep.read_text())

    local = run(tmp_path / "local")
    assert (local["computed"], local["skipped"]) == (N_CLIPS, 2)
    spec = StoreSpec(frames=(0, 2))
    a, _ = open_store(str(up), str(tmp_path / "local"), spec)
    b, _ = open_store(str(up), str(tmp_path / "ray"), spec)
    hashes = [content_hash(root / f"c{i}.wav") for i in range(N_CLIPS)]
    for h in hashes[:2]:  # already in the Ray store: only the other entries may be sent to the pipeline
        for src, dst in ((a.stats_path(h), b.stats_path(h)), (a.frames_path(h), b.frames_path(h))):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)

    remote = run(tmp_path / "ray", "--engine", "ray", "--actors", "1")
    assert remote["engine"] == "ray"
    assert (remote["computed"], remote["reused"], remote["skipped"]) == (N_CLIPS - 2, 2, 2)
    assert [Path(f["path"]).name for f in remote["skipped_files"]] == ["nan.wav", "silent.wav"]
    assert remote["skipped_files"] == local["skipped_files"]  # same files, same problems, same order
    assert "NaN" in remote["skipped_files"][0]["problem"]
    assert remote["bytes"] == local["bytes"] and remote["audio_hours"] == local["audio_hours"]
    # one report, one speed: audio this call encoded over the wall seconds of its encoding
    assert 0 < remote["computed_audio_hours"] < local["computed_audio_hours"] and remote["x_real_time"] > 0
    for h in hashes:
        sa, sb = a.read_stats(h), b.read_stats(h)
        assert sb is not None, h
        assert np.array_equal(sa.mean, sb.mean) and np.array_equal(sa.std, sb.std)
        assert (sa.num_samples, sa.num_frames, sa.frame_rate) == (sb.num_samples, sb.num_frames, sb.frame_rate)
        fa, fb = np.asarray(a.open_frames(h)), np.asarray(b.open_frames(h))
        assert fa.shape == fb.shape and fa.shape[0] == 2 and np.array_equal(fa, fb)
    info = json.loads((b.root / b.stats_key / "info.json").read_text())
    assert info["kind"] == "ssl" and info["key"] == b.stats_key


def test_extract_refuses_a_local_actor_larger_than_the_machine_before_any_work(tmp_path, monkeypatch, capsys):
    from emoboost import utils
    from emoboost.cli import main

    monkeypatch.setattr(utils, "usable_cores", lambda: 2)
    rc = main(["extract", "--corpus", "emodb", "--data-root", str(tmp_path / "absent"), "--engine", "ray",
               "--num-cpus", "64", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("emoboost: error: --num-cpus 64 per encoder actor, but this machine has 2 usable CPU "
                               "core(s) for the local Ray instance; lower --num-cpus")
