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

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from emoboost.audio import SAMPLE_RATE, AudioError, content_hash, load_audio
from emoboost.features.cache import warn_skipped
from emoboost.features.encode import encode_clip
from emoboost.features.store import FeatureStore, Stats

if TYPE_CHECKING:
    from emoboost.data.manifest import Manifest, Utterance
    from emoboost.features.pipeline import LazyUpstream
    from emoboost.features.ray_engine import RayOptions
    from emoboost.upstreams.base import Upstream

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
    from emoboost.data.manifest import Manifest

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


def shard_of(utt_id: str, n: int) -> int:
    """Deterministic shard of an utterance (independent of manifest order): sha256(id) mod n."""
    return int(hashlib.sha256(utt_id.encode()).hexdigest()[:12], 16) % n


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (0-based i) -> (i, N)."""
    if not value:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError as e:
        raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {value!r}") from e
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {value}: need 0 <= i < N")
    return i, n


@dataclass
class ExtractReport:
    """What one extraction did: entries per utterance, what was skipped and what it cost."""

    hashes: dict[str, str] = field(default_factory=dict)  # utt id -> audio hash, for entries now complete
    samples: dict[str, int] = field(default_factory=dict)  # utt id -> samples of audio (always; a few bytes each)
    frames: dict[str, int] = field(default_factory=dict)  # utt id -> stored frames (always)
    # with keep_layers: utt id -> (mean, std) [k, D] float32 of those layers only, so memory is N × k × D
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    computed: int = 0
    reused: int = 0
    audio_seconds: float = 0.0
    bytes: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0

    def summary(self) -> dict:
        hours = self.audio_seconds / 3600
        return {"files": len(self.hashes), "computed": self.computed, "reused": self.reused,
                "skipped": len(self.skipped), "audio_hours": round(hours, 4), "bytes": self.bytes,
                "bytes_per_audio_hour": int(self.bytes / hours) if hours else 0,
                "wall_s": round(self.wall_s, 2), "encode_s": round(self.encode_s, 2),
                "x_real_time": round(self.audio_seconds / self.encode_s, 1) if self.encode_s else None}


def _hash_entries(manifest: Manifest, skipped: list[tuple[str, str]], min_duration: float,
                  progress: bool, desc: str) -> Iterator[tuple[Utterance, str]]:
    from tqdm.auto import tqdm

    for utt in tqdm(list(manifest), desc=desc, disable=not progress, unit="utt"):
        if utt.duration and utt.duration < min_duration:
            skipped.append((utt.path, f"too short: {utt.duration:.3f} s < minimum {min_duration:.3f} s"))
            continue
        try:
            h = content_hash(utt.path)
        except AudioError as e:
            skipped.append((e.path, e.problem))
            continue
        except OSError as e:
            skipped.append((utt.path, f"cannot read file ({e.strerror or e})"))
            continue
        yield utt, h


def missing_entries(manifest: Manifest, store: FeatureStore, progress: bool = False,
                    min_duration: float = 0.0, on_entry: Callable[[str, Stats], None] | None = None,
                    ) -> tuple[dict[str, str], list[Utterance], list[tuple[str, str]]]:
    """-> (complete entries {utt id: hash}, utterances still to encode, unreadable files).

    ``on_entry(utt id, stats)`` sees the statistics of each complete entry (read here anyway), so
    callers never open the same entry twice; it should keep only what it needs (sizes, a few layers),
    so that memory does not grow with the corpus by [L, D] per utterance.
    """
    done: dict[str, str] = {}
    todo: list[Utterance] = []
    skipped: list[tuple[str, str]] = []
    for utt, h in _hash_entries(manifest, skipped, min_duration, progress, "store check"):
        st = store.read_stats(h)
        if st is not None and store.frames_ok(h, st):
            done[utt.id] = h
            if on_entry is not None:
                on_entry(utt.id, st)
        else:
            todo.append(utt)
    return done, todo, skipped


def extract_to_store(
    manifest: Manifest,
    store: FeatureStore,
    upstream: Upstream | Callable[[], Upstream],
    progress: bool = True,
    min_duration: float = 0.0,
    shard: tuple[int, int] | None = None,
    reject_silence: bool = False,
    keep_layers: Sequence[int] | None = None,
) -> ExtractReport:
    """Fill ``store`` for every utterance of ``manifest`` (or of one shard); resumable and idempotent.

    ``upstream`` may be a zero-argument factory: the encoder is then built only when some entry is
    missing, so a fully cached corpus never loads weights. Unusable audio is listed in the report's
    ``skipped`` and never stops the run. The report keeps each entry's sizes and, with ``keep_layers``,
    the pooled mean/std of those layers only (``run`` hands them to its source, so the statistics
    are read once); memory grows by a few bytes per utterance plus N × k × D for the kept layers.
    """
    t0 = time.perf_counter()
    rep = ExtractReport()
    keep = [int(v) for v in keep_layers] if keep_layers is not None else None

    def note(uid: str, st: Stats) -> None:
        rep.samples[uid], rep.frames[uid] = st.num_samples, st.num_frames
        if keep:
            rep.kept[uid] = (st.mean[keep], st.std[keep])  # fancy indexing copies: the [L, D] arrays are freed

    if shard is not None:
        i, n = shard
        manifest = manifest.filter(lambda u: shard_of(u.id, n) == i)
    done, todo, rep.skipped = missing_entries(manifest, store, progress=False, min_duration=min_duration,
                                              on_entry=note)
    rep.reused = len(done)
    for uid, h in done.items():
        rep.hashes[uid] = h
    enc: Upstream | None = None
    if todo:
        from tqdm.auto import tqdm

        for utt in tqdm(todo, desc="extract", disable=not progress, unit="utt"):
            try:
                h = content_hash(utt.path)
                wav = load_audio(utt.path, min_duration=min_duration, reject_silence=reject_silence)
            except AudioError as e:
                rep.skipped.append((e.path, e.problem))
                continue
            except OSError as e:
                rep.skipped.append((utt.path, f"cannot read file ({e.strerror or e})"))
                continue
            if enc is None:  # built at the first clip that decodes: broken files alone never load weights
                enc = upstream() if callable(upstream) and not hasattr(upstream, "forward") else upstream  # type: ignore[assignment]
                enc.eval()  # type: ignore[union-attr]
                store.num_layers = enc.num_layers  # type: ignore[union-attr]
                store.write_info({"kind": "ssl", "upstream": enc.config_dict(), "layout": {  # type: ignore[union-attr]
                    "stats": "<hash>.stats.npz: mean/std [L, D] float32, num_samples, num_frames",
                    "frames": "<hash>.npy: [L_kept, T, D] float16"}})
            t1 = time.perf_counter()
            try:
                frames, seg_frames = encode_clip(enc, wav, store.spec)  # type: ignore[arg-type]
            except ValueError as e:
                rep.skipped.append((utt.path, f"encoder refused the clip ({e})"))
                continue
            rep.encode_s += time.perf_counter() - t1
            if not np.isfinite(frames).all():
                rep.skipped.append((utt.path, "encoder produced non-finite features"))
                continue
            st = store.write(h, frames, len(wav), enc.frame_rate, seg_frames)  # type: ignore[union-attr]
            del frames
            note(utt.id, st)
            rep.hashes[utt.id] = h
            rep.computed += 1
    for utt in manifest:
        if utt.id in rep.hashes:
            rep.audio_seconds += rep.samples.get(utt.id, 0) / SAMPLE_RATE
            rep.bytes += store.entry_bytes(rep.hashes[utt.id])
    rep.hashes = {u.id: rep.hashes[u.id] for u in manifest if u.id in rep.hashes}  # manifest order
    rep.kept = {u: rep.kept[u] for u in rep.hashes if u in rep.kept}
    rep.wall_s = time.perf_counter() - t0
    warn_skipped(rep.skipped)
    return rep
