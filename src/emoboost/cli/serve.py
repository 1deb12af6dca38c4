"""``emoboost serve MODEL``: the HTTP server and its page."""

from __future__ import annotations

import argparse

from emoboost.cli.predict import add_model_args
from emoboost.inference.serve import DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, run


def add_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``emoboost serve BUNDLE``."""
    parser.add_argument("bundle", help="run directory, final model or ONNX export directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all interfaces)")
    parser.add_argument("--port", type=int, default=8000)
    add_model_args(parser)
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help="longest audio accepted per upload, seconds (default %(default)g)")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                        help="largest upload accepted, MiB (default %(default)g)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(args: argparse.Namespace) -> int:
    run(args.bundle, host=args.host, port=args.port, upstream=args.upstream, max_seconds=args.max_seconds,
        max_bytes=int(args.max_mb * 2**20), log_level=args.log_level, device=args.device, backend=args.backend)
    return 0
