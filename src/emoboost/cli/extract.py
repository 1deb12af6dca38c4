"""``emoboost extract``: fill the SSL feature store for a corpus (resumable, sharded, or on Ray)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoboost.features.extract import ENGINES, fill_store

if TYPE_CHECKING:
    from emoboost.features.ray_engine import RayOptions
    from emoboost.features.store import StoreSpec



def add_args(p: argparse.ArgumentParser) -> None:
    """The ``extract`` command's arguments (the corpus ones mirror ``run``'s)."""
    p.add_argument("--corpus", default="emodb", help="emodb, ravdess, iemocap, folder, csv, ... (default emodb)")
    p.add_argument("--data-root", help="corpus folder (default: $EMOBOOST_DATA/<corpus>, then "
                                       "$EMOBOOST_SHARED/data/<corpus>, then download)")
    p.add_argument("--manifest", help="a prepared manifest (.jsonl/.csv) instead of --corpus/--data-root")
    p.add_argument("--corpus-option", action="append", metavar="KEY=VALUE",
                   help="corpus scan option (repeatable), e.g. speaker_regex='^(\\d+)_' for --corpus folder")
    p.add_argument("--classes", nargs="+", help="extract only utterances of these labels")
    p.add_argument("--upstream", default="whisper-base",
                   help="encoder: name (whisper-base, wav2vec2-base, ...), Hugging Face id or local dir")
    p.add_argument("--store", choices=["frames", "pooled"], default="frames",
                   help="frames: frames + pooled statistics (every method can use them); pooled: statistics "
                        "only (linear, logreg; a few KB per utterance). Default frames")
    p.add_argument("--layers", default=None,
                   help="frames of these layers only, e.g. 2,3,4 (default all; statistics always cover all layers)")
    p.add_argument("--segment-encoding", choices=["utterance", "segment"], default="utterance",
                   help="utterance: each clip on its own frames (no padding); segment: each fixed segment "
                        "encoded on its own, last zero-padded (MS-EmoBoost's paper)")
    p.add_argument("--segment-length", type=float, default=3.0, help="segment encoding: seconds per segment")
    p.add_argument("--segment-hop", type=float, default=None, help="segment encoding: hop in seconds (default: length)")
    p.add_argument("--encoder-window", type=float, default=30.0,
                   help="utterance encoding: longer clips are encoded in windows of this many seconds")
    p.add_argument("--min-duration", type=float, default=0.1, help="skip clips shorter than this (seconds)")
    p.add_argument("--cache-dir", help="feature store root (default $EMOBOOST_CACHE or ~/.cache/emoboost)")
    p.add_argument("--device", default="auto", help="local engine: encoder device, auto (cuda when visible), cpu, "
                                                    "cuda, cuda:N, mps (ray: see --num-gpus)")
    p.add_argument("--shard", metavar="i/N", help="take share i (0-based) of N disjoint, deterministic shares")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process; ray: a Ray Data pipeline (pip install 'emoboost[ray]')")
    p.add_argument("--ray-address", help="ray: a running cluster ('auto' or host:port); default: start a local one")
    p.add_argument("--actors", type=int, help="ray: encoder actors (default: as the cluster's CPUs/GPUs allow)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="ray: CPUs (torch threads) per encoder actor")
    p.add_argument("--num-gpus", type=float, default=0.0,
                   help="ray: GPUs per encoder actor (0: encode on CPUs; 0.5 packs two actors per GPU)")
    p.add_argument("--ray-connect-timeout", type=float, default=None, metavar="SECONDS",
                   help="ray: seconds the cluster at --ray-address has to answer (default 60)")
    p.add_argument("--report", metavar="PATH", help="also write the summary as JSON")
    p.add_argument("--no-progress", action="store_true")


def store_spec_of(args: argparse.Namespace) -> StoreSpec:
    """The StoreSpec ``run`` builds for the same options (so its keys, and entries, are shared)."""
    from emoboost.audio import Segmenting
    from emoboost.features.store import StoreSpec, parse_kept_layers

    if args.store == "pooled" and args.layers:
        raise ValueError("--layers picks the layers whose frames are kept; --store pooled keeps no frames")
    frames = parse_kept_layers(args.layers) if args.store == "frames" else None
    return StoreSpec(encoding=args.segment_encoding, frames=frames, window=args.encoder_window,
                     segmenting=Segmenting(args.segment_length, args.segment_hop))


def _config(args: argparse.Namespace) -> Any:
    from emoboost.experiment.run import ExperimentConfig, default_cache_dir
    from emoboost.utils import parse_value

    options: dict = {}
    for o in args.corpus_option or []:
        key, eq, value = o.partition("=")
        if not eq or not key:
            raise ValueError(f"--corpus-option {o!r} must look like key=value")
        options[key] = parse_value(value)
    # min_class_count=1: a class too small for some run's folds is that run's problem, not extraction's
    return ExperimentConfig(
        corpus=args.corpus, data_root=args.data_root, manifest=args.manifest, upstream=args.upstream,
        classes=args.classes, min_class_count=1, corpus_options=options, min_duration=args.min_duration,
        segment_length=args.segment_length, segment_hop=args.segment_hop, segment_encoding=args.segment_encoding,
        store=args.store, store_layers=args.layers, encoder_window=args.encoder_window,
        cache_dir=args.cache_dir or default_cache_dir(), progress=not args.no_progress, device=args.device)


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    if args.engine != "ray":
        if args.ray_address or args.actors is not None or args.num_gpus or args.num_cpus != 1.0 \
                or args.ray_connect_timeout is not None:
            raise ValueError("--ray-address, --actors, --num-cpus, --num-gpus and --ray-connect-timeout need --engine ray")
        return None
    from emoboost.features.ray_engine import CONNECT_TIMEOUT, RayOptions

    timeout = CONNECT_TIMEOUT if args.ray_connect_timeout is None else args.ray_connect_timeout
    if args.ray_address is None:  # the local instance gets this machine's cores: refuse before any work
        from emoboost.utils import usable_cores

        if args.num_cpus > usable_cores():
            raise ValueError(f"--num-cpus {args.num_cpus:g} per encoder actor, but this machine has {usable_cores()} "
                             f"usable CPU core(s) for the local Ray instance; lower --num-cpus")
    return RayOptions(address=args.ray_address, actors=args.actors, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                      connect_timeout=timeout)


def main(args: argparse.Namespace) -> int:
    """Fill the store, print the summary table (and ``--report`` JSON); 1 when no file could be used."""
    from emoboost.experiment.run import load_manifest
    from emoboost.features.extract import parse_shard
    from emoboost.features.pipeline import open_store

    shard = parse_shard(args.shard)
    ray = _ray_options(args)
    spec = store_spec_of(args)
    cfg = _config(args)
    manifest, scan_skipped, _ = load_manifest(cfg)
    store, lazy = open_store(cfg.upstream, cfg.cache_dir, spec, device=cfg.device)
    res = fill_store(manifest, store, cfg.upstream, lazy=lazy, shard=shard, engine=args.engine, ray=ray,
                     min_duration=cfg.min_duration, progress=cfg.progress)
    if scan_skipped and (shard is None or shard[0] == 0):  # listed by one share only, so shares add up
        res.skipped = list(scan_skipped) + res.skipped
        res.files += len(scan_skipped)
    summary = {"corpus": cfg.manifest or cfg.corpus, "upstream": cfg.upstream, "fingerprint": store.fingerprint,
               "store": spec.describe(), "cache_dir": str(store.root), "stats_key": store.stats_key,
               "frames_key": store.frames_key, **res.summary()}
    print(format_summary(summary))
    if args.report:
        from emoboost.utils import atomic_write_text

        atomic_write_text(Path(args.report), json.dumps(summary, indent=2) + "\n")
    if res.files and not res.hashes:
        first = f": first {res.skipped[0][0]}: {res.skipped[0][1]}" if res.skipped else ""
        print(f"error: no file could be encoded ({len(res.skipped)} skipped{first})", file=sys.stderr)
        return 1
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def format_summary(s: dict) -> str:
    """The summary as a two-column table, skipped files listed below it."""
    xrt = s.get("x_real_time")
    rows = [
        ("corpus", s.get("corpus")), ("upstream", s.get("upstream")), ("store", s.get("store")),
        ("engine", s["engine"] + (f", shard {s['shard']}" if s.get("shard") else "")),
        ("files", s["files"]), ("computed", s["computed"]), ("reused", s["reused"]), ("skipped", s["skipped"]),
        ("audio hours", f"{s['audio_hours']:.4f} ({s['computed_audio_hours']:.4f} computed now)"),
        ("bytes", f"{s['bytes']} ({_size(s['bytes'])})"),
        ("bytes per audio hour", f"{s['bytes_per_audio_hour']} ({_size(s['bytes_per_audio_hour'])})"),
        ("wall time", f"{s['wall_s']:.1f} s (encoding {s['encode_s']:.1f} s)"),
        ("x real time", "-" if xrt is None else f"{xrt:g} (audio encoded / wall seconds of the encoding)"),
    ]
    if s.get("cache_dir"):
        rows.append(("store root", s["cache_dir"]))
    width = max(len(k) for k, _ in rows)
    lines = ["| " + "what".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    for f in s.get("skipped_files", []):
        lines.append(f"skipped {f['path']}: {f['problem']}")
    return "\n".join(lines)
