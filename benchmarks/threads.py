"""torch threads for encoding a 3 s clip with the Whisper encoder: paired, interleaved, one process.

For each condition (``idle``: nothing else of ours running; ``loaded``: one busy-loop process per
--busy, i.e. another core taken), the same clip is encoded repeatedly, alternating the thread
counts in ABBA order so drift in machine load hits every count alike. Prints per thread count the
median ms, the median of the paired ratios to 1 thread, and the load average.

    python benchmarks/threads.py --upstream whisper-base --reps 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BUSY = "while True:\n    pass\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default="whisper-base")
    ap.add_argument("--clip", default=None, help="audio file (default: a 3 s EmoDB clip from the shared folder)")
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default: 1 .. all cores)")
    ap.add_argument("--reps", type=int, default=30, help="paired repetitions per condition")
    ap.add_argument("--busy", type=int, default=1, help="busy-loop processes in the loaded condition")
    ap.add_argument("--max-layer", type=int, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from emoboost.audio import load_audio
    from emoboost.upstreams import build_upstream
    from emoboost.utils import shared_root

    counts = args.threads or sorted({1, os.cpu_count() or 1})
    clip = args.clip or str(shared_root() / "data" / "emodb" / "wav" / "08b03Tc.wav")
    wav = load_audio(clip)[:48000]
    wav = np.pad(wav, (0, max(0, 48000 - len(wav))))
    up = build_upstream(args.upstream, max_layer=args.max_layer)
    x, n = torch.from_numpy(wav)[None], torch.tensor([len(wav)])

    def once(t: int) -> float:
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        with torch.inference_mode():
            up(x, n)
        return (time.perf_counter() - t0) * 1000

    print(f"{args.upstream} (max_layer={args.max_layer}), 3 s clip, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, {args.reps} paired reps per condition")
    print("| condition | load avg | threads | median ms | paired ratio to 1 thread (median) |")
    print("|---|---|---|---|---|")
    for cond in ("idle", "loaded"):
        procs = []
        if cond == "loaded":
            procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
            time.sleep(1.0)
        try:
            for t in counts:  # warm-up
                once(t), once(t)
            times: dict[int, list[float]] = {t: [] for t in counts}
            for r in range(args.reps):
                order = counts if r % 2 == 0 else counts[::-1]
                for t in order:
                    times[t].append(once(t))
            load = os.getloadavg()[0]
        finally:
            for p in procs:
                p.kill()
                p.wait()
        for t in counts:
            ratio = statistics.median(a / b for a, b in zip(times[t], times[counts[0]]))
            print(f"| {cond} | {load:.2f} | {t} | {statistics.median(times[t]):.1f} | {ratio:.2f} |")
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
