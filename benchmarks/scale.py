"""Scale benchmark: extraction and training on a synthetic multi-hour corpus in bounded memory.

Builds an N-hour corpus from the real EmoDB and RAVDESS audio in ``../shared`` (7 EmoDB classes;
RAVDESS calm/surprised dropped), made distinct by small perturbations — speed (0.92–1.08 via
resampling), gain (−6…+3 dB) and white noise (35–50 dB SNR), one perturbation set per copy, so
each (original speaker, copy) is a pseudo-speaker — then, in fresh subprocesses timed with
``/usr/bin/time -v``:

1. ``emoboost extract`` (frames of one layer + pooled statistics of all layers),
2. ``emoboost run --method logreg`` (pooled statistics only),
3. ``emoboost run --method ssl_cnn`` on 1 fold (frame windows drawn from the memory-mapped store),

and prints wall time, audio hours per hour, peak RSS and store bytes per size, plus an
extrapolation of store size and extraction time to IEMOCAP, CREMA-D and MSP-Podcast.

    python benchmarks/scale.py --hours 0.5 1 2 --upstreams whisper-tiny.en --work /tmp/scale
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RAVDESS_TO_EMODB = {"05": "anger", "04": "sadness", "01": "neutral", "03": "happiness", "06": "fear", "07": "disgust"}
EMODB_LETTER = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
                "N": "neutral"}
# hidden states, width, frames/s of the encoders we extrapolate to (store = frames of all layers, float16)
ENCODERS = {"whisper-base": (7, 512, 50), "wav2vec2-base": (13, 768, 50), "wavlm-large": (25, 1024, 50)}
CORPORA_HOURS = {"IEMOCAP": 12.0, "CREMA-D": 5.3, "MSP-Podcast": 240.0}


def sources(shared: Path) -> list[tuple[str, str, str]]:
    """(path, label, speaker) of the real clips the corpus is built from."""
    out = []
    for p in sorted((shared / "data" / "emodb" / "wav").glob("*.wav")):
        out.append((str(p), EMODB_LETTER[p.name[5]], "emodb" + p.name[:2]))
    for p in sorted((shared / "data" / "ravdess").glob("Actor_*/*.flac")):
        parts = p.stem.split("-")
        if parts[2] in RAVDESS_TO_EMODB:
            out.append((str(p), RAVDESS_TO_EMODB[parts[2]], "ravdess" + parts[6]))
    return out


def build_corpus(shared: Path, hours: float, root: Path) -> Path:
    """Write perturbed copies until ``hours`` of audio exist; returns the CSV manifest (reused if present)."""
    import soundfile as sf
    import soxr

    manifest = root / "manifest.csv"
    if manifest.exists():
        return manifest
    root.mkdir(parents=True, exist_ok=True)
    src = sources(shared)
    rows, total, copy = [], 0.0, 0
    while total < hours * 3600:
        rng = np.random.default_rng(copy)
        speed, gain_db, snr_db = rng.uniform(0.92, 1.08), rng.uniform(-6, 3), rng.uniform(35, 50)
        folder = root / f"copy{copy:03d}"
        folder.mkdir(exist_ok=True)
        for i, (path, label, spk) in enumerate(src):
            x, sr = sf.read(path, dtype="float32")
            if copy:
                x = soxr.resample(x, sr, sr / speed).astype(np.float32)  # played back at sr: speed change
                x = x * 10 ** (gain_db / 20)
                noise = rng.standard_normal(len(x)).astype(np.float32)
                x = x + noise * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
            out = folder / f"{i:05d}.flac"
            sf.write(str(out), np.clip(x, -1, 1), sr)
            d = len(x) / sr
            total += d
            rows.append({"id": f"c{copy:03d}-{i:05d}", "path": str(out), "label": label,
                         "speaker": f"{spk}-c{copy:03d}", "duration": f"{d:.4f}", "corpus": "scale"})
            if total >= hours * 3600:
                break
        copy += 1
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest


def emoboost_exe() -> list[str]:
    """The ``emoboost`` of the running interpreter's environment (works without activating it)."""
    exe = Path(sys.executable).with_name("emoboost")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emoboost.cli"]


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` under /usr/bin/time -v -> wall s, peak RSS MiB, return code."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(cmd)}")
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(int(m.group(1)) / 1024, 1) if m else None,
            "rc": p.returncode}


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[2, 5, 20])
    ap.add_argument("--upstreams", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    ap.add_argument("--layer", type=int, default=2, help="layer whose frames are kept (logreg and ssl_cnn read it)")
    ap.add_argument("--work", default="/tmp/emoboost-scale", help="corpus, store and runs go here")
    ap.add_argument("--shared", default=os.environ.get("EMOBOOST_SHARED", str(Path(__file__).resolve().parents[1].parent / "shared")))
    ap.add_argument("--threads", default="1")
    ap.add_argument("--skip-ssl-cnn", action="store_true")
    ap.add_argument("--redo", nargs="*", default=[], choices=["extract", "logreg", "ssl_cnn"],
                    help="measure these phases again even where work/scale.json already has them")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    done_path = work / "scale.json"  # measured phases per (hours, upstream): a stopped benchmark resumes
    previous = {(r["hours_asked"], r["upstream"]): r for r in json.loads(done_path.read_text())
                if "hours_asked" in r} if done_path.is_file() else {}
    results = []

    def save() -> None:
        keep = {(r["hours_asked"], r["upstream"]): r for r in [*previous.values(), *results]}
        tmp = done_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(keep.values()), indent=2))
        os.replace(tmp, done_path)
    for hours in args.hours:
        manifest = build_corpus(Path(args.shared), hours, work / f"corpus-{hours:g}h")
        with open(manifest) as f:
            rows = list(csv.DictReader(f))
        audio_h = sum(float(r["duration"]) for r in rows) / 3600
        n_spk = len({r["speaker"] for r in rows})
        for up in args.upstreams:
            cache = work / f"cache-{up}-{hours:g}h"
            env = {**os.environ, "EMOBOOST_CACHE": str(cache)}
            base = [*emoboost_exe(), "--threads", args.threads]
            row = dict(previous.get((hours, up), {}))
            row.update({"hours_asked": hours, "hours": round(audio_h, 2), "utterances": len(rows),
                        "speakers": n_spk, "upstream": up})
            results.append(row)

            def phase(name: str, cmd: list[str], row: dict = row, env: dict = env) -> None:
                if name in row and name not in args.redo:
                    return  # measured before (a cached store would time nothing)
                row[name] = timed(cmd, env)
                save()

            fresh = "extract" not in row or "extract" in args.redo
            if fresh and cache.exists() and any(cache.iterdir()):
                raise SystemExit(f"{cache} already holds entries: an extraction timed now would time the cache; "
                                 f"move it away (or keep its measured row in {done_path})")
            phase("extract", [*base, "extract", "--manifest", str(manifest), "--upstream", up, "--layers",
                              str(args.layer), "--no-progress", "--cache-dir", str(cache)])
            if fresh:
                row["store_bytes"] = dir_bytes(cache)
                row["stats_bytes"] = sum(dir_bytes(d) for d in cache.glob("sslstats__*"))
                row["x_real_time"] = round(audio_h * 3600 / row["extract"]["wall_s"], 1)
                save()
            phase("logreg", [*base, "run", "--manifest", str(manifest), "--upstream", up, "--method", "logreg",
                             "-p", f"layer={args.layer}", "-p", "Cs=[0.1]", "--folds", "5", "--protocol",
                             "group-kfold", "--layers", str(args.layer), "--no-progress", "--no-save-models",
                             "-o", "tsne=false", "--cache-dir", str(cache),
                             "--out", str(work / f"run-logreg-{up}-{hours:g}h")])
            if not args.skip_ssl_cnn:
                phase("ssl_cnn", [*base, "run", "--manifest", str(manifest), "--upstream", up, "--method",
                                  "ssl_cnn", "-p", f"layer={args.layer}", "-p", "max_epochs=2", "--folds", "5",
                                  "--protocol", "group-kfold", "--layers", str(args.layer), "-o", "max_folds=1",
                                  "-o", "tsne=false", "--no-progress", "--no-save-models",
                                  "--cache-dir", str(cache), "--out", str(work / f"run-sslcnn-{up}-{hours:g}h")])
            save()
            print(json.dumps(row), flush=True)
    results = sorted({(r["hours_asked"], r["upstream"]): r for r in [*previous.values(), *results]}.values(),
                     key=lambda r: (r["hours_asked"], r["upstream"]))
    print("\n| audio h | utts | pseudo-speakers | upstream | extract wall s | × real time | extract peak RSS MiB | "
          "store GB (stats GB) | logreg wall s / peak MiB | ssl_cnn 1 fold wall s / peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        sc = r.get("ssl_cnn") or {}
        print(f"| {r['hours']} | {r['utterances']} | {r['speakers']} | {r['upstream']} | {r['extract']['wall_s']} | "
              f"{r['x_real_time']} | {r['extract']['peak_rss_mib']} | {r['store_bytes'] / 1e9:.2f} "
              f"({r['stats_bytes'] / 1e9:.3f}) | {r['logreg']['wall_s']} / {r['logreg']['peak_rss_mib']} | "
              f"{sc.get('wall_s', '-')} / {sc.get('peak_rss_mib', '-')} |")
    print("\nExtrapolation (store bytes: frames of all layers, float16, + stats; one-layer frames in brackets):\n")
    print("| corpus | hours | " + " | ".join(f"{e} GB" for e in ENCODERS) + " |")
    print("|---|---|" + "---|" * len(ENCODERS))
    for name, h in CORPORA_HOURS.items():
        cells = []
        for _, (layers, dim, fps) in ENCODERS.items():
            frame_b = h * 3600 * fps * dim * 2
            cells.append(f"{layers * frame_b / 1e9:.0f} ({frame_b / 1e9:.1f})")
        print(f"| {name} | {h:g} | " + " | ".join(cells) + " |")
    for r in results:
        for name, h in CORPORA_HOURS.items():
            print(f"- {r['upstream']} at {r['x_real_time']}× real time on this machine: {name} extraction ≈ "
                  f"{h / r['x_real_time']:.1f} h" if r["x_real_time"] else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
