"""``emoboost data list | download | prepare``: the corpora, where each is read from, manifests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoboost.cli.run import apply_overrides


def cmd_data(args: argparse.Namespace) -> int:
    from emoboost.data.corpora import CORPORA, get_corpus, scan_corpus

    if args.data_cmd == "list":
        from emoboost.data.corpora import locate_corpus

        for name in sorted(CORPORA):
            info = get_corpus(name).INFO
            if name in ("folder", "csv"):  # your own data: always --data-root / --manifest
                where = "your own data: --data-root DIR"
            else:
                how, folder = locate_corpus(name)
                where = {"download": f"downloaded on first use from {info.url or 'its official URL'}",
                         "not here": f"no direct download: --data-root DIR (see {info.url})"}.get(how, f"{how}: {folder}")
            protocol = info.default_protocol + (f" ({info.default_folds} folds)" if info.default_folds else "")
            print(f"{name:10s} {len(info.classes):2d} classes  {protocol:34s} {where}")
        return 0
    if args.data_cmd == "download":
        from emoboost.data.download import MAX_EXTRACT_BYTES, MAX_RATIO, download_corpus
        from emoboost.utils import default_cache_dir

        dest = args.dest or str(Path(default_cache_dir()) / "corpora")
        max_bytes = int(args.max_size * 1e9) if args.max_size is not None else MAX_EXTRACT_BYTES
        root = download_corpus(args.corpus, dest, url=args.url, force=args.force, max_bytes=max_bytes,
                               max_ratio=args.max_ratio if args.max_ratio is not None else MAX_RATIO)
        print(root)
        return 0
    if args.data_cmd == "prepare":
        options: dict = {}
        for o in args.option or []:
            apply_overrides(options, [o])
        flags = {"speaker_regex": args.speaker_regex, "speaker_level": args.speaker_level}
        options.update({k: v for k, v in flags.items() if v is not None})
        manifest, skipped = scan_corpus(args.corpus, args.root, options)
        if len(manifest) == 0:
            first = f"; first skipped: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
            raise ValueError(f"{args.corpus}: no usable utterances under {args.root} "
                             f"({len(skipped)} file(s) skipped{first})")
        manifest.write(args.out)
        print(f"{manifest} -> {args.out}")
        for p, problem in skipped:
            print(f"skipped {p}: {problem}", file=sys.stderr)
        return 0
    return 2
