"""Long audio: time and peak memory of ``emoboost predict`` on a 1-hour file, with and without VAD,
against a 10-second file.

Builds, in a temporary folder, one long FLAC from EmoDB clips separated by silences (0.5-8 s after
each clip, 60 s after every 20th; the "silence" is -80 dBFS noise, not digital zeros, so files are not
flagged silent), and a 10 s file cut from its start. Each case runs ``emoboost --threads N predict RUN
FILE`` in a fresh subprocess; wall time is measured around it, peak RSS from the child's rusage
(``os.wait4``: the kernel's high-water mark, nothing sampled). "x real time" = audio seconds / wall
seconds, process start and model load included (the 10 s rows show that fixed cost).

With VAD the script also checks the timeline against the known layout: speech found (seconds), how much
of it lies inside the long (60 s) silences (must be none), and how many clips got at least one window.

    python benchmarks/long_audio.py --run runs/emodb-logreg3                 # 60 min, 1 thread
    python benchmarks/long_audio.py --run runs/emodb-logreg3 --minutes 10 --out long_audio.json
    python benchmarks/long_audio.py --build-only --keep long                  # just long/long.flac (1 h)

The run directory comes from ``emoboost run --corpus emodb --upstream whisper-base --method logreg
-p layer=3 --out runs/emodb-logreg3``; EmoDB is read from $EMOBOOST_SHARED/data/emodb (default ../shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emoboost.utils import shared_root  # noqa: E402

SR = 16_000
LONG_GAP_EVERY = 20
LONG_GAP_S = 60.0
NOISE_AMP = 1e-4  # -80 dBFS


def build_long_file(clips: list[Path], out: Path, seconds: float, seed: int = 0) -> list[dict]:
    """Write the long FLAC block by block; returns the layout [{start, end, clip}] of its speech."""
    rng = np.random.default_rng(seed)
    layout: list[dict] = []
    t = 0
    total = int(seconds * SR)
    with sf.SoundFile(str(out), "w", samplerate=SR, channels=1, format="FLAC", subtype="PCM_16") as f:
        i = 0
        while t < total:
            clip = clips[i % len(clips)]
            x, sr = sf.read(str(clip), dtype="float32")
            if sr != SR:
                raise ValueError(f"{clip}: expected {SR} Hz")
            x = x[: total - t]
            f.write(x)
            layout.append({"start": t / SR, "end": (t + len(x)) / SR, "clip": clip.name})
            t += len(x)
            i += 1
            gap = LONG_GAP_S if i % LONG_GAP_EVERY == 0 else float(rng.uniform(0.5, 8.0))
            n = min(int(gap * SR), total - t)
            if n > 0:
                f.write((NOISE_AMP * rng.standard_normal(n)).astype(np.float32))
                t += n
    return layout


def run_case(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read both pipes while waiting (a full pipe would block the child), then reap it with its rusage
    import threading

    bufs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: bufs.__setitem__(k, s.read())) for k, s in
               (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "major_faults": usage.ru_majflt,
            "minor_faults": usage.ru_minflt, "stdout": bufs.get("out", b"").decode(),
            "stderr": bufs.get("err", b"").decode()}


def check_timeline(result: dict, layout: list[dict]) -> dict:
    tl = result.get("timeline", [])
    starts = np.array([s["start"] for s in layout])
    ends = np.array([s["end"] for s in layout])
    long_gaps = [(ends[i], starts[i + 1]) for i in range(len(layout) - 1) if (i + 1) % LONG_GAP_EVERY == 0]
    inside = 0.0
    for t in tl:
        for a, b in long_gaps:
            inside += max(0.0, min(t["end"], b - 0.5) - max(t["start"], a + 0.5))  # VAD padding allowance
    hit = set()
    for t in tl:
        j = np.flatnonzero((starts < t["end"]) & (ends > t["start"]))
        hit.update(int(k) for k in j)
    return {"windows": len(tl), "speech_found_s": round(sum(t["end"] - t["start"] for t in tl), 1),
            "speech_true_s": round(float((ends - starts).sum()), 1),
            "seconds_inside_long_silences": round(inside, 3), "clips_with_a_window": len(hit),
            "clips": len(layout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="run directory or model bundle (whisper-base logreg layer=3)")
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the long file (default 60)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shared", help="shared folder (default $EMOBOOST_SHARED or ../shared)")
    ap.add_argument("--cases", nargs="+", default=["short", "short-vad", "long-vad", "long-novad"],
                    choices=["short", "short-vad", "long-vad", "long-novad"])
    ap.add_argument("--keep", help="build the files in this folder and keep them (default: a temp folder)")
    ap.add_argument("--out", help="write all numbers as JSON here")
    ap.add_argument("--build-only", action="store_true", help="only write the files (into --keep) and stop")
    args = ap.parse_args()
    if args.build_only and not args.keep:
        ap.error("--build-only needs --keep DIR")
    if not args.build_only and not args.run:
        ap.error("--run is required (or --build-only)")

    shared = Path(args.shared) if args.shared else shared_root()
    clips = sorted((shared / "data" / "emodb" / "wav").glob("*.wav"))
    if not clips:
        raise SystemExit(f"no EmoDB clips under {shared / 'data' / 'emodb' / 'wav'}")
    tmp = tempfile.TemporaryDirectory(prefix="emoboost-long-") if not args.keep else None
    work = Path(args.keep or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    long_file, short_file = work / "long.flac", work / "short10s.flac"
    t0 = time.perf_counter()
    layout = build_long_file(clips, long_file, args.minutes * 60)
    x, _ = sf.read(str(long_file), frames=10 * SR, dtype="float32")
    sf.write(str(short_file), x, SR, format="FLAC", subtype="PCM_16")
    print(f"built {long_file} ({args.minutes:g} min, {len(layout)} clips, "
          f"{sum(s['end'] - s['start'] for s in layout) / 60:.1f} min of speech) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    if args.build_only:
        return 0

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    cases = {"short": (short_file, ["--no-vad"]), "short-vad": (short_file, ["--vad"]),
             "long-vad": (long_file, ["--vad", "--timeline"]), "long-novad": (long_file, ["--no-vad"])}
    rows = {}
    for name in args.cases:
        f, flags = cases[name]
        out_json = work / f"{name}.json"
        cmd = [sys.executable, "-m", "emoboost.cli", "--threads", str(args.threads), "predict", args.run, str(f),
               "--format", "json", "--no-progress", "--out", str(out_json), *flags]
        load0 = os.getloadavg()[0]
        r = run_case(cmd, env)
        if r["rc"] != 0:
            print(f"{name}: exit {r['rc']}\n{r['stderr'][-2000:]}", file=sys.stderr)
            return 1
        res = json.loads(out_json.read_text())["results"][0]
        audio_s = float(res["duration"])
        row = {k: v for k, v in r.items() if k not in ("stdout", "stderr")}
        row.update(audio_s=audio_s, x_real_time=round(audio_s / r["wall_s"], 2), label=res["label"],
                   speech_seconds=res.get("speech_seconds"), load_avg=round(load0, 2))
        if name == "long-vad":
            row["timeline_check"] = check_timeline(res, layout)
        rows[name] = row
        print(f"{name:10s} audio {audio_s:7.1f} s  wall {r['wall_s']:7.1f} s  x{row['x_real_time']:7.2f} real time  "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB  label {res['label']}", flush=True)

    print()
    print("| case | audio | wall s | × real time | peak RSS MB | user s | sys s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['audio_s']:.0f} s | {r['wall_s']:.1f} | {r['x_real_time']:.2f} | {r['peak_rss_mb']:.0f} | "
              f"{r['user_s']:.0f} | {r['sys_s']:.1f} |")
    for long_, short in (("long-vad", "short-vad"), ("long-novad", "short")):
        if long_ in rows and short in rows:
            d = rows[long_]["peak_rss_mb"] - rows[short]["peak_rss_mb"]
            print(f"peak RSS {long_} - {short}: {d:+.1f} MB ({'within' if abs(d) <= 100 else 'OVER'} 100 MB)")
    if "long-vad" in rows:
        print("VAD timeline:", json.dumps(rows["long-vad"]["timeline_check"]))
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": args.threads, "minutes": args.minutes, "run": args.run}
    print("setup:", json.dumps(meta))
    if args.out:
        Path(args.out).write_text(json.dumps({"setup": meta, "cases": rows}, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
