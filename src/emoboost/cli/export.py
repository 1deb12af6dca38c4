"""``emoboost export MODEL --format onnx --out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from emoboost.inference.export import (
    DEFAULT_OPSET,
    SEGMENT_METHODS,
    _read_bundle,
    export_onnx,
    export_segment_model,
    load_head,
)


def add_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("bundle", help="model bundle directory (bundle.json with the upstream and a pooled linear head)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument("--upstream", default=None, help="override the bundle's upstream spec (same weights)")
    return parser


def main(args: argparse.Namespace) -> int:
    from emoboost.upstreams import build_upstream

    d = Path(args.bundle)
    bundle = _read_bundle(d)
    if "head" in bundle or (d / "head.safetensors").is_file():
        head, up = load_head(d)
        upstream = build_upstream(args.upstream or up["spec"])
        out = export_onnx(upstream, head, args.out, opset=args.opset, fingerprint=up["fingerprint"])
        print(f"wrote {out} (encoder.onnx up to hidden state {max(head['layers'])}, head.onnx, "
              f"{len(head['classes'])} classes, upstream {upstream.fingerprint()})")
        return 0
    if not (d / "method.json").is_file():
        raise ValueError(f"{d}: a cross-validation run (an ensemble of fold models) cannot be exported; "
                         f"train one final model with `emoboost train` and export that")
    from emoboost.methods import Method

    method = Method.load(d)
    if method.name not in SEGMENT_METHODS:
        raise ValueError(f"{d}: {method.name!r} models cannot be exported to ONNX (supported: pooled "
                         f"linear/logreg heads and {', '.join(SEGMENT_METHODS)})")
    up = bundle.get("upstream") or {}
    if not up.get("spec"):
        raise ValueError(f"{d / 'bundle.json'}: no upstream spec")
    upstream = build_upstream(args.upstream or up["spec"])
    out = export_segment_model(upstream, method, bundle, args.out, opset=args.opset)
    print(f"wrote {out} (encoder.onnx, head.onnx = {method.name} on {bundle['segment_length']:g} s segments, "
          f"{len(method.classes)} classes, upstream {upstream.fingerprint()})")
    return 0
