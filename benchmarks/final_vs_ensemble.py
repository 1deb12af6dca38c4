"""Final model vs the fold ensemble it came from, cross-corpus: trained on EmoDB, tested on RAVDESS.

Both models come from one EmoDB cross-validation run (10-fold leave-one-speaker-out): the ensemble
averages the 10 fold models' posteriors (each saw 9 speakers), the final model is one model on all 10
speakers with the settings CV chose (``emoboost train --from-run``). RAVDESS is another corpus, other
speakers, another language: every clip is unseen by both. RAVDESS classes are mapped to EmoDB's where
one exists (angry->anger, sad->sadness, neutral->neutral, happy->happiness, fearful->fear,
disgust->disgust); calm and surprised have no EmoDB class and are left out. The models still answer
with all 7 EmoDB classes, so a "boredom" answer counts as an error. UA = mean recall over the 6
mapped classes (chance 1/6).

Features come from the feature store (the same whole-clip encoding ``emoboost predict`` uses), so
each clip is encoded once, and the script reuses whatever is already extracted::

    emoboost run --corpus emodb --upstream whisper-base --method logreg -p layer=3 --out runs/emodb-logreg3
    python benchmarks/final_vs_ensemble.py --run runs/emodb-logreg3 --final models/emodb-logreg3

(the first command is run by the script when ``--run`` holds no finished run; the final model is
trained from it when ``--final`` holds none).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

RAVDESS_TO_EMODB = {"angry": "anger", "sad": "sadness", "neutral": "neutral", "happy": "happiness",
                    "fearful": "fear", "disgust": "disgust", "calm": None, "surprised": None}


def ensure_run(run: Path, upstream: str, layer: int, cache_dir: str | None) -> None:
    from emoboost.experiment.run import ExperimentConfig, run_experiment

    if (run / "summary.json").is_file() and (run / "bundle.json").is_file():
        return
    cfg = {"corpus": "emodb", "upstream": upstream, "method": "logreg", "method_params": {"layer": layer},
           "out_dir": str(run), "progress": False}
    if cache_dir:
        cfg["cache_dir"] = cache_dir
    print(f"running the EmoDB cross-validation into {run} ...", flush=True)
    run_experiment(ExperimentConfig.from_dict(cfg))


def ravdess_set(run_cfg: dict, classes: list[str], data_root: str | None, cache_dir: str):
    """RAVDESS clips with an EmoDB class, as an UtteranceSet over the feature store (y: EmoDB class index)."""
    from emoboost.experiment.run import (
        ExperimentConfig,
        align_to_view,
        build_dataset,
        load_manifest,
        prepare_ssl,
    )
    from emoboost.methods import get_method

    cfg = ExperimentConfig.from_dict({**{k: run_cfg[k] for k in ("upstream", "method", "method_params",
                                                                  "segment_encoding", "encoder_window",
                                                                  "segment_length", "segment_hop") if k in run_cfg},
                                      "corpus": "ravdess", "data_root": data_root, "cache_dir": cache_dir,
                                      "progress": True})
    manifest, _, _ = load_manifest(cfg)
    counts = manifest.label_counts()
    manifest = manifest.map_labels(RAVDESS_TO_EMODB)
    probe = get_method(cfg.method)(classes, **cfg.method_params)
    view, skipped, up = prepare_ssl(cfg, manifest, probe)
    bad = {p for p, _ in skipped}
    manifest = manifest.filter(lambda u: u.path not in bad)
    manifest, view = align_to_view(manifest, view)
    return build_dataset(manifest, {}, classes, ssl=view), manifest, counts, up


def metrics(y: np.ndarray, pred: np.ndarray, present: list[int]) -> dict:
    recalls = {c: float((pred[y == c] == c).mean()) for c in present}
    return {"WA": float((pred == y).mean()), "UA": float(np.mean(list(recalls.values()))), "recall": recalls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/emodb-logreg3", help="EmoDB CV run directory (created if missing)")
    ap.add_argument("--final", default="models/emodb-logreg3", help="final bundle (trained from --run if missing)")
    ap.add_argument("--upstream", default="whisper-base")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--ravdess-root", help="RAVDESS folder (default: the usual corpus lookup)")
    ap.add_argument("--cache-dir", help="feature store (default: the run's)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from emoboost.experiment.refit import train_final
    from emoboost.methods import Method
    from emoboost.utils import read_json

    run, final = Path(args.run), Path(args.final)
    ensure_run(run, args.upstream, args.layer, args.cache_dir)
    if not (final / "bundle.json").is_file():
        print(f"training the final model into {final} ...", flush=True)
        train_final(run, final, cache_dir=args.cache_dir, progress=False)
    run_cfg = read_json(run / "config.json", "run config")
    run_bundle = read_json(run / "bundle.json", "run bundle")
    fin_bundle = read_json(final / "bundle.json", "final bundle")
    classes = run_bundle["classes"]
    if fin_bundle["classes"] != classes or fin_bundle["upstream"]["fingerprint"] != run_bundle["upstream"]["fingerprint"]:
        raise SystemExit(f"{final} does not come from {run} (classes or upstream differ)")
    data, manifest, counts, up = ravdess_set(run_cfg, classes, args.ravdess_root, args.cache_dir or run_cfg["cache_dir"])
    if up.get("fingerprint") != run_bundle["upstream"]["fingerprint"]:
        raise SystemExit(f"RAVDESS was encoded with {up.get('fingerprint')}, the models with "
                         f"{run_bundle['upstream']['fingerprint']}")

    folds = [Method.load(run / m) for m in run_bundle["models"]]
    p_ens = np.mean([m.predict_proba(data) for m in folds], axis=0)
    p_fin = Method.load(final).predict_proba(data)
    y = data.y
    present = sorted(set(y.tolist()))
    a_ens, a_fin = p_ens.argmax(1), p_fin.argmax(1)
    m_ens, m_fin = metrics(y, a_ens, present), metrics(y, a_fin, present)
    agree = float((a_ens == a_fin).mean())
    tv = float(0.5 * np.abs(p_ens - p_fin).sum(1).mean())
    intensity = np.array([u.intensity or "?" for u in manifest])

    cv = fin_bundle["cv"]
    lines = [
        "# Final model vs fold ensemble: EmoDB -> RAVDESS (cross-corpus)",
        "",
        f"- models: {fin_bundle['method']} {json.dumps(run_cfg['method_params'])} on {up['spec']} "
        f"({up['fingerprint']}); ensemble = {len(folds)} fold models of {run} (posteriors averaged), "
        f"final = one model on all {fin_bundle['training']['speakers']} EmoDB speakers "
        f"({', '.join(f'{k}={v}' for k, v in fin_bundle['selection']['chosen'].items())})",
        f"- EmoDB CV of the procedure: UA {100 * cv['UA']['mean']:.1f} ± {100 * cv['UA']['std']:.1f} %, "
        f"WA {100 * cv['WA']['mean']:.1f} ± {100 * cv['WA']['std']:.1f} % ({cv['protocol']})",
        f"- test: RAVDESS speech, {len(y)} clips of 24 actors whose class maps to EmoDB "
        f"({', '.join(f'{k}->{v}' for k, v in RAVDESS_TO_EMODB.items() if v)}); left out: "
        f"{', '.join(f'{k} ({counts.get(k, 0)})' for k, v in RAVDESS_TO_EMODB.items() if v is None)}; "
        f"7-way answers (boredom = error); UA chance {100 / len(present):.1f} %",
        "",
        "| model | WA | UA | " + " | ".join(f"recall {classes[c]}" for c in present) + " |",
        "|---|---|---|" + "---|" * len(present),
    ]
    for name, m in (("fold ensemble", m_ens), ("final model", m_fin)):
        lines.append(f"| {name} | {100 * m['WA']:.1f} | {100 * m['UA']:.1f} | "
                     + " | ".join(f"{100 * m['recall'][c]:.1f}" for c in present) + " |")
    lines.append("")
    unmapped = [c for c in range(len(classes)) if c not in present]
    for c in unmapped:
        lines.append(f"- answers '{classes[c]}' (no RAVDESS clip has it): ensemble {100 * (a_ens == c).mean():.1f} %, "
                     f"final {100 * (a_fin == c).mean():.1f} % of clips")
    worst = min(present, key=lambda c: m_fin["recall"][c])
    ans = np.bincount(a_fin[y == worst], minlength=len(classes)) / max(int((y == worst).sum()), 1)
    lines.append(f"- final model's answers on RAVDESS {classes[worst]} (its lowest recall): " + ", ".join(
        f"{classes[c]} {100 * ans[c]:.0f} %" for c in np.argsort(-ans)[:3] if ans[c] > 0))
    lines += [f"- label agreement final vs ensemble: {100 * agree:.1f} % of {len(y)} clips "
              f"(mean total-variation distance between their posteriors {tv:.3f})"]
    for level in ("normal", "strong"):
        sel = intensity == level
        if sel.any():
            lines.append(f"- {level} intensity ({int(sel.sum())} clips): agreement {100 * (a_ens[sel] == a_fin[sel]).mean():.1f} %, "
                         f"UA ensemble {100 * metrics(y[sel], a_ens[sel], sorted(set(y[sel].tolist())))['UA']:.1f} / "
                         f"final {100 * metrics(y[sel], a_fin[sel], sorted(set(y[sel].tolist())))['UA']:.1f} "
                         f"(over its {len(set(y[sel].tolist()))} classes)")
    text = "\n".join(lines)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"agreement": agree, "tv": tv, "ensemble": m_ens, "final": m_fin,
                                               "n": int(len(y))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
