"""Loading an encoder: peak memory and time of the encoder-only loader vs transformers' full model.

Each row is a fresh process (peak RSS = ru_maxrss of that process), rows interleaved over --reps:

  transformers  WhisperModel.from_pretrained(dir).encoder  (builds and randomly initialises the decoder)
  emoboost      build_upstream(spec)                        (WhisperEncoder on meta, encoder tensors only)
  emoboost k    build_upstream(spec, max_layer=k)           (layers 1..k only)
  fingerprint   fingerprint_spec(spec)                      (config + weight-file hash, no torch)

and checks once that the encoder-only loader gives the same tensors as transformers'.

    python benchmarks/speed_upstream.py --upstream whisper-base --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
mode, spec, k = sys.argv[1], sys.argv[2], sys.argv[3]
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if mode == "fingerprint":
    t = time.perf_counter()
    from emoboost.upstreams import fingerprint_spec
    fp = fingerprint_spec(spec)
    print(json.dumps({"base": 0.0, "peak": rss(), "s": time.perf_counter() - t, "fp": fp,
                      "torch": "torch" in sys.modules}))
    sys.exit()
import torch
torch.set_num_threads(1)
import transformers  # imports are not part of the load
from transformers import WhisperModel  # noqa: F401
from transformers.models.whisper.modeling_whisper import WhisperEncoder  # noqa: F401
from emoboost.upstreams import build_upstream, resolve_upstream
base = rss()
t = time.perf_counter()
if mode == "transformers":
    from emoboost.upstreams.hf import quiet_transformers
    with quiet_transformers():
        enc = WhisperModel.from_pretrained(resolve_upstream(spec)[0], dtype=torch.float32).encoder
else:
    up = build_upstream(spec, max_layer=None if k == "-" else int(k))
print(json.dumps({"base": base, "peak": rss(), "s": time.perf_counter() - t}))
"""


def run_child(mode: str, spec: str, k: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, mode, spec, k], env=env, capture_output=True, text=True,
                       timeout=600, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{mode}: child failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_same_tensors(spec: str) -> str:
    import torch
    from transformers import WhisperModel

    from emoboost.upstreams import build_upstream, resolve_upstream
    from emoboost.upstreams.hf import quiet_transformers

    torch.set_num_threads(1)
    ours = build_upstream(spec).encoder.state_dict()
    with quiet_transformers():
        theirs = WhisperModel.from_pretrained(resolve_upstream(spec)[0], dtype=torch.float32).encoder.state_dict()
    same = ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    return f"encoder-only tensors identical to transformers' ({len(ours)} tensors): {same}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default="whisper-base")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-layer", type=int, default=3)
    args = ap.parse_args()
    rows = [("transformers", "-"), ("emoboost", "-"), (f"emoboost max_layer={args.max_layer}", str(args.max_layer)),
            ("fingerprint", "-")]
    results: dict[str, list[dict]] = {name: [] for name, _ in rows}
    for _ in range(args.reps):
        for name, k in rows:
            mode = name.split()[0]
            results[name].append(run_child(mode, args.upstream, k))
    print(f"{args.upstream}, {args.reps} fresh processes per row, interleaved; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| what | peak RSS MiB (median) | after imports MiB | load s (median) |")
    print("|---|---|---|---|")
    for name, _ in rows:
        rs = results[name]
        print(f"| {name} | {statistics.median(r['peak'] for r in rs):.0f} | "
              f"{statistics.median(r['base'] for r in rs):.0f} | {statistics.median(r['s'] for r in rs):.3f} |")
    fp = results["fingerprint"][0]
    print(f"fingerprint_spec: {fp['fp']} (torch imported: {fp['torch']})")
    if "whisper" in args.upstream:
        print(check_same_tensors(args.upstream))


if __name__ == "__main__":
    main()
