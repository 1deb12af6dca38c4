"""Feature-store extraction as a Ray Data pipeline, so a cluster fills one store.

Why this shape
--------------
Reading and resampling audio is cheap, parallel CPU work; encoding is expensive and wants a model
that is built once and kept busy (on a GPU when there is one). So the pipeline is

1. ``from_items`` of the utterances still missing from the store (``id``, ``path``);
2. ``map_batches`` of :func:`read_batch` as plain CPU tasks: content hash + :func:`~emoboost.audio.load_audio`
   (16 kHz mono float32). A bad file becomes a row with a ``problem`` and no audio: it never stops
   the pipeline;
3. ``map_batches`` of :class:`EncodeActor`, a callable class run as an actor pool: each actor builds
   the upstream once (checked against the driver's fingerprint, so every node encodes with the same
   weights), encodes each clip with :func:`~emoboost.features.encode.encode_windows` -- exactly what the
   single-process path does -- and writes the entry with :meth:`FeatureStore.write` (atomic, safe for
   concurrent writers);
4. the driver streams the per-row results (``id``, ``hash``, ``problem``) back into the
   :class:`~emoboost.features.report.ExtractReport` the local engine also fills.

Frames never travel back to the driver; only the audio travels once, from a reader to an encoder.
The store root must be a folder every worker can write (a shared file system on a cluster) and
emoboost must be installed on every node.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from emoboost.data.manifest import Utterance
    from emoboost.features.report import ExtractReport
    from emoboost.features.store import FeatureStore

log = logging.getLogger(__name__)

# Ray phones home with usage statistics unless told not to; extraction must never need the internet.
READ_CPUS = 0.5
CONNECT_TIMEOUT = 60.0
"""Seconds a cluster named by ``--ray-address`` has to answer. ``ray.init`` itself retries for ever on
an address where no Ray cluster listens (a wrong port, a stopped head), so the connection is tried
first in a child process that is stopped after this long."""
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_PROMPT_ENABLED": "0"}


@dataclass
class RayOptions:
    """Where and how wide the pipeline runs."""

    address: str | None = None  # None: start a local Ray instance for this call; "auto": the running cluster
    actors: int | None = None  # encoder actor pool size; None: as many as the cluster's resources allow
    num_cpus: float = 1.0  # CPUs per encoder actor (also its torch threads)
    num_gpus: float = 0.0  # GPUs per encoder actor (fractions pack several actors on one GPU)
    read_batch: int = 8  # utterances per reading task
    encode_batch: int = 4  # utterances per encoder call
    connect_timeout: float = CONNECT_TIMEOUT  # seconds a cluster at ``address`` has to answer

    def __post_init__(self) -> None:
        if not (math.isfinite(self.num_cpus) and self.num_cpus > 0):
            raise ValueError(f"--num-cpus must be positive, got {self.num_cpus:g}")
        if not (math.isfinite(self.num_gpus) and self.num_gpus >= 0):
            raise ValueError(f"--num-gpus must not be negative, got {self.num_gpus:g}")
        if not (math.isfinite(self.connect_timeout) and self.connect_timeout > 0):
            raise ValueError(f"--ray-connect-timeout must be a positive number of seconds, got {self.connect_timeout:g}")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"--actors must be at least 1, got {self.actors}")


def ray_env() -> None:
    """Environment for a Ray driver started here (set before Ray is imported, inherited by its workers)."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)


def import_ray() -> Any:
    """``ray`` with Ray Data, or one line saying how to install it."""
    ray_env()
    try:
        import ray
        import ray.data  # noqa: F401 - the pipeline needs Ray Data, not only Ray core
    except ImportError as e:
        raise RuntimeError(f"--engine ray needs Ray Data: pip install 'emoboost[ray]' ({e})") from e
    return ray


# ------------------------------------------------------------------------------------------------
# pipeline stages (run on Ray workers; module-level so they pickle by reference)
# ------------------------------------------------------------------------------------------------
def read_batch(batch: dict[str, np.ndarray], min_duration: float = 0.0,
               reject_silence: bool = False) -> dict[str, np.ndarray]:
    """{id, path} -> {id, path, hash, wav (float32 bytes), problem}; unusable files get a problem, no audio."""
    from emoboost.audio import AudioError, content_hash, load_audio, read_problem

    ids, paths, hashes, wavs, problems = [], [], [], [], []
    for uid, path in zip(batch["id"], batch["path"]):
        uid, path = str(uid), str(path)
        h, wav, problem = "", b"", ""
        try:
            h = content_hash(path)
            audio = load_audio(path, min_duration=min_duration, reject_silence=reject_silence)
            wav = audio.astype(np.float32, copy=False).tobytes()
        except AudioError as e:
            path, problem = str(e.path), e.problem
        except OSError as e:
            problem = read_problem(e)
        except (ValueError, RuntimeError) as e:  # a decoder bug must not take the whole pipeline down
            problem = f"unreadable audio ({type(e).__name__}: {e})"
        ids.append(uid)
        paths.append(path)
        hashes.append(h)
        wavs.append(wav)
        problems.append(problem)
    return {"id": np.array(ids, dtype=object), "path": np.array(paths, dtype=object),
            "hash": np.array(hashes, dtype=object), "wav": np.array(wavs, dtype=object),
            "problem": np.array(problems, dtype=object)}


class EncodeActor:
    """One encoder per actor: built once, then every batch's clips are encoded and written to the store."""

    def __init__(self, upstream_spec: str, store: FeatureStore, device: str = "cpu", threads: int = 1):
        import torch

        from emoboost.features.store import store_info
        from emoboost.upstreams import build_upstream

        torch.set_num_threads(max(1, int(threads)))
        self.store = store
        # expect_fingerprint: a node with other weights at the same path must not write under this key
        self.upstream = build_upstream(upstream_spec, device=device, expect_fingerprint=store.fingerprint).eval()
        store.num_layers = self.upstream.num_layers
        store.write_info(store_info(self.upstream))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from emoboost.features.encode import encode_windows
        from emoboost.features.store import NonFiniteFrames

        problems = []
        for h, wav_bytes, problem in zip(batch["hash"], batch["wav"], batch["problem"]):
            problem = str(problem or "")
            if not problem:
                wav = np.frombuffer(wav_bytes, dtype=np.float32).copy()  # writable, as torch wants
                try:  # window by window, as the local engine does
                    self.store.write_windows(str(h), encode_windows(self.upstream, wav, self.store.spec), len(wav),
                                             self.upstream.frame_rate)
                except NonFiniteFrames as e:
                    problem = str(e)
                except ValueError as e:
                    problem = f"encoder refused the clip ({e})"
                except OSError as e:
                    problem = f"cannot write store entry ({e.strerror or e})"
            problems.append(problem)
        return {"id": batch["id"], "path": batch["path"], "hash": batch["hash"],
                "problem": np.array(problems, dtype=object)}


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------
_PROBE = "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False); ray.shutdown()"


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """One line, instead of a wait without end, when no Ray cluster answers at ``address``.

    ``host:port`` (or ``ray://host:port``) that refuses a TCP connection is reported at once; anything
    else is tried with ``ray.init`` in a child process (Ray's own connection retries never give up),
    stopped after ``timeout`` seconds."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host, int(port)), timeout=min(timeout, 10.0)).close()
        except OSError as e:
            raise ConnectionError(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); start "
                                  f"one with `ray start --head`, or leave --ray-address out to start a local one") from e
    env = {**os.environ, **RAY_ENV}
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        raise ConnectionError(f"--ray-address {address}: nothing answered as a Ray cluster within {timeout:g} s (the "
                              f"head's port is 6379 unless `ray start --port` said otherwise; "
                              f"--ray-connect-timeout waits longer)") from None
    if r.returncode != 0:
        last = next((ln.strip() for ln in reversed(r.stderr.splitlines()) if ln.strip()), f"exit code {r.returncode}")
        raise ConnectionError(f"--ray-address {address}: cannot connect to a Ray cluster ({last})")


def pool_size(opts: RayOptions, resources: dict[str, float], todo: int,
              largest: dict[str, float] | None = None) -> int:
    """Encoder actors: as asked, else what the cluster holds (one CPU left for reading), never more than clips.

    What cannot be scheduled is refused in one line (Ray would wait for it for ever): an actor asking
    more CPUs or GPUs than the ``largest`` node has, or actors that leave no CPU for reading the audio."""
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    node = largest or resources
    if opts.num_cpus > node.get("CPU", cpus):
        raise ValueError(f"--num-cpus {opts.num_cpus:g} per encoder actor, but the largest Ray node has "
                         f"{node.get('CPU', cpus):g} CPU(s); lower --num-cpus")
    if opts.num_gpus > 0 and opts.num_gpus > node.get("GPU", gpus):
        raise ValueError(f"--num-gpus {opts.num_gpus:g} per actor, but the Ray cluster has "
                         f"{gpus:g} GPU(s)" + (f" ({node.get('GPU', 0.0):g} on its largest node)" if largest else ""))
    if opts.actors is not None:
        n = opts.actors
    elif opts.num_gpus > 0:
        n = int(gpus // opts.num_gpus)
    else:
        n = int((cpus - READ_CPUS) // opts.num_cpus)
    n = max(1, min(n, todo))
    if n * opts.num_cpus + READ_CPUS > cpus:
        raise ValueError(f"{n} encoder actor(s) × --num-cpus {opts.num_cpus:g} plus {READ_CPUS:g} CPU for reading "
                         f"need {n * opts.num_cpus + READ_CPUS:g} CPUs, but the Ray cluster has {cpus:g}; lower "
                         f"--actors or --num-cpus")
    if opts.num_gpus > 0 and n * opts.num_gpus > gpus:
        raise ValueError(f"{n} encoder actor(s) × --num-gpus {opts.num_gpus:g} need {n * opts.num_gpus:g} GPUs, but "
                         f"the Ray cluster has {gpus:g}; lower --actors or --num-gpus")
    return n


def largest_node(ray: Any) -> dict[str, float]:
    """The resources of the cluster's largest live node (CPU, then GPU): one actor must fit on one node."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return max(nodes, key=lambda r: (r.get("CPU", 0.0), r.get("GPU", 0.0)), default={})


def extract_with_ray(todo: Sequence[Utterance], store: FeatureStore, upstream_spec: str, rep: ExtractReport,
                     opts: RayOptions | None = None, min_duration: float = 0.0, reject_silence: bool = False,
                     progress: bool = True) -> ExtractReport:
    """Encode ``todo`` into ``store`` on Ray; entries written (sizes read at ``rep.finish``), skipped
    files (in ``todo``'s order) and the pipeline's wall time (``encode_s``) go to ``rep``.

    Uses the Ray instance already initialised in this process if there is one; otherwise connects to
    ``opts.address`` (or starts a local instance) and shuts it down afterwards.
    """
    opts = opts or RayOptions()
    if not todo:
        return rep
    ray = import_ray()
    own = not ray.is_initialized()
    if own:
        if opts.address is not None:
            check_address(opts.address, opts.connect_timeout)
        kw: dict[str, Any] = {"address": opts.address, "log_to_driver": False, "configure_logging": False}
        if opts.address is None:
            kw["include_dashboard"] = False
        ray.init(**kw)
    try:
        from ray.data import DataContext
        from tqdm.auto import tqdm

        from emoboost.features.store import FeatureStore

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # one tqdm bar below instead of one bar per operator
        ctx.enable_operator_progress_bars = False
        ctx.verbose_stats_logs = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        actors = pool_size(opts, ray.cluster_resources(), len(todo), largest_node(ray))
        device = "cuda" if opts.num_gpus > 0 else "cpu"
        # Workers do not share the driver's working directory: every path they see is absolute.
        rows = [{"id": u.id, "path": os.path.abspath(u.path)} for u in todo]
        path_of = {u.id: u.path for u in todo}  # skipped files are reported as the manifest names them
        store = FeatureStore(Path(store.root).absolute(), store.fingerprint, store.spec, store.num_layers)
        if Path(upstream_spec).expanduser().is_dir():  # a local encoder folder (its name, hence key, is kept)
            upstream_spec = str(Path(upstream_spec).expanduser().absolute())
        ds = ray.data.from_items(rows)
        # Reading is light: half a CPU per task, which also keeps Ray from fusing it into the encoder
        # actors (fused, an actor would sit idle while it reads and resamples).
        ds = ds.map_batches(read_batch, batch_size=opts.read_batch, batch_format="numpy",
                            fn_kwargs={"min_duration": float(min_duration), "reject_silence": bool(reject_silence)},
                            num_cpus=READ_CPUS)
        ds = ds.map_batches(EncodeActor, batch_size=opts.encode_batch, batch_format="numpy",
                            fn_constructor_kwargs={"upstream_spec": str(upstream_spec), "store": store,
                                                   "device": device, "threads": max(1, int(opts.num_cpus))},
                            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=opts.num_cpus,
                            **({"num_gpus": opts.num_gpus} if opts.num_gpus > 0 else {}))
        bar = tqdm(total=len(rows), desc=f"extract on ray ({actors} actor(s))", disable=not progress, unit="utt")
        skipped: list[tuple[str, str]] = []
        t0 = time.perf_counter()  # the encoding's wall time: actors run at once, so their times do not add up
        with bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for uid, h, problem in zip(batch["id"], batch["hash"], batch["problem"]):
                    if problem:
                        skipped.append((path_of[str(uid)], str(problem)))
                    else:
                        rep.add(str(uid), str(h), None, computed=True)  # sizes are read once, at rep.finish
                bar.update(len(batch["id"]))
        rep.encode_s += time.perf_counter() - t0
    finally:
        if own:
            ray.shutdown()
    rank = {u.path: i for i, u in enumerate(todo)}  # results arrive as actors finish: report in manifest order
    rep.skipped += sorted(skipped, key=lambda pm: rank.get(pm[0], len(rank)))
    return rep
