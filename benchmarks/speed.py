"""The "Speed" table: emoboost against minimal code doing the same work, every row measured here.

Parts (``--parts``, default all), each interleaved so that changes in machine load hit both sides
alike, at one CPU thread (torch, OpenMP and BLAS) unless a part is about threads:

a. warm predict of a ~3 s clip with a layer-3 logreg run: ``Engine.predict_file`` against
   :mod:`minimal_predict` (log-mel + encoder layers 1..3 + the fold heads, the same weights, no
   emoboost), alternating in one process; posteriors are checked to agree.
b. extraction throughput on EmoDB, each clip on its own frames (all layers, as the feature store
   keeps them): useful GFLOP/s (the encoder's matmul FLOPs counted from its config: conv1, conv2,
   attention projections, scores, mixing and MLP of every layer run, per clip length) against the
   float32 ``torch.mm`` rate of the encoder's own matrix shapes measured in the same run (the best
   shape, and the shapes weighted by their share of the FLOPs), × real time, and the same clips
   through the minimal encoder; plus ``extract_to_store`` end to end.
c. cold start in fresh processes: ``emoboost --help`` against bare ``python -c pass``, and
   ``emoboost predict RUN clip.wav`` against ``python benchmarks/minimal_predict.py`` (wall and CPU).
d. warm-cache ``emoboost run --corpus emodb --method logreg -p layer=3`` (the store already holds
   EmoDB): where the wall time goes (timings.json + process start), fitting + prediction share.
e. peak RSS of ``emoboost predict`` on a 3 s and a 10 s clip against the reference script.
f. BLAS threads: one logistic-regression fit of EmoDB's size with 1 vs 2 BLAS threads, on the machine
   as it is and with one more busy-loop process per extra core.
g. two ways to raise extraction's matmul efficiency, against the store's one-clip-at-a-time encoding
   (CPU seconds, interleaved, every 8th EmoDB file): length-sorted padded batches through the
   encoder's masked batch path (~10 s and ~20 s of audio per batch; largest deviation from the clip
   run alone), and ``torch.compile(dynamic=True)`` of the encoder (compile time reported apart).

    python benchmarks/speed.py --run runs/emodb-logreg3                 # everything (~5-10 min)
    python benchmarks/speed.py --run runs/emodb-logreg3 --quick --parts a,c
    python benchmarks/speed.py --run runs/emodb-logreg3 --json speed.json

The run directory comes from ``emoboost run --corpus emodb --upstream whisper-base --method logreg
-p layer=3 --out runs/emodb-logreg3``; part d needs that run's feature store in ``$EMOBOOST_CACHE``
(or ``--cache``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before numpy/torch load: every part runs at one thread unless it says otherwise

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from minimal_predict import Encoder, Reference  # noqa: E402

BUSY = "while True:\n    pass\n"


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def med(xs: list[float]) -> float:
    return float(statistics.median(xs))


def emoboost_exe() -> list[str]:
    exe = Path(sys.executable).with_name("emoboost")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emoboost.cli"]


def clip_near(seconds: float) -> Path:
    import soundfile as sf

    from emoboost.utils import shared_root

    files = sorted((shared_root() / "data" / "emodb" / "wav").glob("*.wav"))
    if not files:
        raise SystemExit("no EmoDB under the shared folder (set EMOBOOST_SHARED) and no --clip given")
    return min(files, key=lambda f: (abs(sf.info(str(f)).duration - seconds), f.name))


def weights_dir(run: Path) -> Path:
    """The encoder directory predict loads for the run (the reference reads the same weights)."""
    from emoboost.upstreams import resolve_upstream
    from emoboost.upstreams.identity import local_dir

    spec = json.loads((run / "bundle.json").read_text())["upstream"]["spec"]
    return local_dir(resolve_upstream(str(spec))[0])


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# A small launcher between us and each measured process: Linux carries a process's peak RSS across
# fork + exec, so children forked from this (large) process would report at least our own RSS.
_LAUNCH = """
import json, os, subprocess, sys, time
cmd = json.loads(sys.argv[1])
t = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
out = p.stdout.read()
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024,
                  "code": os.waitstatus_to_exitcode(status), "out": out.decode(errors="replace")}))
"""


def run_child_ru(cmd: list[str], env: dict | None = None) -> dict:
    """One fresh process: wall, its own CPU seconds (user + sys) and peak RSS in MiB (wait4), output."""
    r = subprocess.run([sys.executable, "-c", _LAUNCH, json.dumps(cmd)], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"launcher failed: {r.stderr[-2000:]}")
    res = json.loads(r.stdout)
    if res["code"]:
        raise SystemExit(f"{' '.join(cmd)} failed ({res['code']}): {res['out'][-2000:]}")
    return res


def child_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update({v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------------
# a. warm predict
# ------------------------------------------------------------------------------------------------
def part_a(run: Path, clip: Path, reps: int) -> dict:
    from emoboost.inference.engine import Engine

    pred = Engine.load(run)
    ref = Reference(run, weights_dir(run))
    p_emo = np.array([pred.predict_file(clip).probabilities[c] for c in pred.classes])
    p_ref = ref.posteriors(clip)
    diff = float(np.abs(p_emo - p_ref).max())
    if diff > 1e-3:
        raise SystemExit(f"posteriors disagree: emoboost {p_emo} vs reference {p_ref}")
    for _ in range(3):
        pred.predict_file(clip)
        ref.posteriors(clip)
    l0 = load()
    te, tr = [], []
    for i in range(reps):
        pair = [("e", lambda: pred.predict_file(clip)), ("r", lambda: ref.posteriors(clip))]
        for name, fn in pair if i % 2 == 0 else pair[::-1]:
            (te if name == "e" else tr).append(timed(fn))
    ratios = [a / b for a, b in zip(te, tr)]
    return {"clip": str(clip), "clip_s": len(ref_wav(clip)) / 16000, "reps": reps, "emoboost_ms": 1e3 * med(te),
            "reference_ms": 1e3 * med(tr), "ratio": med(ratios), "posterior_max_abs_diff": diff,
            "encoder_layers_run": ref.encoder.depth, "fold_models": len(ref.models),
            "load_before": l0, "load_after": load()}


def ref_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="float32")[0]


# ------------------------------------------------------------------------------------------------
# b. extraction throughput
# ------------------------------------------------------------------------------------------------
def encoder_flops(cfg: dict, num_samples: int, layers: int) -> float:
    """Matmul FLOPs (2 per multiply-add) of Whisper's encoder on one clip's own frames."""
    d, f, m = cfg["d_model"], cfg["encoder_ffn_dim"], cfg["num_mel_bins"]
    t_mel = num_samples // 160
    t = (t_mel + 1) // 2
    conv = 2 * t_mel * m * 3 * d + 2 * t * d * 3 * d
    per_layer = 2 * t * d * d * 4 + 2 * 2 * t * t * d + 2 * 2 * t * d * f
    return float(conv + layers * per_layer)


def mm_rates(t: int, d: int, f: int, m: int, seconds: float = 0.3) -> dict[str, float]:
    """GFLOP/s of float32 torch.mm for the encoder's own shapes at ``t`` frames (best of 3 timings)."""
    shapes = {"proj [T,d]x[d,d]": (t, d, d), "fc1 [T,d]x[d,4d]": (t, d, f), "fc2 [T,4d]x[4d,d]": (t, f, d),
              "conv2 [T,3d]x[3d,d]": (t, 3 * d, d), "conv1 [2T,3m]x[3m,d]": (2 * t, 3 * m, d)}
    out = {}
    for name, (a, b, c) in shapes.items():
        x, y = torch.randn(a, b), torch.randn(b, c)

        def loop(k: int, x=x, y=y) -> None:
            for _ in range(k):
                torch.mm(x, y)

        loop(2)
        n = max(1, int(seconds / max(timed(lambda: loop(1)), 1e-6)))
        best = min(timed(lambda n=n: loop(n)) for _ in range(3))
        out[name] = 2 * a * b * c * n / best / 1e9
    return out


def part_b(n_files: int | None, store_pass: bool) -> dict:
    from emoboost.audio import load_audio
    from emoboost.data.corpora import scan_corpus
    from emoboost.features.encode import encode_clip
    from emoboost.features.extract import extract_to_store
    from emoboost.features.store import FeatureStore, Stats, StoreSpec
    from emoboost.upstreams import build_upstream
    from emoboost.utils import shared_root

    manifest, _ = scan_corpus("emodb", shared_root() / "data" / "emodb", {})
    utts = list(manifest)
    if n_files and n_files < len(utts):
        utts = [utts[i] for i in np.linspace(0, len(utts) - 1, n_files).round().astype(int)]
    up = build_upstream("whisper-base")
    enc = Encoder(up.directory)
    cfg = enc.config
    spec = StoreSpec(frames=None)
    wavs = [load_audio(u.path) for u in utts]
    samples = [len(w) for w in wavs]
    t_med = int(np.median([(n // 160 + 1) // 2 for n in samples]))
    peak0 = mm_rates(t_med, cfg["d_model"], cfg["encoder_ffn_dim"], cfg["num_mel_bins"])
    l0 = load()
    te, tr = 0.0, 0.0
    with torch.inference_mode():
        for i, w in enumerate(wavs):
            def emo(w=w):
                frames, seg = encode_clip(up, w, spec)
                Stats.of(frames, len(w), up.frame_rate, seg)

            def ref(w=w):
                hs = enc.hidden(enc.log_mel(w))
                [h.double().mean(0) for h in hs]

            if i % 2 == 0:
                te += timed(emo)
                tr += timed(ref)
            else:
                tr += timed(ref)
                te += timed(emo)
    peak1 = mm_rates(t_med, cfg["d_model"], cfg["encoder_ffn_dim"], cfg["num_mel_bins"])
    flops = sum(encoder_flops(cfg, n, cfg["encoder_layers"]) for n in samples)
    audio_s = sum(samples) / 16000
    peak = {k: (peak0[k] + peak1[k]) / 2 for k in peak0}
    best = max(peak.values())
    # The rate these shapes allow together: each shape's share of one clip's FLOPs (median length) at
    # its own measured rate (attention scores/mixing, ~4 % of the FLOPs, have no mm shape of their own).
    d, f, m, nl, t = cfg["d_model"], cfg["encoder_ffn_dim"], cfg["num_mel_bins"], cfg["encoder_layers"], t_med
    share = {"proj [T,d]x[d,d]": nl * 8 * t * d * d, "fc1 [T,d]x[d,4d]": nl * 2 * t * d * f,
             "fc2 [T,4d]x[4d,d]": nl * 2 * t * f * d, "conv2 [T,3d]x[3d,d]": 2 * t * 3 * d * d,
             "conv1 [2T,3m]x[3m,d]": 2 * 2 * t * 3 * m * d}
    attainable = sum(share.values()) / sum(v / peak[k] for k, v in share.items())
    res = {"files": len(utts), "audio_s": audio_s, "median_frames": t_med, "gflop": flops / 1e9,
           "emoboost_s": te, "reference_s": tr, "ratio": te / tr,
           "emoboost_gflops": flops / te / 1e9, "reference_gflops": flops / tr / 1e9,
           "mm_gflops": peak, "mm_peak_gflops": best, "emoboost_of_peak": flops / te / 1e9 / best,
           "reference_of_peak": flops / tr / 1e9 / best, "mm_shape_weighted_gflops": attainable,
           "emoboost_of_shape_weighted": flops / te / 1e9 / attainable, "emoboost_x_realtime": audio_s / te,
           "reference_x_realtime": audio_s / tr, "load_before": l0, "load_after": load()}
    if store_pass:
        from emoboost.data.manifest import Manifest

        with tempfile.TemporaryDirectory() as tmp:
            store = FeatureStore(tmp, up.fingerprint(), spec)
            rep = extract_to_store(Manifest(utts), store, up, progress=False)
        res["extract_to_store"] = {"wall_s": rep.wall_s, "encode_s": rep.encode_s, "x_realtime": audio_s / rep.wall_s,
                                   "gflops": flops / rep.wall_s / 1e9, "computed": rep.computed}
    return res


# ------------------------------------------------------------------------------------------------
# c. cold start, e. peak RSS
# ------------------------------------------------------------------------------------------------
def _label(out: str) -> str | None:
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].endswith(".wav"):
            return parts[1]
    return None


def import_seconds(cmd: list[str], env: dict) -> dict[str, float]:
    """CPU-side import time of one fresh ``python -X importtime`` run, by top-level package (self times)."""
    r = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, env=env)
    out: dict[str, float] = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        try:
            self_us = int(line.split("|")[0].split(":")[1])
        except ValueError:
            continue  # the header line
        root = line.split("|")[2].strip().split(".")[0]
        out[root] = out.get(root, 0.0) + self_us / 1e6
    top = dict(sorted(out.items(), key=lambda kv: -kv[1])[:6])
    top["total"] = sum(out.values())
    return {k: round(v, 2) for k, v in top.items()}


def part_c(run: Path, clip: Path, reps: int) -> dict:
    env = child_env()
    wdir = str(weights_dir(run))
    # The deployable path (not timed): a final model from the same CV run (`train --from-run`: one head on
    # all speakers, same layer), which `train` writes with its ONNX form; `predict` runs that form with
    # onnxruntime. Head cost is negligible next to the encoder's, so it is compared with the same
    # reference as the run dir's 10 fold heads.
    export_dir = Path(tempfile.mkdtemp(prefix="emoboost-speed-onnx-"))
    subprocess.run([*emoboost_exe(), "--threads", "1", "train", "--from-run", str(run), "--out",
                    str(export_dir / "final"), "--no-progress"], check=True, env=env, stdout=subprocess.DEVNULL)
    cmds = {
        "help": [*emoboost_exe(), "--help"],
        "bare": [sys.executable, "-c", "pass"],
        "predict": [*emoboost_exe(), "--threads", "1", "predict", str(run), str(clip)],
        "reference": [sys.executable, str(REPO / "benchmarks" / "minimal_predict.py"), "--run", str(run),
                      "--weights", wdir, str(clip)],
        "reference_tf": [sys.executable, str(REPO / "benchmarks" / "minimal_predict.py"), "--run", str(run),
                         "--weights", wdir, "--transformers", str(clip)],
        "predict_onnx": [*emoboost_exe(), "--threads", "1", "predict", str(export_dir / "final"), str(clip)],
    }
    res: dict = {k: [] for k in cmds}
    l0 = load()
    names = list(cmds)
    for i in range(reps):
        order = names[i % len(names):] + names[: i % len(names)]
        for k in order:
            res[k].append(run_child_ru(cmds[k], env))
    shutil.rmtree(export_dir)
    labels = {k: _label(res[k][0]["out"]) for k in ("predict", "reference", "reference_tf", "predict_onnx")}
    if len({v for v in labels.values() if v is not None}) > 1:
        raise SystemExit(f"predict and the reference disagree on {clip}: {labels}")
    summary = {k: {"wall_s": med([r["wall"] for r in v]), "cpu_s": med([r["cpu"] for r in v]),
                   "rss_mib": med([r["rss_mib"] for r in v])} for k, v in res.items()}
    pr = [a["cpu"] / b["cpu"] for a, b in zip(res["predict"], res["reference"])]
    pr_tf = [a["cpu"] / b["cpu"] for a, b in zip(res["predict"], res["reference_tf"])]
    pw = [a["wall"] / b["wall"] for a, b in zip(res["predict"], res["reference"])]
    po = [a["cpu"] / b["cpu"] for a, b in zip(res["predict_onnx"], res["reference"])]
    imports = {"predict": import_seconds(["-m", "emoboost.cli", "--threads", "1", "predict", str(run), str(clip)], env),
               "reference": import_seconds(cmds["reference"][1:], env),
               "reference_tf": import_seconds(cmds["reference_tf"][1:], env)}
    return {"reps": reps, **summary, "predict_cpu_ratio": med(pr), "predict_wall_ratio": med(pw),
            "predict_cpu_ratio_tf": med(pr_tf), "predict_onnx_cpu_ratio": med(po),
            "labels": labels, "imports_s": imports, "load_before": l0, "load_after": load()}


def part_e(run: Path, clip3: Path, reps: int) -> dict:
    import soundfile as sf

    from emoboost.utils import shared_root

    files = sorted((shared_root() / "data" / "emodb" / "wav").glob("*.wav"))
    parts, n = [], 0
    for f in files:  # consecutive EmoDB clips up to 10 s
        w = ref_wav(f)
        parts.append(w)
        n += len(w)
        if n >= 160_000:
            break
    env = child_env()
    wdir = str(weights_dir(run))
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip10 = Path(tmp) / "clip10s.wav"
        sf.write(str(clip10), np.concatenate(parts)[:160_000], 16000, subtype="PCM_16")
        for name, clip in (("3s", clip3), ("10s", clip10)):
            rows = {"predict": [], "reference": []}
            for _ in range(reps):
                rows["predict"].append(run_child_ru([*emoboost_exe(), "--threads", "1", "predict", str(run), str(clip)], env))
                rows["reference"].append(run_child_ru([sys.executable, str(REPO / "benchmarks" / "minimal_predict.py"),
                                                       "--run", str(run), "--weights", wdir, str(clip)], env))
            out[name] = {k: max(r["rss_mib"] for r in v) for k, v in rows.items()}
    return out


# ------------------------------------------------------------------------------------------------
# d. warm-cache run breakdown
# ------------------------------------------------------------------------------------------------
def part_d(cache: str, reps: int) -> dict:
    rows = []
    l0 = load()
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            cmd = [*emoboost_exe(), "--threads", "1", "run", "--corpus", "emodb", "--upstream", "whisper-base",
                   "--method", "logreg", "-p", "layer=3", "--out", str(out), "--no-progress"]
            r = run_child_ru(cmd, child_env(EMOBOOST_CACHE=cache))
            t = json.loads((out / "timings.json").read_text())
        fit = t.get("fit_s", 0.0) + t.get("predict_s", 0.0)
        parts = {"features_s": t.get("features_s", 0.0), "fit_predict_s": fit, "embed_s": t.get("embed_s", 0.0),
                 "report_s": t.get("report_s", 0.0), "tsne_s": t.get("tsne_s", 0.0)}
        parts["other_in_run_s"] = t["total_s"] - sum(parts.values())
        parts["start_and_exit_s"] = r["wall"] - t["total_s"]
        rows.append({"wall_s": r["wall"], "cpu_s": r["cpu"], "run_total_s": t["total_s"], **parts,
                     "fit_share_of_wall": fit / r["wall"], "fit_share_of_run": fit / t["total_s"]})
    best = sorted(rows, key=lambda x: x["wall_s"])[len(rows) // 2]
    if best["features_s"] > 60:
        print(f"warning: features took {best['features_s']:.0f} s: the store in {cache} was not warm", file=sys.stderr)
    # what the run imports before it can fit: emoboost's runner and scikit-learn (whose own start-up
    # imports scipy.stats and pandas)
    imports = import_seconds(["-c", "import emoboost.experiment.run, emoboost.methods.logreg, sklearn.linear_model"], child_env())
    return {"reps": reps, "cache": cache, "median_run": best, "all": rows, "imports_s": imports,
            "load_before": l0, "load_after": load()}


# ------------------------------------------------------------------------------------------------
# g. alternatives for extraction: padded batches, torch.compile
# ------------------------------------------------------------------------------------------------
def part_g(step: int, rounds: int) -> dict:
    from emoboost.audio import load_audio
    from emoboost.upstreams import build_upstream
    from emoboost.utils import shared_root

    files = sorted((shared_root() / "data" / "emodb" / "wav").glob("*.wav"))[::step]
    up = build_upstream("whisper-base").eval()
    wavs = [load_audio(f) for f in files]
    order = np.argsort([len(w) for w in wavs], kind="stable")

    def batches(seconds: float) -> list[list[int]]:
        out, cur, longest = [], [], 0
        for i in order:
            n = len(wavs[i])
            if cur and max(longest, n) * (len(cur) + 1) > seconds * 16000:
                out.append(cur)
                cur, longest = [], 0
            cur.append(int(i))
            longest = max(longest, n)
        return out + [cur]

    def one_by_one(fn) -> list[torch.Tensor]:
        return [fn(torch.from_numpy(w)[None], torch.tensor([len(w)]))[0][:, 0] for w in wavs]

    def batched(seconds: float) -> list[torch.Tensor]:
        res: list = [None] * len(wavs)
        for b in batches(seconds):
            x = torch.zeros(len(b), max(len(wavs[i]) for i in b))
            for j, i in enumerate(b):
                x[j, : len(wavs[i])] = torch.from_numpy(wavs[i])
            layers, lens = up(x, torch.tensor([len(wavs[i]) for i in b]))
            for j, i in enumerate(b):
                res[i] = layers[:, j, : int(lens[j])]
        return res

    def mel_encode(m: torch.Tensor, n: torch.Tensor):
        return up.encode_mel(m, n)

    mels = [torch.from_numpy(up.log_mel(w))[None] for w in wavs]
    l0 = load()
    with torch.inference_mode():
        t = time.perf_counter()
        compiled = torch.compile(mel_encode, dynamic=True)
        compiled(mels[0], torch.tensor([mels[0].shape[-1]]))
        compiled(mels[1], torch.tensor([mels[1].shape[-1]]))
        compile_s = time.perf_counter() - t
        ways = {"one clip at a time (the store)": lambda: one_by_one(up),
                "padded batches, ~10 s of audio": lambda: batched(10.0),
                "padded batches, ~20 s of audio": lambda: batched(20.0),
                "torch.compile, one clip at a time (mel given)": lambda: [
                    compiled(m, torch.tensor([m.shape[-1]]))[0][:, 0] for m in mels],
                "eager, one clip at a time (mel given)": lambda: [
                    up.encode_mel(m, torch.tensor([m.shape[-1]]))[0][:, 0] for m in mels]}
        cpu: dict[str, list[float]] = {k: [] for k in ways}
        for r in range(rounds):
            for k in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
                t = time.process_time()
                ways[k]()
                cpu[k].append(time.process_time() - t)
        alone = one_by_one(up)
        dev = {}
        for sec in (10.0, 20.0):
            got = batched(sec)
            dev[f"{sec:g}s"] = max(float((a - b).abs().max()) for a, b in zip(alone, got))
    base = med(cpu["one clip at a time (the store)"])
    eager_mel = med(cpu["eager, one clip at a time (mel given)"])
    return {"files": len(wavs), "audio_s": sum(len(w) for w in wavs) / 16000, "compile_s": compile_s,
            "cpu_s": {k: med(v) for k, v in cpu.items()},
            "ratio_to_store": {k: med(v) / base for k, v in cpu.items()},
            "compiled_to_eager": med(cpu["torch.compile, one clip at a time (mel given)"]) / eager_mel,
            "max_abs_dev_batched": dev, "rounds": rounds, "load_before": l0, "load_after": load()}


# ------------------------------------------------------------------------------------------------
# f. BLAS threads for scikit-learn
# ------------------------------------------------------------------------------------------------
def part_f(reps: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    n, d, c = 480, 512, 7  # one EmoDB training fold, pooled layer: 480 utterances × 512 dims, 7 classes
    y = rng.integers(0, c, n)
    x = rng.normal(size=(n, d)) + rng.normal(size=(c, d))[y] * 0.3

    def fit() -> None:
        LogisticRegression(C=1.0, max_iter=2000).fit(x, y)

    out = {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for cond in ("as_is", "busy"):
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(max(1, cores - 1))] if cond == "busy" else []
        try:
            time.sleep(0.5 if busy else 0)
            l0 = load()
            t: dict[int, list[float]] = {1: [], 2: []}
            for i in range(reps):
                for k in ((1, 2, 2, 1) if i % 2 == 0 else (2, 1, 1, 2)):
                    with threadpool_limits(limits=k, user_api="blas"):
                        t[k].append(timed(fit))
            out[cond] = {"1_thread_s": med(t[1]), "2_threads_s": med(t[2]), "ratio_2_to_1": med(t[2]) / med(t[1]),
                         "load": l0}
        finally:
            for p in busy:
                p.kill()
                p.wait()
    return out


# ------------------------------------------------------------------------------------------------
def table(r: dict) -> str:
    rows = ["| what | emoboost | reference (same work, minimal code) | ratio |", "|---|---|---|---|"]
    if "a" in r:
        a = r["a"]
        rows.append(f"| warm `Engine.predict_file`, {a['clip_s']:.1f} s clip, layer=3 logreg run "
                    f"({a['fold_models']} fold heads) | {a['emoboost_ms']:.0f} ms median | {a['reference_ms']:.0f} ms "
                    f"(log-mel + encoder layers 1-{a['encoder_layers_run']} + heads) | {a['ratio']:.2f}× "
                    f"(load {a['load_before']}) |")
    if "b" in r:
        b = r["b"]
        rows.append(f"| extraction, {b['files']} EmoDB files ({b['audio_s'] / 60:.1f} min), own frames, all layers | "
                    f"{b['emoboost_gflops']:.1f} GFLOP/s = {100 * b['emoboost_of_peak']:.0f} % of the "
                    f"{b['mm_peak_gflops']:.1f} GFLOP/s matmul peak ({100 * b['emoboost_of_shape_weighted']:.0f} % of "
                    f"{b['mm_shape_weighted_gflops']:.1f} GFLOP/s, the encoder's shapes weighted by their FLOPs), "
                    f"{b['emoboost_x_realtime']:.0f}× real time | "
                    f"{b['reference_gflops']:.1f} GFLOP/s ({100 * b['reference_of_peak']:.0f} %), "
                    f"{b['reference_x_realtime']:.0f}× real time | {b['ratio']:.2f}× (load {b['load_before']}) |")
        if "extract_to_store" in b:
            s = b["extract_to_store"]
            rows.append(f"| `extract_to_store` end to end (hash, read, encode, pool, write) | "
                        f"{s['x_realtime']:.0f}× real time, {s['gflops']:.1f} useful GFLOP/s | | |")
    if "c" in r:
        c = r["c"]
        rows.append(f"| cold `emoboost --help` | {c['help']['wall_s']:.2f} s wall, {c['help']['cpu_s']:.2f} CPU-s | "
                    f"bare python {c['bare']['wall_s']:.2f} s, {c['bare']['cpu_s']:.2f} CPU-s | "
                    f"{c['help']['cpu_s'] / c['bare']['cpu_s']:.1f}× CPU |")
        rows.append(f"| cold `emoboost predict RUN clip.wav` | {c['predict']['wall_s']:.2f} s wall, "
                    f"{c['predict']['cpu_s']:.2f} CPU-s | {c['reference']['wall_s']:.2f} s, "
                    f"{c['reference']['cpu_s']:.2f} CPU-s (benchmarks/minimal_predict.py) | "
                    f"{c['predict_cpu_ratio']:.2f}× CPU, {c['predict_wall_ratio']:.2f}× wall (load {c['load_before']}) |")
        if "reference_tf" in c:
            rows.append(f"| cold `emoboost predict RUN clip.wav` vs the same with transformers' WhisperEncoder | | "
                        f"{c['reference_tf']['wall_s']:.2f} s, {c['reference_tf']['cpu_s']:.2f} CPU-s "
                        f"(minimal_predict.py --transformers) | {c['predict_cpu_ratio_tf']:.2f}× CPU |")
        if "predict_onnx" in c:
            rows.append(f"| cold `emoboost predict MODEL clip.wav`, MODEL from `emoboost train` (its ONNX form: onnxruntime, no torch) | "
                        f"{c['predict_onnx']['wall_s']:.2f} s wall, {c['predict_onnx']['cpu_s']:.2f} CPU-s | "
                        f"{c['reference']['cpu_s']:.2f} CPU-s (plain-torch reference) | "
                        f"{c['predict_onnx_cpu_ratio']:.2f}× CPU |")
        im = c["imports_s"]
        rows.append("| of which imports (`-X importtime`, s by package) | " + ", ".join(
            f"{k} {v:.1f}" for k, v in im["predict"].items()) + " | " + ", ".join(
            f"{k} {v:.1f}" for k, v in im["reference"].items()) + " | |")
    if "e" in r:
        e = r["e"]
        rows.append(f"| peak RSS `predict`, 3 s / 10 s clip | {e['3s']['predict']:.0f} / {e['10s']['predict']:.0f} MiB | "
                    f"{e['3s']['reference']:.0f} / {e['10s']['reference']:.0f} MiB | "
                    f"+{e['10s']['predict'] - e['10s']['reference']:.0f} MiB |")
    if "d" in r:
        d = r["d"]["median_run"]
        w = d["wall_s"]
        rows.append(f"| warm-cache EmoDB `run --method logreg -p layer=3` ({w:.0f} s wall, {d['cpu_s']:.0f} CPU-s) | "
                    f"fitting + prediction {100 * d['fit_share_of_wall']:.0f} % of wall "
                    f"({100 * d['fit_share_of_run']:.0f} % of run_experiment); features {100 * d['features_s'] / w:.0f} %, "
                    f"t-SNE {100 * d['tsne_s'] / w:.0f} %, report plots {100 * d['report_s'] / w:.0f} %, "
                    f"other in run {100 * d['other_in_run_s'] / w:.0f} %, process start/exit "
                    f"{100 * d['start_and_exit_s'] / w:.0f} % | | |")
        rows.append("| of which the run's imports (`-X importtime`, s by package) | " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["d"]["imports_s"].items()) + " | | |")
    if "g" in r:
        g = r["g"]
        ratios = g["ratio_to_store"]
        rows.append(f"| extraction alternatives, {g['files']} EmoDB files ({g['audio_s']:.0f} s): CPU time against "
                    "one clip at a time | " + "; ".join(
                        f"{k} {ratios[k]:.2f}×" for k in ratios if not k.startswith(("one clip", "eager"))) +
                    f" (compiled against eager on the same mels: {g['compiled_to_eager']:.2f}×, after "
                    f"{g['compile_s']:.0f} s of compiling) | largest deviation of a batched clip from its run alone: "
                    + ", ".join(f"{k} {v:.1e}" for k, v in g["max_abs_dev_batched"].items()) + f" | load {g['load_before']} |")
    if "f" in r:
        f = r["f"]
        rows.append(f"| logreg fit (480 × 512, 7 classes), 2 vs 1 BLAS threads | {f['as_is']['ratio_2_to_1']:.2f}× the "
                    f"1-thread time (load {f['as_is']['load']}), {f['busy']['ratio_2_to_1']:.2f}× with a busy-loop "
                    f"process per extra core | | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/emodb-logreg3", help="run dir of a layer=3 logreg EmoDB run")
    ap.add_argument("--clip", default=None, help="3 s clip (default: the EmoDB file closest to 3 s)")
    ap.add_argument("--parts", default="a,b,c,d,e,f,g")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and 60 EmoDB files in part b")
    ap.add_argument("--files", type=int, default=None, help="part b: EmoDB files (default all; 60 with --quick)")
    ap.add_argument("--cache", default=os.environ.get("EMOBOOST_CACHE"), help="part d: the warm feature store")
    ap.add_argument("--json", default=None, help="also write all numbers here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    if not (run / "bundle.json").is_file():
        raise SystemExit(f"{run}: not a run directory (no bundle.json)")
    clip = Path(args.clip) if args.clip else clip_near(3.0)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    q = args.quick
    res: dict = {"machine": f"{platform.machine()} {os.cpu_count()} CPU, torch {torch.__version__}, 1 thread",
                 "load_start": load()}
    steps = {
        "a": lambda: part_a(run, clip, 10 if q else 30),
        "b": lambda: part_b(args.files or (60 if q else None), store_pass=True),
        "c": lambda: part_c(run, clip, 3 if q else 7),
        "d": lambda: part_d(args.cache or str(Path.home() / ".cache" / "emoboost"), 1 if q else 3),
        "e": lambda: part_e(run, clip, 1 if q else 2),
        "f": lambda: part_f(2 if q else 5),
        "g": lambda: part_g(16 if q else 8, 2 if q else 3),
    }
    for p in parts:
        if p not in steps:
            raise SystemExit(f"unknown part {p!r}; parts are {','.join(steps)}")
        t = time.perf_counter()
        print(f"part {p} ...", file=sys.stderr, flush=True)
        res[p] = steps[p]()
        print(f"part {p}: {time.perf_counter() - t:.0f} s  {json.dumps(res[p], default=str)[:600]}",
              file=sys.stderr, flush=True)
    res["load_end"] = load()
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    print(f"machine: {res['machine']}; load average (1/5/15 min) {res['load_start']} -> {res['load_end']}")
    print(table(res))


if __name__ == "__main__":
    if shutil.which("true") is None:  # pragma: no cover - POSIX only (wait4, getloadavg)
        raise SystemExit("benchmarks/speed.py needs a POSIX system")
    main()
