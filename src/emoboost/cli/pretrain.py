"""Argument parsing for ``emoboost pretrain`` and ``emoboost intensity`` (wired by emoboost.cli).

Usage in the top-level CLI::

    p = sub.add_parser("pretrain"); add_pretrain_args(p); p.set_defaults(func=run_pretrain)
    p = sub.add_parser("intensity"); add_intensity_args(p); p.set_defaults(func=run_intensity)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

RECIPES = Path(__file__).resolve().parents[3] / "recipes" / "pretrain"


def _parse_set(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"--set expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def add_pretrain_args(p: argparse.ArgumentParser) -> None:
    p.description = ("Self-supervised pretraining (Mockingjay / NPC) with random or EMS (emotion-intensity) "
                     "masking on unlabelled audio; the output folder loads as an upstream by path.")
    p.add_argument("--config", default=None,
                   help="YAML config (e.g. recipes/pretrain/mockingjay-small.yaml); default: built-in small config")
    p.add_argument("--model", choices=["mockingjay", "npc"], default=None, help="override the config's model")
    p.add_argument("--data", nargs="+", required=True, metavar="SRC",
                   help="audio folders, manifests (.jsonl/.csv) or files; labels are ignored")
    p.add_argument("--out", required=True, help="output folder (checkpoints, loss curve, model.safetensors)")
    p.add_argument("--masking", choices=["random", "ems"], default=None, help="masking strategy")
    p.add_argument("--intensity-model", default=None,
                   help="saved intensity model folder (needed for --masking ems; default $EMOBOOST_INTENSITY_MODEL)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. model_config.hidden_size=256 masking.alpha=0.5")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_pretrain_config(args: argparse.Namespace):
    from emoboost.pretrain.train import PretrainConfig

    cfg = PretrainConfig.from_yaml(args.config) if args.config else PretrainConfig()
    over = _parse_set(args.set)
    if args.model:
        over["model"] = args.model
    if args.masking:
        over["masking.strategy"] = args.masking
    if args.seed is not None:
        over["seed"] = args.seed
    if args.steps is not None:
        over["steps"] = args.steps
    if args.threads is not None:
        over["threads"] = args.threads
    im = args.intensity_model or os.environ.get("EMOBOOST_INTENSITY_MODEL")
    if im:
        over["intensity_model"] = str(im)
    return cfg.with_overrides(over) if over else cfg


def run_pretrain(args: argparse.Namespace) -> int:
    from emoboost.pretrain.train import pretrain

    cfg = build_pretrain_config(args)
    out = pretrain(cfg, args.data, args.out, resume=not args.no_resume, progress=not args.quiet)
    meta = json.loads((Path(out) / "emoboost_upstream.json").read_text())
    p = meta["pretrain"]
    print(f"pretrained {meta['model_type']} ({cfg.mask.strategy} masking) -> {out}\n"
          f"  final loss {p.get('final_loss')}, {p.get('train_seconds')} s training, "
          f"{p.get('n_files')} files / {p.get('hours')} h\n"
          f"  use it with: --upstream {out}")
    return 0


def add_intensity_args(p: argparse.ArgumentParser) -> None:
    p.description = ("Frame-level emotion intensity (relative-attribute ranking on eGeMAPS LLDs). "
                     "Print/plot the curve of AUDIO files, or train the model on RAVDESS with --train.")
    p.add_argument("audio", nargs="*", help="audio files to analyse")
    p.add_argument("--model", default=None,
                   help="saved intensity model folder (default $EMOBOOST_INTENSITY_MODEL)")
    p.add_argument("--plot", default=None, help="write a PNG of the curve(s) here")
    p.add_argument("--csv", action="store_true", help="print time,intensity rows instead of a summary")
    p.add_argument("--train", default=None, metavar="OUT_DIR",
                   help="train on RAVDESS (actor-disjoint split, prints held-out pairwise accuracy) and save here")
    p.add_argument("--ravdess", default=None, help="RAVDESS root (default <shared>/data/ravdess)")
    p.add_argument("--test-actors", default="19,20,21,22,23,24", help="held-out actors for --train")
    p.add_argument("--cache", default=None, help="folder to cache eGeMAPS LLDs")


def run_intensity(args: argparse.Namespace) -> int:
    from emoboost.pretrain.intensity import IntensityModel

    model_dir = args.model or os.environ.get("EMOBOOST_INTENSITY_MODEL")
    if args.train:
        from emoboost.pretrain.ranking import train_on_ravdess
        from emoboost.utils import shared_root

        root = Path(args.ravdess) if args.ravdess else shared_root() / "data" / "ravdess"
        test = [a.strip() for a in args.test_actors.split(",") if a.strip()]
        model, report = train_on_ravdess(root, test, cache_dir=args.cache, progress=True)
        model.save(args.train)
        w = report["within"]
        print(f"intensity model -> {args.train}\n  held-out actors {report['speakers']}: pairwise accuracy "
              f"{w['all']:.3f} (strong>normal {w.get('strong>normal', float('nan')):.3f}, "
              f"normal>neutral {w.get('normal>neutral', float('nan')):.3f}, "
              f"strong>neutral {w.get('strong>neutral', float('nan')):.3f})")
        model_dir = model_dir or args.train
        if not args.audio:
            return 0
    if not args.audio:
        print("nothing to do: give AUDIO files (and --model) or --train OUT_DIR", file=sys.stderr)
        return 2
    if not model_dir:
        print("no intensity model: pass --model DIR or set EMOBOOST_INTENSITY_MODEL "
              "(train one with `emoboost intensity --train DIR`)", file=sys.stderr)
        return 2
    model = IntensityModel.load(model_dir)
    curves = []
    for a in args.audio:
        t, v = model.file_intensity(a)
        curves.append((a, t, v))
        if args.csv:
            print(f"# {a}")
            print("time,intensity")
            for ti, vi in zip(t, v):
                print(f"{ti:.3f},{vi:.4f}")
        else:
            peak = int(v.argmax())
            print(f"{a}: mean {v.mean():.3f}, max {v.max():.3f} at {t[peak]:.2f} s, min {v.min():.3f}, "
                  f"{len(v)} values every {model.config.hop * 1000:.0f} ms")
    if args.plot:
        plot_intensity(curves, args.plot)
        print(f"plot -> {args.plot}")
    return 0


def plot_intensity(curves: list, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from emoboost.audio import load_audio

    fig, axes = plt.subplots(len(curves), 1, figsize=(8, 2.2 * len(curves)), squeeze=False)
    for ax, (name, t, v) in zip(axes[:, 0], curves):
        wav = load_audio(name)
        tw = np.arange(len(wav)) / 16000
        ax.plot(tw, wav / (abs(wav).max() + 1e-9) * 0.5 + 0.5, color="0.8", lw=0.3)
        ax.plot(t, v, color="C3", lw=1.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel("intensity")
        ax.set_title(Path(name).name, fontsize=9)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
