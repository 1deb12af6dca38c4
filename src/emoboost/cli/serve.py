"""``emoboost serve MODEL``: the HTTP server and its page."""

from __future__ import annotations

import argparse

from emoboost.cli.predict import add_model_args, limit_heap_growth
from emoboost.inference.serve import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SECONDS,
    run,
)


def add_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``emoboost serve BUNDLE``."""
    parser.add_argument("bundle", help="run directory, final model or ONNX export directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all interfaces)")
    parser.add_argument("--port", type=int, default=8000, help="1-65535 (default %(default)s)")
    add_model_args(parser)
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help="longest audio accepted per upload, seconds (default %(default)g)")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                        help="largest upload accepted, MiB (default %(default)g)")
    parser.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT,
                        help="requests decoded or classified at once (default %(default)s; one prediction runs at a "
                             "time, the others decode); each holds up to --max-seconds of 16 kHz audio (~3.7 MiB "
                             "per minute)")
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                        help="requests waiting for a place (default %(default)s); beyond them the answer is 503 "
                             "with Retry-After at once")
    parser.add_argument("--profiles", metavar="DIR",
                        help="keep speaker profiles here (one file per speaker, saved after every change, loaded at "
                             "start); models trained with -p adapt=... only")
    parser.add_argument("--max-speakers", type=int, help="most speaker profiles held (default 1000)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(args: argparse.Namespace) -> int:
    """Serve until interrupted; bad settings end in one ``ValueError`` line (exit 2) before anything loads."""
    limit_heap_growth()  # decoded uploads and encoder temporaries go back to the OS when a request ends
    run(args.bundle, host=args.host, port=args.port, upstream=args.upstream, max_seconds=args.max_seconds,
        max_bytes=args.max_mb * 2**20, log_level=args.log_level, device=args.device,
        max_concurrent=args.max_concurrent, max_queue=args.max_queue, backend=args.backend,
        profiles=args.profiles, max_speakers=args.max_speakers)
    return 0
