"""Serving under load: ``emoboost serve`` on loopback, against the same engine called in-process.

Starts ``emoboost --threads T serve MODEL`` in a subprocess on 127.0.0.1 and drives it with httpx from
client threads (every request has a timeout; the whole script stays on loopback):

(a) ``--requests`` (200) uploads of 3 s clips from ``--clients`` (8) concurrent clients, in two halves,
    the server's resident memory (VmRSS) read after each half: it must not grow with the requests;
(b) ``--long`` (20) uploads of 5-minute audio (EmoDB clips concatenated), 4 concurrent clients;
(c) ``--huge`` (40) uploads of 10-minute audio, all at once: peak RSS must stay under ``--rss-limit-mb``
    (1500) and every request must be answered 200, or 503 with a ``Retry-After`` header.

The server's memory is sampled from /proc/<pid>/status every 20 ms (VmRSS; VmHWM is the kernel's
high-water mark since start). The in-process reference runs in a fresh subprocess: ``emoboost.load(MODEL)``,
then for each clip the same WAV bytes decoded with soundfile and ``Model.predict(array, sample_rate=16000)``,
one at a time (the server also runs one prediction at a time); its peak RSS is its own VmHWM.

    python benchmarks/serve_load.py                        # builds a whisper-tiny.en logreg model first
    python benchmarks/serve_load.py --model models/emodb-logreg --out serve_load.json

Without ``--model`` a model is trained into a temporary folder: ``emoboost train --corpus emodb
--upstream whisper-tiny.en --method logreg -p layer=2 --store pooled`` (EmoDB and the encoder weights from
$EMOBOOST_SHARED, default ../shared). Clips are cut from EmoDB's files; synthetic speech-like audio when
EmoDB is absent (the table then says so).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emoboost.utils import shared_root  # noqa: E402

SR = 16_000
CLIP_S = 3.0
MB = 2**20


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes (empty once the process is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


class RssSampler:
    """Samples a process's VmRSS in a thread; ``peak()`` is the largest sample since the last ``reset()``."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every, self._peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._peak = max(self._peak, proc_status(self.pid).get("VmRSS", 0))

    def reset(self) -> None:
        self._peak = proc_status(self.pid).get("VmRSS", 0)

    def peak(self) -> int:
        return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --- audio ------------------------------------------------------------------------------------------


def wav_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def source_clips(n: int) -> tuple[list[np.ndarray], str]:
    """``n`` waveforms of EmoDB (16 kHz) when present, else synthetic: (clips, where they came from)."""
    wav_dir = shared_root() / "data" / "emodb" / "wav"
    files = sorted(wav_dir.glob("*.wav"))
    if files:
        clips = [sf.read(str(f), dtype="float32")[0] for f in files[:n]]
        return clips, f"EmoDB ({len(clips)} files)"
    rng = np.random.default_rng(0)
    t = np.arange(int(2.5 * SR)) / SR
    clips = [(0.2 * np.sin(2 * np.pi * (120 + 10 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t))
              + 0.01 * rng.standard_normal(len(t))).astype(np.float32) for i in range(n)]
    return clips, "synthetic (EmoDB not found)"


def cut_clips(clips: list[np.ndarray], seconds: float) -> list[np.ndarray]:
    """The first ``seconds`` of every clip at least that long (others are joined with the next until they are)."""
    n, out, carry = int(seconds * SR), [], np.zeros(0, np.float32)
    for c in clips:
        carry = np.concatenate([carry, c])
        if len(carry) >= n:
            out.append(carry[:n].copy())
            carry = np.zeros(0, np.float32)
    return out


def concatenated(clips: list[np.ndarray], seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    reps = int(np.ceil(n / sum(len(c) for c in clips)))
    return np.concatenate(clips * reps)[:n]


# --- the server and its clients -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, args, log: Path) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "emoboost.cli", "--threads", str(args.threads), "serve", str(model),
           "--port", str(port), "--log-level", "warning", "--max-concurrent", str(args.max_concurrent),
           "--max-queue", str(args.max_queue)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 300 s")


def post_all(url: str, bodies: list[bytes], clients: int, timeout: float) -> tuple[list[dict], float]:
    """Send every body once from ``clients`` threads (each its own connection); results in order, wall time."""
    import httpx

    local = threading.local()

    def one(i: int) -> dict:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=timeout)
        t0 = time.perf_counter()
        try:
            r = local.client.post(url, files={"file": (f"clip{i}.wav", bodies[i], "audio/wav")})
            status, retry = r.status_code, r.headers.get("retry-after")
            detail = "" if r.status_code == 200 else r.text[:200]
        except httpx.HTTPError as e:
            status, retry, detail = 0, None, f"{type(e).__name__}: {e}"
        return {"status": status, "latency": time.perf_counter() - t0, "retry_after": retry, "detail": detail}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(len(bodies))))
    return results, time.perf_counter() - t0


def summarise(name: str, results: list[dict], wall: float, clients: int, peak_rss: int | None, audio_s: float) -> dict:
    ok = [r["latency"] for r in results if r["status"] == 200]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {"phase": name, "requests": len(results), "clients": clients, "audio_s": audio_s, "wall_s": wall,
            "req_per_s": len(results) / wall, "p50_s": float(np.percentile(ok, 50)) if ok else None,
            "p99_s": float(np.percentile(ok, 99)) if ok else None, "status": statuses,
            "peak_rss_mb": peak_rss / MB if peak_rss else None,
            "errors": sorted({r["detail"] for r in results if r["status"] not in (200, 503)})[:5]}


# --- the in-process reference -------------------------------------------------------------------------


def in_process(model: str, clip_dir: str, threads: int) -> None:
    """Child mode: time ``Model.predict`` on each WAV file of every phase folder; print JSON on stdout."""
    from emoboost.cli.threads import set_threads

    set_threads(threads)
    import emoboost

    t0 = time.perf_counter()
    m = emoboost.load(model)
    load_s = time.perf_counter() - t0
    out = {"load_s": load_s, "phases": {}}
    for phase in sorted(p for p in Path(clip_dir).iterdir() if p.is_dir()):
        lat = []
        t0 = time.perf_counter()
        for f in sorted(phase.glob("*.wav")):
            t1 = time.perf_counter()
            x, sr = sf.read(io.BytesIO(f.read_bytes()), dtype="float32")
            m.predict(x, sample_rate=sr)
            lat.append(time.perf_counter() - t1)
        out["phases"][phase.name] = {"requests": len(lat), "wall_s": time.perf_counter() - t0, "latencies": lat,
                                     "rss_after": proc_status(os.getpid()).get("VmRSS", 0)}
    out["peak_rss"] = proc_status(os.getpid()).get("VmHWM", 0)
    print(json.dumps(out))


def run_in_process(model: Path, clip_dir: Path, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--in-process", str(model), "--clip-dir", str(clip_dir), "--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode:
        raise RuntimeError(f"in-process reference failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def train_model(out: Path, threads: int) -> Path:
    cmd = [sys.executable, "-m", "emoboost.cli", "--threads", str(threads), "train", "--corpus", "emodb",
           "--upstream", "whisper-tiny.en", "--method", "logreg", "-p", "layer=2", "--store", "pooled",
           "--out", str(out)]
    print("building a model:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(REPO / "src")), check=True, timeout=3600)
    return out


# --- main -----------------------------------------------------------------------------------------------


def _secs(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def table(rows: list[dict]) -> str:
    lines = ["| phase | requests | clients | wall s | req/s | p50 s | p99 s | 200 | 503 | other | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        st = dict(r["status"])
        other = sum(v for k, v in st.items() if k not in ("200", "503"))
        lines.append(f"| {r['phase']} | {r['requests']} | {r['clients']} | {r['wall_s']:.1f} | {r['req_per_s']:.2f} | "
                     f"{_secs(r['p50_s'])} | {_secs(r['p99_s'])} | {st.get('200', 0)} | {st.get('503', 0)} | {other} | "
                     f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model bundle or run directory (default: train a small one)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--long", type=int, default=20, help="5-minute uploads in (b)")
    ap.add_argument("--huge", type=int, default=40, help="concurrent 10-minute uploads in (c)")
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rss-limit-mb", type=float, default=1500)
    ap.add_argument("--out", type=Path, help="write every number as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (clips, model, server log)")
    ap.add_argument("--in-process", help=argparse.SUPPRESS)
    ap.add_argument("--clip-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        in_process(args.in_process, args.clip_dir, args.threads)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    try:
        return measure(args, tmp)
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(args, tmp: Path) -> int:
    """Build the clips, run the three phases against the server, then the in-process reference."""
    model = args.model or train_model(tmp / "model", args.threads)
    source, origin = source_clips(400)
    clips = [wav_bytes(c) for c in cut_clips(source, CLIP_S)]
    if len(clips) < 10:
        raise SystemExit(f"only {len(clips)} clips of {CLIP_S} s could be cut from {origin}")
    short = [clips[i % len(clips)] for i in range(args.requests)]
    five, ten = wav_bytes(concatenated(source, 300)), wav_bytes(concatenated(source, 600))
    # the same bytes for the in-process reference (fewer long ones: its per-request cost is what compares)
    plan = {"a_clips": short, "b_5min": [five] * min(args.long, 5), "c_10min": [ten] * 3}
    for phase, bodies in plan.items():
        (tmp / "clips" / phase).mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(bodies):
            (tmp / "clips" / phase / f"{i:04d}.wav").write_bytes(b)

    port = free_port()
    url = f"http://127.0.0.1:{port}/predict"
    t0 = time.perf_counter()
    server = start_server(model, port, args, tmp / "server.log")
    start_s = time.perf_counter() - t0
    sampler = RssSampler(server.pid)
    rows, rss = [], {"after_start": proc_status(server.pid)}
    try:
        warm, _ = post_all(url, clips[: args.clients], args.clients, 120)  # first calls build lazy state
        rss["after_warmup"] = proc_status(server.pid)
        half = len(short) // 2
        sampler.reset()
        res1, wall1 = post_all(url, short[:half], args.clients, 120)
        rss["after_half"] = proc_status(server.pid)
        res2, wall2 = post_all(url, short[half:], args.clients, 120)
        rss["after_all"] = proc_status(server.pid)
        rows.append(summarise(f"(a) {CLIP_S:g} s clips", res1 + res2, wall1 + wall2, args.clients, sampler.peak(),
                              CLIP_S))
        sampler.reset()
        res, wall = post_all(url, [five] * args.long, 4, 600)
        rss["after_b"] = proc_status(server.pid)
        rows.append(summarise("(b) 5 min uploads", res, wall, 4, sampler.peak(), 300))
        sampler.reset()
        res_c, wall = post_all(url, [ten] * args.huge, args.huge, 600)
        rss["after_c"] = proc_status(server.pid)
        rows.append(summarise("(c) 10 min uploads, all at once", res_c, wall, args.huge, sampler.peak(), 600))
        import httpx

        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    finally:
        sampler.stop()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    ref = run_in_process(model, tmp / "clips", args.threads)
    names = {"a_clips": f"in-process (a) {CLIP_S:g} s clips", "b_5min": "in-process (b) 5 min",
             "c_10min": "in-process (c) 10 min"}
    for key, r in ref["phases"].items():
        lat = r["latencies"]
        rows.append({"phase": names[key], "requests": r["requests"], "clients": 1, "wall_s": r["wall_s"],
                     "req_per_s": r["requests"] / r["wall_s"], "p50_s": float(np.percentile(lat, 50)),
                     "p99_s": float(np.percentile(lat, 99)), "status": {"200": r["requests"]},
                     "peak_rss_mb": ref["peak_rss"] / MB, "audio_s": None, "errors": []})

    mb = {k: {kk: round(vv / MB, 1) for kk, vv in v.items()} for k, v in rss.items()}
    c_ok = all(r["status"] == 200 or (r["status"] == 503 and (r["retry_after"] or "").isdigit()) for r in res_c)
    growth = mb["after_all"]["VmRSS"] - mb["after_half"]["VmRSS"]
    checks = {
        "rss_growth_100_to_200_mb": round(growth, 1),
        "rss_does_not_grow": growth < 0.05 * mb["after_half"]["VmRSS"],
        "c_peak_rss_mb": round(rows[2]["peak_rss_mb"], 1),
        "c_server_peak_hwm_mb": mb["after_c"].get("VmHWM"),
        "c_under_limit": mb["after_c"].get("VmHWM", 0) < args.rss_limit_mb,
        "c_every_answer_200_or_503_with_retry_after": c_ok,
        "health_counts_match": health["requests"] == len(warm) + len(short) + args.long + args.huge,
    }
    print(f"\nmodel: {model}; clips: {origin}; server start (to /health): {start_s:.1f} s; "
          f"in-process load: {ref['load_s']:.1f} s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; --threads {args.threads}, "
          f"--max-concurrent {args.max_concurrent}, --max-queue {args.max_queue}\n")
    print(table(rows))
    print("\nserver RSS MB:", json.dumps(mb))
    print("checks:", json.dumps(checks))
    print("/health counts:", json.dumps({k: health[k] for k in ("requests", "ok", "errors", "busy", "by_status")}))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "rss_mb": mb, "checks": checks, "health": health,
                                        "origin": origin, "server_start_s": start_s, "in_process": ref},
                                       indent=1, default=str))
    ok = all(v for k, v in checks.items() if isinstance(v, bool))
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
