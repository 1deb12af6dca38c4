"""``emoboost export MODEL --format onnx --out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from emoboost.inference.export import DEFAULT_OPSET, export_bundle


def add_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("bundle", help="model bundle directory (bundle.json with the upstream and a pooled linear head)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument("--upstream", default=None, help="override the bundle's upstream spec (same weights)")
    return parser


def main(args: argparse.Namespace) -> int:
    _, line = export_bundle(Path(args.bundle), args.out, opset=args.opset, upstream=args.upstream)
    print(line)
    return 0
