"""The hostile benchmark's cases beyond audio: models, flags and runs, the feature store, a long clip
(see ``benchmarks/hostile.py``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from hostile_lib import TIMEOUT, Proc, Sandbox, changed, judge, snapshot


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("cv", ".emoboost-*"))
    return dest


def _edit_json(path: Path, **changes: object) -> None:
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def model_cases(sb: Sandbox, paths: dict) -> None:
    from safetensors.numpy import load_file, save_file

    speech, model, onnx = paths["audio"]["speech"], paths["model"], paths["onnx"]
    bad = sb.root / "bad-models"
    nan_head = _copy(model, bad / "nan-weights")
    shutil.rmtree(nan_head / "onnx")
    w = load_file(str(nan_head / "model.safetensors"))
    save_file({k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in w.items()},
              str(nan_head / "model.safetensors"))
    for entry, cmd, p in (("CLI", f"emoboost predict {nan_head} {speech}",
                           sb.cli("predict", nan_head, speech, "--no-progress")),
                          ("API", f"emoboost.load({str(nan_head)!r}).predict({str(speech)!r})",
                           sb.py(API_ONE, nan_head, speech))):
        judge(sb, "NaN in the model's weights", entry, cmd, p, "refused", "non-finite probabilities")
    p = sb.py(SERVER_ONE, nan_head, speech)
    judge(sb, "NaN in the model's weights", "server", f"POST /predict file={speech.name} (model {nan_head})", p,
          "refused", "is not finite")
    broken = _copy(model, bad / "broken-bundle")
    (broken / "bundle.json").write_text((broken / "bundle.json").read_text()[:200])
    judge(sb, "a truncated bundle.json", "CLI", f"emoboost predict {broken} {speech}",
          sb.cli("predict", broken, speech, "--no-progress"), "refused", "bundle.json")
    nan_mel = _copy(onnx, bad / "nan-mel-filters")
    filters = np.load(nan_mel / "mel_filters.npy")
    filters[3, 5] = np.nan
    np.save(nan_mel / "mel_filters.npy", filters)
    judge(sb, "NaN in an ONNX export's mel filters", "CLI", f"emoboost predict {nan_mel} {speech}",
          sb.cli("predict", nan_mel, speech, "--no-progress"), "refused", "mel filterbank holds non-finite values")
    judge(sb, "NaN in an ONNX export's mel filters", "server", f"emoboost serve {nan_mel}",
          sb.cli("serve", nan_mel, "--port", "8765", timeout=60), "refused", "mel filterbank holds non-finite")
    p = sb.py(TRAIN_NAN_ONNX, paths["run"], sb.root / "models" / "onnx-form")
    judge(sb, "train: an ONNX form whose answers are NaN", "API", "train_final(RUN, OUT) with NaN mel filters in "
          "the export", p, "ok", "ONNX form: no (", shown=next((ln for ln in p.out.splitlines()
                                                                 if ln.startswith("ONNX form")), ""))
    for name, d, f, key in (("classes in bundle.json edited", model, "bundle.json", "classes"),
                            ("classes in the ONNX preprocessing.json edited", onnx, "preprocessing.json", "classes")):
        other = _copy(d, bad / ("classes-" + f.split(".")[0]))
        if f == "bundle.json":
            shutil.rmtree(other / "onnx")
        _edit_json(other / f, **{key: ["angry", "bored", "calm", "sad"]})
        judge(sb, name, "CLI", f"emoboost predict {other} {speech}", sb.cli("predict", other, speech, "--no-progress"),
              "refused", "class")
    fold = paths["run"] / "models" / "fold00_seed0"
    judge(sb, "a single fold model's folder", "CLI", f"emoboost predict {fold} {speech}",
          sb.cli("predict", fold, speech, "--no-progress"), "ok", "\t", shown="labelled (one saved fold model)")
    judge(sb, "emoboost.load(path, device='cuda') without a GPU", "API", "emoboost.load(MODEL, device='cuda')",
          sb.py(LOAD_CUDA, model), "refused" if not _has_cuda() else "ok", "CUDA" if not _has_cuda() else "loaded")
    edited = _copy(model, bad / "head-edited")
    shutil.rmtree(edited / "onnx")
    b = json.loads((edited / "bundle.json").read_text())
    b["head"]["bias"] = [100.0] + [0.0] * (len(b["head"]["bias"]) - 1)
    (edited / "bundle.json").write_text(json.dumps(b))
    out = sb.root / "exports" / "head-edited"
    p = sb.cli("export", edited, "--out", out)
    same = p.rc == 0 and _same_answer(sb, model, out, speech)
    judge(sb, "export of a bundle whose bundle.json head was edited", "CLI", f"emoboost export {edited} --out {out}",
          p, "ok", "wrote", reuse="" if same else "the export does not answer as the model's weights do",
          shown="exported; its answers equal the model's (the head is read from the weights)")
    judge(sb, "--threads 99999 with an ONNX model", "CLI", f"emoboost --threads 99999 predict {onnx} {speech}",
          sb.cli("--threads", "99999", "predict", onnx, speech, "--no-progress"), "warned", "usable CPU core")
    judge(sb, "--threads 0", "CLI", f"emoboost --threads 0 predict {model} {speech}",
          sb.cli("--threads", "0", "predict", model, speech), "refused", "--threads must be at least 1")
    judge(sb, "serve --port 70000", "server", f"emoboost serve {model} --port 70000",
          sb.cli("serve", model, "--port", "70000", timeout=60), "refused", "--port")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _same_answer(sb: Sandbox, model: Path, export: Path, wav: Path) -> bool:
    p = sb.py("import sys, json, emoboost\nprint(json.dumps([emoboost.load(m, backend=b).predict(sys.argv[3]).probabilities "
              "for m, b in ((sys.argv[1], 'torch'), (sys.argv[2], 'onnx'))]))", model, export, wav)
    if p.rc != 0:
        return False
    a, b = json.loads(p.out.splitlines()[-1])
    return all(abs(a[k] - b[k]) < 1e-3 for k in a)


API_ONE = """
import sys, emoboost
try:
    print(emoboost.load(sys.argv[1]).predict(sys.argv[2]).to_dict())
except (OSError, ValueError, LookupError, RuntimeError) as e:
    print(f"emoboost: error: {e}", file=sys.stderr); sys.exit(2)
"""

SERVER_ONE = """
import sys
from fastapi.testclient import TestClient
from emoboost.inference import serve
from emoboost.inference.engine import Engine
client = TestClient(serve.create_app(Engine.load(sys.argv[1])), raise_server_exceptions=False)
r = client.post("/predict", files={"file": (sys.argv[2].rsplit("/", 1)[-1], open(sys.argv[2], "rb").read(), "audio/wav")})
if r.status_code != 200:
    print(f"error: {r.status_code} {r.json()['detail']}", file=sys.stderr); sys.exit(1 if r.status_code < 500 else 3)
print(r.text)
"""

LOAD_CUDA = """
import sys, emoboost
try:
    emoboost.load(sys.argv[1], device="cuda"); print("loaded")
except (OSError, ValueError, LookupError, RuntimeError) as e:
    print(f"emoboost: error: {e}", file=sys.stderr); sys.exit(2)
"""

TRAIN_NAN_ONNX = """
import sys, numpy as np
from emoboost.inference import export
from emoboost.experiment.refit import train_final
real = export._write_encoder
def nan_filters(upstream, layers, classes, out, opset):
    pre = real(upstream, layers, classes, out, opset)
    f = np.load(out / "mel_filters.npy"); f[3, 5] = np.nan; np.save(out / "mel_filters.npy", f)
    return pre
export._write_encoder = nan_filters
b = train_final(sys.argv[1], sys.argv[2], progress=False)
print("ONNX form: " + b["onnx_form"])
"""


# ------------------------------------------------------------------------------------------------
# runs, flags, the store
# ------------------------------------------------------------------------------------------------
def run_args(paths: dict, out: Path, *extra: object, method: str = "logreg", layer: str = "1") -> list[object]:
    return ["run", "--corpus", "emodb", "--data-root", paths["corpus"], "--upstream", paths["encoder"], "--method",
            method, "-p", f"layer={layer}", "--out", out, "--no-progress", *extra]


def show_run(paths: dict, out: Path, *extra: object, **kw) -> str:
    args = [str(a) for a in run_args(paths, out, *extra, **kw)]
    return "emoboost " + " ".join(a if " " not in a else repr(a) for a in args)


def config_cases(sb: Sandbox, paths: dict) -> None:
    runs = sb.root / "runs"
    flags = [("--segment-hop 0", ["--segment-hop", "0"], "must be a positive number"),
             ("--segment-length 0", ["--segment-length", "0"], "must be a positive"),
             ("--segment-length -3", ["--segment-length", "-3"], "must be a positive"),
             ("--seeds 0 0", ["--seeds", "0", "0"], "seed 0 is given twice"),
             ("--folds 10 with 4 speakers (scikit-learn's wording before)",
              ["--protocol", "group-kfold", "--folds", "10", "--min-class-count", "1"], "--folds 10: group-kfold folds"),
             ("--folds 1", ["--protocol", "group-kfold", "--folds", "1"], "--folds 1: cross-validation needs")]
    for item, extra, want in flags:
        out = runs / "bad-flags"
        judge(sb, item, "CLI", show_run(paths, out, *extra, method="msemoboost"),
              sb.cli(*run_args(paths, out, *extra, method="msemoboost")), "refused", want,
              outside=[str(out)] if out.exists() else None)
    for extra, want in (([], "--num-cpus 64 per encoder actor"), (["--ray-address", "127.0.0.1:1"], "no Ray cluster")):
        extra = ["--num-cpus", "64"] if not extra else extra
        args = ["extract", "--corpus", "emodb", "--data-root", paths["corpus"], "--upstream", paths["encoder"],
                "--engine", "ray", *extra]
        judge(sb, f"extract --engine ray {' '.join(extra)}", "CLI", "emoboost " + " ".join(map(str, args)),
              sb.cli(*args, "--no-progress", timeout=120), "refused", want)
    import socket

    with socket.socket() as other:  # answers TCP, but is no Ray cluster: ray.init alone would retry for ever
        other.bind(("127.0.0.1", 0))
        other.listen()
        args = ["extract", "--corpus", "emodb", "--data-root", paths["corpus"], "--upstream", paths["encoder"],
                "--engine", "ray", "--ray-address", f"127.0.0.1:{other.getsockname()[1]}", "--ray-connect-timeout", "10"]
        judge(sb, "extract --ray-address at a port that is not Ray", "CLI", "emoboost " + " ".join(map(str, args)),
              sb.cli(*args, "--no-progress", timeout=120), "refused", "nothing answered as a Ray cluster")
    recipe = sb.root / "recipe.yaml"
    recipe.write_text("corpus: emodb\nmethod_params: {layer: 1\n")
    judge(sb, "a recipe that is not valid YAML", "CLI", f"emoboost run {recipe}", sb.cli("run", recipe), "refused",
          "recipe.yaml")
    judge(sb, "extract without the corpus here (no download)", "CLI", "emoboost extract --corpus iemocap",
          sb.cli("extract", "--corpus", "iemocap", "--no-progress"), "refused", "pass its folder with --data-root")
    # run directories: provenance, ownership, one writer, stale temp files
    base = runs / "logreg"
    p = sb.cli(*run_args(paths, base, "-p", "Cs=[0.1,1.0]"))
    summary = (base / "summary.md").read_text() if p.rc == 0 else ""
    c_line = next((ln for ln in summary.splitlines() if "logreg C" in ln), "")
    judge(sb, "logreg's C differs by fold", "CLI", show_run(paths, base, "-p", "Cs=[0.1,1.0]"), p, "ok",
          "report: " if c_line else "logreg C line missing", shown=f"summary.md: {c_line.strip()}")
    judge(sb, "rerun into the same --out with another layer", "CLI", show_run(paths, base, layer="2"),
          sb.cli(*run_args(paths, base, "-p", "Cs=[0.1,1.0]", layer="2")), "refused", "method_params.layer")
    foreign = runs / "my-notes"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    before = snapshot(foreign)
    p = sb.cli(*run_args(paths, foreign))
    judge(sb, "--out a folder with other files", "CLI", show_run(paths, foreign), p, "refused", "not empty",
          outside=changed(before, snapshot(foreign)))
    lock = subprocess.Popen([sys.executable, "-c", HOLD, str(base)], env=sb.env(), stdout=subprocess.PIPE, text=True)
    lock.stdout.readline()  # holds the lock now
    judge(sb, "a second process writing the same run directory", "CLI", show_run(paths, base, "-p", "Cs=[0.1,1.0]"),
          sb.cli(*run_args(paths, base, "-p", "Cs=[0.1,1.0]")), "refused", "pid")
    lock.kill()
    lock.wait()
    stale = base / "folds" / ".fold00_seed0.json.abc.tmp"
    stale.write_text("half")
    p = sb.cli(*run_args(paths, base, "-p", "Cs=[0.1,1.0]"))
    judge(sb, "a killed run's temp file in the run directory", "CLI", show_run(paths, base, "-p", "Cs=[0.1,1.0]"), p,
          "ok", "report: " if not stale.exists() else "temp file left",
          shown="resumed; the temp file removed, finished folds reused")
    # training that diverges, encoder weights that are NaN
    out = runs / "diverged"
    judge(sb, "a fold whose training diverges (its model answers NaN)", "API",
          "run_experiment(config) with a method whose fit leaves NaN weights",
          sb.py(DIVERGE, paths["corpus"], paths["encoder"], out), "refused", "fold 0 seed 0")
    nan_enc = sb.root / "nan-encoder"
    shutil.copytree(paths["encoder"], nan_enc)
    from safetensors.numpy import load_file, save_file

    w = load_file(str(nan_enc / "model.safetensors"))
    save_file({k: np.full_like(v, np.nan) if k.endswith("layer_norm.weight") else v for k, v in w.items()},
              str(nan_enc / "model.safetensors"), metadata={"format": "pt"})
    judge(sb, "NaN in the encoder's weights", "CLI", f"emoboost train --upstream {nan_enc} ...",
          sb.cli("train", "--corpus", "emodb", "--data-root", paths["corpus"], "--upstream", nan_enc, "--method",
                 "logreg", "-p", "layer=1", "--out", sb.root / "models" / "nan-encoder", "--no-progress"),
          "refused", "non-finite features")
    # manifests
    rows = [json.loads(x) for x in (base / "manifest.jsonl").read_text().splitlines()]
    rel = [os.path.relpath(r["path"], sb.root / "cwd") for r in rows]
    rows[0]["path"], rows[1]["path"], rows[2]["path"] = "./" + rel[0], rel[1].replace("/wav/", "/wav/../wav/"), \
        rel[2].replace("/wav/", "//wav//")
    man = sb.root / "odd.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "no path"}\n')
    out = runs / "manifest"
    p = sb.cli("run", "--manifest", man, "--upstream", paths["encoder"], "--method", "logreg", "-p", "layer=1",
               "--out", out, "--no-progress")
    skipped = json.loads((out / "skipped.json").read_text()) if p.rc == 0 else []
    judge(sb, "manifest rows ./x, a/../b, a//b and one without a path", "CLI",
          f"emoboost run --manifest {man} ...", p, "ok", "report: " if skipped else "nothing skipped",
          shown=f"finished; skipped.json: {skipped[0]['path']}: {skipped[0]['problem']}" if skipped else "")


DIVERGE = """
import sys, numpy as np
from emoboost.experiment import run as runner
real = runner.get_method
def diverging(name):
    klass = real(name)
    class Diverged(klass):
        def predict_proba(self, data):
            return np.full((len(data), len(self.classes)), np.nan)
    return Diverged
runner.get_method = diverging
cfg = runner.ExperimentConfig(corpus="emodb", data_root=sys.argv[1], upstream=sys.argv[2], method="logreg",
                              method_params={"layer": 1}, out_dir=sys.argv[3], progress=False)
try:
    runner.run_experiment(cfg)
except ValueError as e:
    print(f"emoboost: error: {e}", file=sys.stderr); sys.exit(2)
"""

HOLD = """
import sys, time
from emoboost.outdir import claim_dir
with claim_dir(sys.argv[1], "run"):
    print("holding", flush=True)
    time.sleep(120)
"""


def store_cases(sb: Sandbox, paths: dict) -> None:
    from emoboost.audio import content_hash

    corpus = paths["corpus"]
    ext = ["extract", "--corpus", "emodb", "--data-root", corpus, "--no-progress"]
    # encoder weights replaced in place: same size, same mtime, same inode
    enc = sb.root / "replaced-encoder"
    shutil.copytree(paths["encoder"], enc)
    first = sb.cli(*ext, "--upstream", enc, "--store", "pooled", "--report", sb.root / "replaced-1.json")
    w = enc / "model.safetensors"
    st = os.stat(w)
    time.sleep(0.05)
    from builders import save_tiny_whisper

    other = save_tiny_whisper(sb.root / "other-encoder", seed=1)
    with open(w, "r+b") as f:  # in place: the inode stays
        f.write((other / "model.safetensors").read_bytes())
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    same = os.stat(w)
    assert (same.st_size, same.st_mtime_ns, same.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    p = sb.cli(*ext, "--upstream", enc, "--store", "pooled", "--report", sb.root / "replaced-2.json")
    fps = [json.loads((sb.root / f"replaced-{i}.json").read_text())["fingerprint"] if q.rc == 0 else None
           for i, q in ((1, first), (2, p))]
    reuse = "" if None not in fps and fps[0] != fps[1] else "the old weights' fingerprint (and features) were reused"
    judge(sb, "encoder weights replaced (same size, mtime and inode)", "CLI",
          f"emoboost extract --corpus emodb --data-root {corpus} --upstream {enc} (twice)", p, "ok",
          "| computed ", reuse=reuse, shown="the second extraction sees new weights: a new fingerprint, new entries")
    # a truncated statistics entry, NaN inside a frames entry
    seg = ["-p", "pooling=segment", "--store", "frames"]
    out = sb.root / "runs" / "segment"
    base = sb.cli(*run_args(paths, out, *seg))
    victim = sorted((corpus / "wav").iterdir())[1]
    h = content_hash(victim)
    name = paths["encoder"].name
    stats = next(sb.cache.glob(f"sslstats__{name}-*/{h[:2]}/{h}.stats.npz"))
    stats.write_bytes(stats.read_bytes()[:300])
    p = sb.cli(*run_args(paths, sb.root / "runs" / "segment-2", *seg))
    judge(sb, "a truncated .stats.npz in the store", "CLI", show_run(paths, sb.root / "runs" / "segment-2", *seg), p,
          "warned" if base.rc == 0 else "ok", "is unreadable")
    frames = next(sb.cache.glob(f"sslframes__{name}-*/{h[:2]}/{h}.npy"))
    a = np.load(frames)
    a[:, 2, 3] = np.nan  # every layer: whichever the method reads
    np.save(frames, a)
    p = sb.cli(*run_args(paths, sb.root / "runs" / "segment-3", *seg))
    judge(sb, "NaN inside a frames .npy in the store", "CLI", show_run(paths, sb.root / "runs" / "segment-3", *seg), p,
          "refused", str(victim))
    p = sb.cli(*run_args(paths, sb.root / "runs" / "segment-4", *seg))
    judge(sb, "the same run again (the damaged entry recomputed)", "CLI",
          show_run(paths, sb.root / "runs" / "segment-4", *seg), p, "ok", "report: ",
          shown="finished; the entry removed by the failed run was recomputed")
    a = np.load(frames)
    a[:, 2, 3] = np.nan
    np.save(frames, a)
    p = sb.cli(*ext, "--upstream", paths["encoder"])
    judge(sb, "NaN inside a frames .npy, then emoboost extract", "CLI",
          f"emoboost extract --corpus emodb --data-root {corpus} --upstream ENCODER", p, "warned", "non-finite frames")
    # two extractions at once
    fresh = {"EMOBOOST_CACHE": str(sb.root / "cache-two")}
    args = [sys.executable, "-m", "emoboost.cli", *map(str, ext), "--upstream", str(paths["encoder"])]
    two = [subprocess.Popen(args, cwd=sb.root, env=sb.env(**fresh), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
    outs = [t.communicate(timeout=TIMEOUT) for t in two]
    done = [re.search(r"\| computed\s+\| (\d+) \|", o) for o, _ in outs]
    total = sum(int(m.group(1)) for m in done if m)
    n = len(list((corpus / "wav").iterdir()))
    p = Proc(max(t.returncode for t in two), outs[0][0] + outs[1][0], outs[0][1] + outs[1][1])
    judge(sb, "two extractions of one corpus at once", "CLI", "emoboost extract ... & emoboost extract ...", p, "ok",
          "| computed ", reuse="" if total == n else f"{total} entries computed for {n} clips",
          shown=f"each of the {n} entries computed once between them", detail=" + ".join(m.group(1) for m in done if m))
    full_disk(sb, paths, ext)


def full_disk(sb: Sandbox, paths: dict, ext: list) -> None:
    """A 200 KB tmpfs as the store (needs the right to mount; else the case says it was not run)."""
    mnt = sb.root / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True).returncode:
        sb.add("a full disk", "CLI", "emoboost extract ... --cache-dir FULL", "not run", None,
               "needs a small file system (mount -t tmpfs: run as root)")
        return
    try:
        p = sb.cli(*ext, "--upstream", paths["encoder"], "--cache-dir", mnt / "cache")
        judge(sb, "a full disk", "CLI", "emoboost extract ... --cache-dir FULL (200 KB)", p, "refused",
              "No space left on device")
        leftovers = [str(q) for q in mnt.rglob("*.tmp")]
        if leftovers:
            sb.cases[-1].outcome = "write outside target"
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def long_clip(sb: Sandbox, paths: dict) -> None:
    """A 1-hour clip (EmoDB clips and quiet gaps) in a corpus: extraction holds one encoder window at a time."""
    clips = sorted((paths["corpus"] / "wav").iterdir())
    parts, total, rng, k = [], 0, np.random.default_rng(0), 0
    while total < 3600 * 16000:
        x, _ = sf.read(str(clips[k % len(clips)]), dtype="float32")
        gap = (1e-4 * rng.standard_normal(int(rng.uniform(0.5, 8) * 16000))).astype(np.float32)
        parts += [x, gap]
        total += len(x) + len(gap)
        k += 1
    root = sb.root / "long" / "wav"
    root.mkdir(parents=True)
    for f in clips[:6]:
        shutil.copy(f, root / f.name)
    sf.write(str(root / "10b09Wa.wav"), np.concatenate(parts)[: 3600 * 16000], 16000)
    del parts
    p = sb.cli("extract", "--corpus", "emodb", "--data-root", root.parent, "--upstream", paths["encoder"],
               "--cache-dir", sb.root / "cache-long", "--no-progress", timeout=900)
    bound = 1500
    judge(sb, "a 1-hour clip in a corpus (frames store)", "CLI",
          f"emoboost extract --corpus emodb --data-root {root.parent} --upstream ENCODER", p, "ok",
          "| computed ", detail=f"peak RSS {p.rss_mb:.0f} MB")
    if sb.cases[-1].outcome == "ok":
        ok = p.rss_mb < bound
        sb.cases[-1].outcome = "ok" if ok else "unexpected"
        sb.cases[-1].message = f"peak RSS below {bound} MB" if ok else f"peak RSS {p.rss_mb:.0f} MB"


def speaker_cases(sb: Sandbox, paths: dict) -> None:
    """Speaker profiles given to a model that does not adapt, or that are not profiles; bad names and regexes."""
    speech, model = paths["audio"]["speech"], paths["model"]
    prof = sb.root / "profiles"
    judge(sb, "enrol with a model trained without adapt=", "CLI",
          f"emoboost enrol {model} --speaker ana {speech} --out {prof / 'ana.profile'}",
          sb.cli("enrol", model, "--speaker", "ana", speech, "--out", prof / "ana.profile"), "refused",
          "cannot adapt to a speaker")
    for name, given, want in (("a speaker profile that does not exist", prof / "missing.profile",
                               "no such speaker profile"),
                              ("an audio file given as a speaker profile", speech, "not a speaker profile")):
        judge(sb, name, "CLI", f"emoboost predict {model} {speech} --profile {given}",
              sb.cli("predict", model, speech, "--profile", given, "--no-progress"), "refused", want)
    judge(sb, "a speaker name with a path in it", "CLI", f"emoboost enrol {model} --speaker ../ana {speech} ...",
          sb.cli("enrol", model, "--speaker", "../ana", speech, "--out", prof / "x.profile"), "refused",
          "speaker name")
    judge(sb, "--speaker-regex that is not a regular expression", "CLI",
          f"emoboost predict {model} {speech} --speaker-regex '('",
          sb.cli("predict", model, speech, "--speaker-regex", "(", "--no-progress"), "refused",
          "not a regular expression")
