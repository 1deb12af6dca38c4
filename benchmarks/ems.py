"""EMS benchmark: emotion-intensity model, Mockingjay/NPC x random/EMS pretraining, probes, EmoDB SER.

Stages (each resumable; rerun the same command to continue after an interruption):

1. ``intensity``: eGeMAPS-LLD RankSVM on RAVDESS; 4-fold actor cross-validation (6 actors per
   fold) and the model used for pretraining (trained on actors 1-18, tested on 19-24).
2. ``pretrain``: {mockingjay, npc} x {random, ems} x seeds on readspeech + the TIMIT sample
   (never EmoDB), small CPU configs from recipes/pretrain/*-small.yaml.
3. ``probe``: TIMIT frame phone classification (39 phones, speaker-disjoint 12/4) for every
   pretrained model and a plain log-mel baseline.
4. ``ser``: EmoDB 7-class, 10-fold leave-one-speaker-out through ``emoboost.experiment.run`` (the linear
   SSL-only probe over a learned weighted sum of layers by default; add ``msemoboost``).
5. ``maskstats``: where random and EMS masks fall on the pretraining audio (intensity of masked
   frames, share of masked frames in pauses).

Writes ``<out>/results.json`` and ``<out>/results.md`` after every stage.

    nohup python benchmarks/ems.py --out runs/ems > runs/ems.log 2>&1 &
    python benchmarks/ems.py --out runs/ems-quick --quick      # 2-minute smoke test
    # MS-EmoBoost as the downstream model too, seed 0 encoders:
    python benchmarks/ems.py --out runs/ems --seeds 0 --stages pretrain ser \
        --ser-methods linear "msemoboost=msemoboost:guidance=both,freeze_alexnet=true,enh_residual=true,max_epochs=15,patience=4"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emoboost.utils import atomic_write_text, shared_root  # noqa: E402

log = logging.getLogger("ems")
MODELS = ("mockingjay", "npc")
STRATEGIES = ("random", "ems")


def _save(out: Path, results: dict) -> None:
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=float))
    atomic_write_text(out / "results.md", markdown(results))


def _pm(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "-"
    a = np.asarray(values, dtype=float) * scale
    return f"{a.mean():.2f} ± {a.std():.2f}"


# ---------------------------------------------------------------------------------------------
def stage_intensity(args, out: Path, results: dict) -> Path:
    from emoboost.pretrain.intensity import IntensityConfig, IntensityModel
    from emoboost.pretrain.ranking import (
        actor_cross_validation,
        evaluate_ranking,
        items_from_manifest,
        ravdess_manifest,
        split_by_actor,
        train_intensity_model,
    )

    mdir = out / "intensity"
    if (mdir / "intensity.json").exists() and "intensity" in results:
        log.info("intensity model exists: %s", mdir)
        return mdir
    cfg = IntensityConfig()
    t0 = time.time()
    manifest = ravdess_manifest(args.shared / "data" / "ravdess")
    lld_cache = Path(args.lld_cache) if args.lld_cache else out / "lld_cache"
    items = items_from_manifest(manifest, lld_cache, progress=args.progress, level_normalize=cfg.level_normalize)
    t_feat = time.time() - t0
    cv = actor_cross_validation(items, 4, cfg)
    tr, te = split_by_actor(items, range(19, 25))
    model = train_intensity_model(tr, cfg)
    rep = evaluate_ranking(model, te)
    model.info["heldout"] = {"speakers": rep["speakers"], "within": rep["within"]["all"],
                             "across": rep["across"]["all"]}
    model.save(mdir)
    IntensityModel.load(mdir)  # round trip
    kinds = ("all", "strong>normal", "normal>neutral", "strong>neutral")
    results["intensity"] = {
        "config": cfg.to_dict(),
        "n_utterances": len(items),
        "feature_seconds": round(t_feat, 1),
        "cv_within": {k: [f["within"][k] for f in cv] for k in kinds},
        "cv_across": [f["across"]["all"] for f in cv],
        "cv_intensity_within": [f["within_intensity"]["all"] for f in cv],
        "cv_by_emotion": {e: [f["by_emotion_within"].get(e) for f in cv] for e in cv[0]["by_emotion_within"]},
        "heldout_19_24": {"within": {k: rep["within"][k] for k in kinds}, "across": rep["across"]["all"],
                          "n_pairs": rep["within"]["n_all"]},
        "C": model.info["C"],
    }
    log.info("intensity ranking (4-fold actor CV, within-actor pairs): %s", _pm(results["intensity"]["cv_within"]["all"]))
    _save(out, results)
    return mdir


def run_names(args) -> list[tuple[str, str, str, int]]:
    return [(f"{m}-{s}-s{seed}", m, s, seed) for m in args.models for s in args.strategies for seed in args.seeds]


def stage_pretrain(args, out: Path, results: dict, intensity_dir: Path) -> None:
    from emoboost.pretrain.train import PretrainConfig, pretrain

    sources = [args.shared / "data" / "readspeech" / "wavs", args.shared / "data" / "timit_sample"]
    for s in sources:
        if "emodb" in str(s).lower():
            raise ValueError("EmoDB audio must never be used for pretraining")
    results.setdefault("pretrain", {})
    for name, model, strategy, seed in run_names(args):
        cfg = PretrainConfig.from_yaml(REPO / "recipes" / "pretrain" / f"{model}-small.yaml")
        over = {"seed": seed, "masking.strategy": strategy, "threads": args.threads,
                "intensity_model": str(intensity_dir.resolve()), "intensity_cache": str((out / "intensity_cache").resolve())}
        if args.steps:
            over["steps"] = args.steps
            over["checkpoint_every"] = max(1, args.steps // 4)
        cfg = cfg.with_overrides(over)
        d = out / "pretrain" / name
        log.info("pretraining %s (%d steps)", name, cfg.steps)
        t0 = time.time()
        pretrain(cfg, sources, d, resume=True, progress=args.progress)
        meta = json.loads((d / "emoboost_upstream.json").read_text())["pretrain"]
        results["pretrain"][name] = {"model": model, "strategy": strategy, "seed": seed, "steps": cfg.steps,
                                     "train_seconds": meta["train_seconds"], "final_loss": meta["final_loss"],
                                     "n_files": meta["n_files"], "hours": meta["hours"],
                                     "wall_seconds_this_call": round(time.time() - t0, 1)}
        log.info("  %s: %.0f s training, final loss %.4f", name, meta["train_seconds"], meta["final_loss"])
        _save(out, results)


def stage_probe(args, out: Path, results: dict) -> None:
    from emoboost.pretrain.probe import LogMelUpstream, phone_probe
    from emoboost.upstreams.local import load_local_upstream

    root = args.shared / "data" / "timit_sample"
    results.setdefault("phone_probe", {})
    todo = [("logmel", None)] + [(n, out / "pretrain" / n) for n, *_ in run_names(args)]
    for name, d in todo:
        f = out / "probe" / f"{name}.json"
        if f.exists():
            results["phone_probe"][name] = json.loads(f.read_text())
            continue
        if d is not None and not (d / "model.safetensors").exists():
            log.warning("no pretrained model for %s; skipping its probe", name)
            continue
        up = LogMelUpstream() if d is None else load_local_upstream(d)
        t0 = time.time()
        r = phone_probe(up, root, max_iter=args.probe_iters)
        r["seconds"] = round(time.time() - t0, 1)
        atomic_write_text(f, json.dumps(r, indent=2))
        results["phone_probe"][name] = r
        log.info("phone probe %s: %.3f (layer %s)", name, r["test_accuracy"], r["best_layer"])
        _save(out, results)


def stage_ser(args, out: Path, results: dict) -> None:
    try:
        from emoboost.experiment.benchmark import parse_method_spec
        from emoboost.experiment.run import ExperimentConfig, run_experiment
    except ImportError as e:  # the spine's runner is not there yet
        log.warning("SER stage skipped: emoboost.experiment.run unavailable (%s)", e)
        return
    results.setdefault("ser", {})
    for name, *_ in run_names(args):
        d = out / "pretrain" / name
        if not (d / "model.safetensors").exists():
            log.warning("no pretrained model for %s; skipping SER", name)
            continue
        for spec in args.ser_methods:
            label, method, extra = parse_method_spec(spec)
            key = f"{name}|{label}"
            if key in results["ser"] and results["ser"][key].get("complete"):
                continue
            params = {"layer": "weighted", **extra}
            cfg = ExperimentConfig(corpus="emodb", data_root=str(args.shared / "data" / "emodb"), upstream=str(d.resolve()),
                                   method=method, method_params=params, seeds=[0], out_dir=str(out / "ser" / f"{name}-{label}"),
                                   cache_dir=str(out / "feature_cache"), tsne=False, save_models=False,
                                   progress=False, max_folds=args.ser_max_folds)
            t0 = time.time()
            rep = run_experiment(cfg)
            folds = rep["per_fold"]
            results["ser"][key] = {"WA": [f["WA"] for f in folds], "UA": [f["UA"] for f in folds],
                                   "seconds": round(time.time() - t0, 1), "complete": True}
            log.info("SER %s %s: WA %s UA %s", name, method, _pm(results["ser"][key]["WA"]), _pm(results["ser"][key]["UA"]))
            _save(out, results)


def stage_maskstats(args, out: Path, results: dict, intensity_dir: Path) -> None:
    """Where each strategy puts its masks on the pretraining audio (Mockingjay frames, 3 s crops)."""
    from emoboost.pretrain.align import align_to_rate
    from emoboost.pretrain.intensity import IntensityModel, cached_file_intensity
    from emoboost.pretrain.masking import MaskConfig, sample_spans, spans_to_mask
    from emoboost.pretrain.train import collect_audio

    model = IntensityModel.load(intensity_dir)
    files = collect_audio([args.shared / "data" / "readspeech" / "wavs", args.shared / "data" / "timit_sample"])
    rng = np.random.default_rng(0)
    curves = []
    for f in files:
        t, v = cached_file_intensity(f, model, out / "intensity_cache")
        curves.append(align_to_rate(t, v, int(t[-1] * 100 / 3), 100 / 3, offset=0.01))
    allv = np.concatenate(curves)
    stats = {"mean_intensity": float(allv.mean()), "pause_fraction": float((allv < 0.05).mean())}
    for strategy in STRATEGIES:
        cfg = MaskConfig(strategy=strategy)
        masked = []
        for _ in range(4000):
            c = curves[int(rng.integers(len(curves)))]
            n = min(100, len(c))
            s0 = int(rng.integers(0, len(c) - n + 1))
            crop = c[s0: s0 + n]
            masked.append(crop[spans_to_mask(n, sample_spans(n, cfg, rng, crop), cfg.span)])
        m = np.concatenate(masked)
        stats[strategy] = {"masked_mean_intensity": float(m.mean()), "masked_in_pauses": float((m < 0.05).mean())}
    results["mask_stats"] = stats
    log.info("mask statistics: %s", stats)
    _save(out, results)


# ---------------------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    lines = ["# EMS benchmark results", ""]
    it = results.get("intensity")
    if it:
        w = it["cv_within"]
        lines += ["## Emotion-intensity ranking (RAVDESS, held-out actors)", "",
                  f"{it['n_utterances']} utterances; RankSVM (C={it['C']}) on eGeMAPSv02 LLD window functionals.",
                  "Pairwise accuracy, mean ± std over 4 actor-disjoint folds (6 actors each), %:", "",
                  "| pairs | all | strong>normal | normal>neutral | strong>neutral | across actors (all) |",
                  "|---|---|---|---|---|---|",
                  f"| within actor | {_pm(w['all'])} | {_pm(w['strong>normal'])} | {_pm(w['normal>neutral'])} | "
                  f"{_pm(w['strong>neutral'])} | {_pm(it['cv_across'])} |", "",
                  f"Pretraining model (actors 1-18 -> 19-24): within-actor {100 * it['heldout_19_24']['within']['all']:.1f} % "
                  f"of {it['heldout_19_24']['n_pairs']} pairs.", ""]
    ms = results.get("mask_stats")
    if ms:
        lines += ["## Where the masks fall (pretraining audio, Mockingjay frames, 3 s crops)", "",
                  f"Mean intensity {ms['mean_intensity']:.3f}; {100 * ms['pause_fraction']:.1f} % of frames are pauses "
                  "(intensity < 0.05).", "", "| masking | mean intensity of masked frames | masked frames in pauses |",
                  "|---|---|---|"]
        for st in STRATEGIES:
            if st in ms:
                lines.append(f"| {st} | {ms[st]['masked_mean_intensity']:.3f} | {100 * ms[st]['masked_in_pauses']:.1f} % |")
        lines.append("")
    pre = results.get("pretrain", {})
    probe = results.get("phone_probe", {})
    ser = results.get("ser", {})
    if pre:
        lines += ["## Pretraining + probes", "",
                  "mean ± std over seeds (phone accuracy, %) and over folds x seeds (SER, %).", ""]
        methods = sorted({k.split("|")[1] for k in ser}) or []
        head = "| model | masking | seeds | train s/run | final loss | TIMIT phone acc |"
        sep = "|---|---|---|---|---|---|"
        for m in methods:
            head += f" EmoDB WA ({m}) | EmoDB UA ({m}) |"
            sep += "---|---|"
        lines += [head, sep]
        groups: dict[tuple[str, str], list[str]] = {}
        for name, r in pre.items():
            groups.setdefault((r["model"], r["strategy"]), []).append(name)
        for (model, strategy), names in sorted(groups.items()):
            row = (f"| {model} | {strategy} | {len(names)} | {np.mean([pre[n]['train_seconds'] for n in names]):.0f} | "
                   f"{np.mean([pre[n]['final_loss'] for n in names]):.4f} | "
                   f"{_pm([probe[n]['test_accuracy'] for n in names if n in probe])} |")
            for m in methods:
                wa = [v for n in names if f"{n}|{m}" in ser for v in ser[f"{n}|{m}"]["WA"]]
                ua = [v for n in names if f"{n}|{m}" in ser for v in ser[f"{n}|{m}"]["UA"]]
                row += f" {_pm(wa)} | {_pm(ua)} |"
            lines.append(row)
        for m in methods:
            lines += ["", f"Paired EMS - random differences (same seed, same EmoDB fold; {m}), points:", "",
                      "| model | ΔWA mean ± std | ΔUA mean ± std | EMS better (UA) | pairs |", "|---|---|---|---|---|"]
            for model in sorted({r["model"] for r in pre.values()}):
                dwa, dua = [], []
                for seed in sorted({r["seed"] for r in pre.values()}):
                    a_, b_ = ser.get(f"{model}-ems-s{seed}|{m}"), ser.get(f"{model}-random-s{seed}|{m}")
                    if a_ and b_ and len(a_["UA"]) == len(b_["UA"]):
                        dwa += list(np.subtract(a_["WA"], b_["WA"]))
                        dua += list(np.subtract(a_["UA"], b_["UA"]))
                if dua:
                    lines.append(f"| {model} | {_pm(dwa)} | {_pm(dua)} | {int(np.sum(np.asarray(dua) > 0))} | {len(dua)} |")
        if "logmel" in probe:
            lines += ["", f"Log-mel baseline (no pretraining), TIMIT phone accuracy: {100 * probe['logmel']['test_accuracy']:.2f} %"]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "runs" / "ems"))
    p.add_argument("--shared", default=None, help="shared folder (default $EMOBOOST_SHARED or ../shared)")
    p.add_argument("--stages", nargs="+", default=["intensity", "pretrain", "probe", "ser", "maskstats"],
                   choices=["intensity", "pretrain", "probe", "ser", "maskstats"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="override pretraining steps (default: the recipe's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lld-cache", default=None, help="eGeMAPS LLD cache for RAVDESS (default <out>/lld_cache)")
    p.add_argument("--probe-iters", type=int, default=100)
    p.add_argument("--ser-methods", nargs="+", default=["linear"],
                   help="method specs as in `emoboost benchmark` (label=name:k=v,...); layer defaults to 'weighted'")
    p.add_argument("--ser-max-folds", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 20 steps, 1 SER fold")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    args = p.parse_args(argv)
    args.shared = Path(args.shared) if args.shared else shared_root()
    if args.quick:
        args.seeds, args.steps, args.ser_max_folds, args.probe_iters = [0], args.steps or 20, 1, 20
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(out / "benchmark.log")])
    torch.set_num_threads(args.threads)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    results["machine"] = {"torch_threads": args.threads, "cpus": __import__("os").cpu_count()}
    log.info("EMS benchmark -> %s (stages %s)", out, args.stages)
    intensity_dir = out / "intensity"
    if "intensity" in args.stages:
        intensity_dir = stage_intensity(args, out, results)
    if "pretrain" in args.stages:
        stage_pretrain(args, out, results, intensity_dir)
    if "probe" in args.stages:
        stage_probe(args, out, results)
    if "ser" in args.stages:
        stage_ser(args, out, results)
    if "maskstats" in args.stages:
        stage_maskstats(args, out, results, intensity_dir)
    _save(out, results)
    log.info("done: %s", out / "results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
