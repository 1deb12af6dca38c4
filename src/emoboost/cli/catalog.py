"""``emoboost methods [NAME]`` and ``emoboost upstreams``: what can be run, without importing it."""

from __future__ import annotations

import argparse
import json


def cmd_methods(args: argparse.Namespace) -> int:
    from emoboost.methods.catalog import catalog, describe, format_method

    if args.name is None:
        infos = catalog()
        if args.json:
            print(json.dumps([i.to_dict() for i in infos], indent=2))
            return 0
        width = max(len(i.name) for i in infos)
        for i in infos:
            print(f"{i.name:<{width}}  {'+'.join(i.requires):<14} {i.summary}")
        print("\nemoboost methods NAME: its parameters (-p NAME=VALUE) with defaults")
        return 0
    info = describe(args.name)
    print(json.dumps(info.to_dict(), indent=2, default=repr) if args.json else format_method(info, long=args.long),
          end="" if not args.json else "\n")
    return 0


def cmd_upstreams(args: argparse.Namespace) -> int:
    from emoboost.upstreams import upstream_sources

    rows = upstream_sources()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        where = {"offline copy": f"offline copy {r['path']}", "hub cache": f"hub cache {r['path']}",
                 "download": f"downloaded from the hub ({r['hub_id']}) on first use"}[r["where"]]
        print(f"{r['name']:<{width}}  {r['size']:<16} {where}")
    print("\n--upstream also takes a Hugging Face id (owner/model) or a local folder: Hugging Face layout, "
          "or an emoboost pretrain checkpoint")
    return 0
