"""``emoboost extract``: fill the SSL feature store for a corpus once; every later ``run`` reuses it.

Extraction is the expensive, embarrassingly parallel part of an experiment, so it is a command of
its own: it can run ahead of (and apart from) training, on N processes or machines at once
(``--shard i/N``: each takes a disjoint, deterministic share of the utterances), or as a Ray Data
pipeline over a cluster (``--engine ray``). All of them write the same content-addressed store, so
a later ``run`` with the same encoder, encoding and layers computes nothing.

The corpus is read exactly as ``run`` reads it (same scan, same labelled utterances; no class-size
checks, which belong to a run's folds), and the summary says what the store now costs: files,
entries computed and reused, skipped files and why, audio hours, bytes and bytes per audio hour,
wall time and how many times real time the encoding ran.

This module imports neither torch nor scikit-learn at import time (``emoboost --help`` stays fast).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emoboost.data.manifest import Manifest
    from emoboost.features.pipeline import LazyUpstream
    from emoboost.features.ray_engine import RayOptions
    from emoboost.features.store import FeatureStore

ENGINES = ("local", "ray")


# ------------------------------------------------------------------------------------------------
# the work
# ------------------------------------------------------------------------------------------------
@dataclass
class ExtractResult:
    """One share of a corpus in the store: what was there, what this call computed, what it cost."""

    files: int = 0  # utterances of the share (plus files the corpus scan refused, when listed here)
    hashes: dict[str, str] = field(default_factory=dict)  # utt id -> audio hash, entries complete now
    computed: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    audio_seconds: float = 0.0  # of every complete entry of the share
    computed_seconds: float = 0.0  # of the entries this call computed
    bytes: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0  # encoder time (summed over actors with --engine ray)
    engine: str = "local"
    shard: tuple[int, int] | None = None

    def summary(self) -> dict:
        hours = self.audio_seconds / 3600
        return {
            "files": self.files, "computed": self.computed, "reused": self.reused, "skipped": len(self.skipped),
            "audio_hours": round(hours, 4), "computed_audio_hours": round(self.computed_seconds / 3600, 4),
            "bytes": self.bytes, "bytes_per_audio_hour": int(self.bytes / hours) if hours else 0,
            "wall_s": round(self.wall_s, 2), "encode_s": round(self.encode_s, 2),
            # audio encoded per second of this command, start-up and store checks included
            "x_real_time": round(self.computed_seconds / self.wall_s, 1) if self.computed and self.wall_s else None,
            "engine": self.engine, "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "skipped_files": [{"path": p, "problem": m} for p, m in self.skipped],
        }


def fill_store(manifest: Manifest, store: FeatureStore, upstream: str, *, lazy: LazyUpstream | None = None,
               shard: tuple[int, int] | None = None, engine: str = "local", ray: RayOptions | None = None,
               min_duration: float = 0.1, reject_silence: bool = True, progress: bool = True) -> ExtractResult:
    """Make ``store`` hold every usable utterance of ``manifest`` (or of one shard); resumable, idempotent.

    Only entries missing from the store are encoded (the encoder is never built when none is);
    ``engine="ray"`` encodes them with :func:`emoboost.features.ray_engine.extract_with_ray`.
    ``reject_silence`` skips (near-)digital silence, as ``run`` does, so no entry is made that no run reads.
    """
    from emoboost.audio import SAMPLE_RATE  # load_audio's rate: store entries count samples at it
    from emoboost.data.manifest import Manifest
    from emoboost.features.store import extract_to_store, missing_entries, shard_of

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    t0 = time.perf_counter()
    if shard is not None:
        i, n = shard
        manifest = manifest.filter(lambda u: shard_of(u.id, n) == i)
    res = ExtractResult(files=len(manifest), engine=engine, shard=shard)
    samples: dict[str, int] = {}  # audio lengths only: statistics are not kept (memory must not grow with the corpus)
    done, todo, res.skipped = missing_entries(manifest, store, progress=progress, min_duration=min_duration,
                                              on_entry=lambda uid, st: samples.__setitem__(uid, st.num_samples))
    res.reused = len(done)
    new: dict[str, str] = {}
    if todo and engine == "local":
        from emoboost.features.pipeline import LazyUpstream

        rep = extract_to_store(Manifest(todo), store, lazy or LazyUpstream(upstream), progress=progress,
                               min_duration=min_duration, reject_silence=reject_silence)
        new, res.computed, res.encode_s = rep.hashes, rep.computed, rep.encode_s
        samples.update(rep.samples)
        res.reused += rep.reused  # written by another process since the check above
        res.skipped += rep.skipped
    elif todo:
        from emoboost.features.ray_engine import extract_with_ray

        out = extract_with_ray(todo, store, upstream, ray, min_duration=min_duration,
                               reject_silence=reject_silence, progress=progress)
        new, res.computed, res.encode_s = out.hashes, len(out.hashes), out.encode_s
        res.skipped += out.skipped
    complete = {**done, **new}
    res.hashes = {u.id: complete[u.id] for u in manifest if u.id in complete}
    for uid, h in res.hashes.items():
        n = samples.get(uid)
        if n is None:  # entries written by Ray workers are read here, once
            st = store.read_stats(h)
            n = st.num_samples if st is not None else 0
        seconds = n / SAMPLE_RATE
        res.audio_seconds += seconds
        if uid in new:
            res.computed_seconds += seconds
        res.bytes += store.entry_bytes(h)
    res.wall_s = time.perf_counter() - t0
    return res
