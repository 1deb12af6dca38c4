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
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from emoboost.audio import AudioError, content_hash, load_audio, read_problem
from emoboost.features.cache import FeatureCache, remember_checks, warn_skipped
from emoboost.features.encode import encode_windows
from emoboost.features.report import ExtractReport
from emoboost.features.store import FeatureStore, NonFiniteFrames, store_info

if TYPE_CHECKING:
    from emoboost.data.manifest import Manifest, Utterance
    from emoboost.features.pipeline import LazyUpstream
    from emoboost.features.ray_engine import RayOptions
    from emoboost.upstreams.base import Upstream

ENGINES = ("local", "ray")
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# which entries are missing
# ------------------------------------------------------------------------------------------------
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


def _hash_entries(manifest: Manifest, skipped: list[tuple[str, str]], min_duration: float,
                  progress: bool, desc: str) -> Iterator[tuple[Utterance, str]]:
    from tqdm.auto import tqdm

    for utt in tqdm(list(manifest), desc=desc, disable=not progress, unit="utt"):
        if utt.duration and utt.duration < min_duration:
            skipped.append((utt.path, f"too short: {utt.duration:.3f} s < minimum {min_duration:.3f} s"))
            continue
        try:
            h = content_hash(utt.path)
        except (AudioError, OSError) as e:  # listed under the manifest's path: callers drop skipped files by it
            skipped.append((utt.path, read_problem(e)))
            continue
        yield utt, h


def missing_entries(manifest: Manifest, store: FeatureStore, rep: ExtractReport, progress: bool = False,
                    min_duration: float = 0.0, verify: bool = False) -> list[Utterance]:
    """The utterances whose entry is missing or damaged; complete entries go to ``rep`` (as reused,
    their statistics read once, here) and files that cannot even be hashed to ``rep.skipped``.

    Statistics are always checked whole (unreadable, truncated, wrong shape, non-finite) and frames by
    their header; ``verify`` also reads every stored frame (:meth:`FeatureStore.frames_finite`), which
    costs a read of the frames store: ``emoboost extract`` does it, runs rely on the check at read time."""
    return [utt for utt, _ in _missing(manifest, store, rep, progress, min_duration, verify)]


def _missing(manifest: Manifest, store: FeatureStore, rep: ExtractReport, progress: bool, min_duration: float,
             verify: bool) -> list[tuple[Utterance, str]]:
    """:func:`missing_entries` with each utterance's content hash (extraction keys the store by it)."""
    todo: list[tuple[Utterance, str]] = []
    for utt, h in _hash_entries(manifest, rep.skipped, min_duration, progress, "store check"):
        st = store.read_stats(h, utt.path)
        if st is not None and store.frames_ok(h, st):
            if verify and not store.frames_finite(h):
                store.invalidate(h, f"({utt.path}) holds non-finite frames")
                todo.append((utt, h))
                continue
            rep.add(utt.id, h, st, computed=False)
        else:
            store.invalidate(h)  # damaged (and reported): now simply missing, for every process
            todo.append((utt, h))
    return todo


# ------------------------------------------------------------------------------------------------
# filling a store
# ------------------------------------------------------------------------------------------------
def extract_to_store(
    manifest: Manifest,
    store: FeatureStore,
    upstream: Upstream | Callable[[], Upstream],
    progress: bool = True,
    min_duration: float = 0.0,
    shard: tuple[int, int] | None = None,
    reject_silence: bool = False,
    keep_layers: Sequence[int] | None = None,
    verify: bool = False,
) -> ExtractReport:
    """Fill ``store`` for every utterance of ``manifest`` (or of one shard) in this process; resumable, idempotent.

    ``upstream`` may be a zero-argument factory: the encoder is then built only when some entry is
    missing, so a fully cached corpus never loads weights. Unusable audio is listed in the report's
    ``skipped`` and never stops the run. The report keeps each entry's sizes and, with ``keep_layers``,
    the pooled mean/std of those layers only (``run`` hands them to its source, so the statistics
    are read once); memory grows by a few bytes per utterance plus N × k × D for the kept layers.
    """
    t0 = time.perf_counter()
    if shard is not None:
        i, n = shard
        manifest = manifest.filter(lambda u: shard_of(u.id, n) == i)
    rep = ExtractReport(files=len(manifest), shard=shard,
                        keep_layers=[int(v) for v in keep_layers] if keep_layers is not None else None)
    todo = _missing(manifest, store, rep, progress, min_duration, verify)
    enc: list[Upstream] = []  # built at the first clip that decodes: broken files alone never load weights

    def encoder() -> Upstream:
        if not enc:
            up = upstream() if callable(upstream) and not hasattr(upstream, "forward") else upstream
            up.eval()  # type: ignore[union-attr]
            store.num_layers = up.num_layers  # type: ignore[union-attr]
            store.write_info(store_info(up))  # type: ignore[arg-type]
            enc.append(up)  # type: ignore[arg-type]
        return enc[0]

    if todo:
        from tqdm.auto import tqdm

        t1 = time.perf_counter()
        checks = FeatureCache(store.root)
        with tqdm(total=len(todo), desc="extract", disable=not progress, unit="utt") as bar:
            while todo:  # entries another process holds come back in the next pass, once it is done
                held = [(u, h) for u, h in todo if not _extract_one(u, h, store, encoder, rep, checks,
                                                                    min_duration, reject_silence, bar)]
                if held and len(held) == len(todo):
                    time.sleep(CLAIM_POLL_S)
                todo = held
        rep.encode_s = time.perf_counter() - t1
    warn_skipped(rep.skipped)
    return rep.finish(manifest, store, time.perf_counter() - t0)


CLAIM_POLL_S = 0.2
"""How often extraction looks again at entries that another process is computing."""


def _extract_one(utt: Utterance, h: str, store: FeatureStore, encoder: Callable[[], Upstream], rep: ExtractReport,
                 checks: FeatureCache, min_duration: float, reject_silence: bool, bar) -> bool:
    """Encode one missing entry (content hash ``h``) into ``store``, or take it from the process that just
    wrote it; False when another live process holds its claim now (:meth:`FeatureStore.claim`): try again later."""
    with store.claim(h) as mine:
        if not mine:
            return False
        st = store.read_stats(h)
        if st is not None and store.frames_ok(h, st):  # written by another process while we waited
            rep.add(utt.id, h, st, computed=False)
            bar.update()
            return True
        bar.update()
        try:
            wav = load_audio(utt.path, min_duration=min_duration, reject_silence=reject_silence)
        except (AudioError, OSError) as e:
            rep.skipped.append((utt.path, read_problem(e)))
            return True
        up = encoder()
        try:  # window by window: a long clip never holds all its frames (or layers) in memory
            st = store.write_windows(h, encode_windows(up, wav, store.spec), len(wav), up.frame_rate)
        except NonFiniteFrames as e:
            rep.skipped.append((utt.path, str(e)))
            return True
        except ValueError as e:
            rep.skipped.append((utt.path, f"encoder refused the clip ({e})"))
            return True
        remember_checks(checks, h, wav)  # the audio warnings of a later run need no second decode
        rep.add(utt.id, h, st, computed=True)
        return True


def fill_store(manifest: Manifest, store: FeatureStore, upstream: str, *, lazy: LazyUpstream | None = None,
               shard: tuple[int, int] | None = None, engine: str = "local", ray: RayOptions | None = None,
               min_duration: float = 0.1, reject_silence: bool = True, progress: bool = True) -> ExtractReport:
    """Make ``store`` hold every usable utterance of ``manifest`` (or of one shard) on either engine.

    Only entries missing from the store, or damaged (every stored frame is read and checked), are encoded
    (the encoder is never built when none is):
    ``engine="local"`` in this process (:func:`extract_to_store`), ``engine="ray"`` with
    :func:`emoboost.features.ray_engine.extract_with_ray`; both report alike.
    ``reject_silence`` skips (near-)digital silence, as ``run`` does, so no entry is made that no run reads.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local":
        from emoboost.features.pipeline import LazyUpstream

        return extract_to_store(manifest, store, lazy or LazyUpstream(upstream), progress=progress,
                                min_duration=min_duration, shard=shard, reject_silence=reject_silence, verify=True)
    from emoboost.features.ray_engine import extract_with_ray

    t0 = time.perf_counter()
    if shard is not None:
        i, n = shard
        manifest = manifest.filter(lambda u: shard_of(u.id, n) == i)
    rep = ExtractReport(files=len(manifest), engine=engine, shard=shard)
    todo = missing_entries(manifest, store, rep, progress=progress, min_duration=min_duration, verify=True)
    extract_with_ray(todo, store, upstream, rep, ray, min_duration=min_duration, reject_silence=reject_silence,
                     progress=progress)
    return rep.finish(manifest, store, time.perf_counter() - t0)
