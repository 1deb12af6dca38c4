"""Hostile inputs, models and configurations through every entry point: one line, never a traceback.

Builds, in a temporary folder, a small EmoDB corpus (24 clips of 4 speakers from $EMOBOOST_SHARED), a tiny
random Whisper encoder and a final logreg model (`emoboost train`) with its ONNX form, then the bad
things users meet: broken, empty, truncated, silent, NaN, too loud, wrongly sampled, DC-shifted,
clipped and noise-only audio; NaN weights, NaN mel filters, edited class lists; replaced encoder weights;
damaged store entries; odd manifest rows; impossible flags and Ray settings; a full disk; two extractions
at once; an hour-long clip. Each case runs through the command line (`python -m emoboost.cli`), the
Python API (`emoboost.load`) or the HTTP server (FastAPI's TestClient on `create_app`, or `emoboost
serve`), always in a child process under a timeout, and is judged:

* failures: a traceback (or an internal error), a hang (the timeout), a NaN in an answer, a silent reuse
  (stale features or results served), a write outside the command's own target;
* otherwise the outcome: refused (non-zero exit or 4xx, one line naming the file or flag), warned
  (answered, with warning lines), ok (handled: skipped and listed, recomputed, clamped, ...).

    python benchmarks/hostile.py                                   # the table; exit 1 on any failure
    python benchmarks/hostile.py --write-doc docs/reliability.md   # also (re)write the document

Messages are shown as a user sees them, with the temporary folder written as `$TMP` and the shared
folder as `$EMOBOOST_SHARED`, so the document does not change from one run to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from emoboost.utils import shared_root  # noqa: E402

TIMEOUT = 240
FAILURES = ("traceback", "hang", "NaN", "silent reuse", "write outside target", "unexpected")


@dataclass
class Case:
    item: str  # what is hostile
    entry: str  # CLI, API or server
    command: str  # what the user runs (paths as $TMP/...)
    outcome: str = ""
    rc: int | str | None = None
    message: str = ""
    detail: str = ""  # console only (numbers that vary between runs)


@dataclass
class Proc:
    rc: int | None
    out: str
    err: str
    rss_mb: float = 0.0

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Sandbox:
    root: Path
    shared: Path
    cases: list[Case] = field(default_factory=list)

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOBOOST_", "OMP_", "RAY_"))}
        env.update(EMOBOOST_CACHE=str(self.cache), EMOBOOST_SHARED=str(self.shared),
                   PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]), PYTHONWARNINGS="ignore")
        env.update(extra)
        return env

    def run(self, argv: list[str], timeout: float = TIMEOUT, **env: str) -> Proc:
        """A child process in ``root/cwd`` under ``timeout`` (then it and what it started are killed), with
        its own peak RSS from the kernel (``os.wait4``: the high-water mark, nothing sampled)."""
        cwd = self.root / "cwd"
        cwd.mkdir(exist_ok=True)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen(argv, cwd=cwd, env=self.env(**env), stdout=out, stderr=err, text=True,
                                 start_new_session=True)
            deadline, status, usage = time.monotonic() + timeout, None, None
            while status is None:
                pid, st, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    status, usage = os.waitstatus_to_exitcode(st), ru
                elif time.monotonic() > deadline:
                    os.killpg(p.pid, 9)  # the child and whatever it started (Ray workers)
                    os.wait4(p.pid, 0)
                    break
                else:
                    time.sleep(0.05)
            p.returncode = status if status is not None else -9  # reaped here: Popen must not wait again
            out.seek(0)
            err.seek(0)
            return Proc(status, out.read(), err.read(), usage.ru_maxrss / 1024 if usage else 0.0)

    def cli(self, *args: object, timeout: float = TIMEOUT, **env: str) -> Proc:
        return self.run([sys.executable, "-m", "emoboost.cli", *map(str, args)], timeout, **env)

    def py(self, code: str, *args: object, timeout: float = TIMEOUT) -> Proc:
        return self.run([sys.executable, "-c", code, *map(str, args)], timeout)

    def show(self, text: str) -> str:
        text = text.replace(str(self.root), "$TMP").replace(str(self.shared), "$EMOBOOST_SHARED")
        return re.sub(r"pid \d+", "pid $PID", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", text))

    def add(self, item: str, entry: str, command: str, outcome: str, rc: object, message: str, detail: str = "") -> None:
        self.cases.append(Case(item, entry, self.show(command), outcome, rc, self.show(message).strip(), detail))
        c = self.cases[-1]
        print(f"{c.outcome:>12}  {c.entry:6}  {c.item}: {c.message[:150]}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# judging
# ------------------------------------------------------------------------------------------------
NAN = re.compile(r"[=:]\s*-?(?:nan|NaN|inf|Infinity)\b")  # a non-finite number in an answer (JSON or text)


def lines(text: str, prefix: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def judge(sb: Sandbox, item: str, entry: str, command: str, p: Proc, expect: str, want: str = "",
          outside: list[str] | None = None, reuse: str = "", detail: str = "", shown: str = "") -> None:
    """Classify one child process's outcome against what the case expects (refused / warned / ok)."""
    errors = lines(p.err, "emoboost: error:") + lines(p.err, "error:")
    warnings = [ln.split(": ", 1)[1] if ln.startswith("WARNING ") else ln.removeprefix("warning: ")
                for ln in p.err.splitlines() if ln.startswith(("warning:", "WARNING "))]
    if p.rc is None:
        outcome, message = "hang", f"no answer within the timeout; last output: {p.text.strip()[-200:]}"
    elif "Traceback (most recent call last)" in p.text or "internal error" in p.text:
        outcome, message = "traceback", (errors or [p.text.strip().splitlines()[-1]])[-1]
    elif NAN.search(p.out):
        outcome, message = "NaN", next(ln for ln in p.out.splitlines() if NAN.search(ln))
    elif outside:
        outcome, message = "write outside target", ", ".join(outside[:3])
    elif reuse:
        outcome, message = "silent reuse", reuse
    elif expect == "refused":
        ok = p.rc != 0 and len(errors) >= 1 and want in errors[0]
        outcome, message = ("refused" if ok else "unexpected"), (errors[0] if errors else p.text.strip()[-300:])
    elif expect == "warned":
        ok = p.rc == 0 and any(want in w for w in warnings)
        outcome, message = ("warned" if ok else "unexpected"), (next((w for w in warnings if want in w), "")
                                                                  or p.text.strip()[-300:])
    else:
        ok = p.rc == 0 and want in p.text
        outcome, message = ("ok" if ok else "unexpected"), ((shown or want) if ok else p.text.strip()[-300:])
    sb.add(item, entry, command, outcome, p.rc, message, detail)


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if any(Path(dirpath).is_relative_to(s) for s in skip):
            dirs[:] = []
            continue
        for f in files:
            p = Path(dirpath) / f
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


# ------------------------------------------------------------------------------------------------
# building the sandbox: corpus, encoder, model, bad files
# ------------------------------------------------------------------------------------------------
SPEAKERS = ("03", "08", "09", "10")
EMOTIONS = ("W", "N", "T")


def build(sb: Sandbox) -> dict[str, Path]:
    from builders import save_tiny_whisper

    wav = sb.root / "emodb" / "wav"
    wav.mkdir(parents=True)
    src = sb.shared / "data" / "emodb" / "wav"
    for spk in SPEAKERS:
        for emo in EMOTIONS:
            for f in sorted(src.glob(f"{spk}*{emo}?.wav"))[:2]:
                shutil.copy(f, wav / f.name)
    enc = save_tiny_whisper(sb.root / "tiny-whisper")
    paths = {"corpus": sb.root / "emodb", "encoder": enc, "model": sb.root / "models" / "final"}
    p = sb.cli("train", "--corpus", "emodb", "--data-root", paths["corpus"], "--upstream", enc, "--method", "logreg",
               "-p", "layer=1", "-p", "Cs=[0.1,1.0]", "--out", paths["model"], "--no-progress")
    if p.rc != 0:
        raise SystemExit(f"building the model failed:\n{p.text}")
    paths["onnx"] = paths["model"] / "onnx"
    paths["run"] = paths["model"] / "cv"
    paths["audio"] = audio_files(sb.root / "audio", sorted(wav.iterdir())[0])
    return paths


def audio_files(d: Path, speech: Path) -> dict[str, Path]:
    d.mkdir()
    x, sr = sf.read(str(speech), dtype="float32")
    rng = np.random.default_rng(0)
    f: dict[str, Path] = {"speech": d / "speech.wav"}
    shutil.copy(speech, f["speech"])
    f["missing"] = d / "missing.wav"
    f["empty"] = d / "empty.wav"
    f["empty"].write_bytes(b"")
    f["not audio"] = d / "notes.wav"
    f["not audio"].write_text("these are my notes, not audio\n")
    data = f["speech"].read_bytes()
    f["truncated"] = d / "truncated.wav"
    f["truncated"].write_bytes(data[: len(data) // 3])
    f["folder"] = d / "folder.wav"
    f["folder"].mkdir()
    f["FIFO"] = d / "pipe.wav"
    os.mkfifo(f["FIFO"])
    f["too short"] = d / "short.wav"
    sf.write(str(f["too short"]), x[: int(0.1 * sr)], sr)
    f["digital silence"] = d / "silence.wav"
    sf.write(str(f["digital silence"]), np.zeros(2 * sr, np.float32), sr)
    f["NaN samples"] = d / "nan.wav"
    y = x.copy()
    y[100] = np.nan
    sf.write(str(f["NaN samples"]), y, sr, subtype="FLOAT")
    f["peak 1e6 x full scale"] = d / "loud.wav"
    sf.write(str(f["peak 1e6 x full scale"]), x / np.abs(x).max() * 1e6, sr, subtype="FLOAT")
    f["sample rate 1 Hz"] = d / "rate1hz.wav"
    sf.write(str(f["sample rate 1 Hz"]), x[:600], 1, subtype="PCM_16")
    f["DC offset"] = d / "dc.wav"
    sf.write(str(f["DC offset"]), x * 0.5 + 0.4, sr, subtype="FLOAT")
    f["clipped"] = d / "clipped.wav"
    sf.write(str(f["clipped"]), np.clip(x / np.abs(x).max() * 6, -1, 1), sr)
    f["white noise"] = d / "noise.wav"
    sf.write(str(f["white noise"]), (0.2 * rng.standard_normal(3 * sr)).astype(np.float32), sr)
    return f


# expected outcome per audio file: (kind, text the message must hold)
AUDIO = {
    "speech": ("ok", ""), "missing": ("refused", "file does not exist"), "empty": ("refused", "empty"),
    "not audio": ("refused", "audio"), "truncated": ("refused", "truncated"),
    "folder": ("refused", "folder"), "FIFO": ("refused", "is not a regular file"),
    "too short": ("refused", "too short"), "digital silence": ("ok", '"silent": true'),
    "NaN samples": ("refused", "NaN"), "peak 1e6 x full scale": ("refused", "amplitude out of range"),
    "sample rate 1 Hz": ("refused", "sample rate 1 Hz"), "DC offset": ("warned", "heavy DC offset"),
    "clipped": ("warned", "clipped"), "white noise": ("warned", "no speech-like content"),
}

API = """
import json, sys, emoboost
m = emoboost.load(sys.argv[1])
out = {}
for name, path in json.loads(sys.argv[2]).items():
    try:
        p = m.predict(path)
        out[name] = {"rc": 0, "answer": p.to_dict()}
    except (OSError, ValueError, LookupError, RuntimeError) as e:
        out[name] = {"rc": type(e).__name__, "error": str(e)}
print(json.dumps(out))
"""

SERVER = """
import json, sys, threading, time
from fastapi.testclient import TestClient
from emoboost.inference import serve
from emoboost.inference.engine import Engine
engine = Engine.load(sys.argv[1])
client = TestClient(serve.create_app(engine), raise_server_exceptions=False)
out = {}
for name, path in json.loads(sys.argv[2]).items():
    upload = sys.argv[3] if name == "upload name" else path.rsplit("/", 1)[-1]
    r = client.post("/predict", files={"file": (upload, open(path, "rb").read(), "application/octet-stream")})
    out[name] = {"rc": r.status_code, "body": r.json()}
h = client.get("/health").json()
out["health"] = {"rc": 200, "body": h}
class Slow:  # the real engine, holding its slot until released: fills the server deterministically
    def __init__(self, e): self.e, self.bundle, self.classes, self.inside, self.go = e, e.bundle, e.classes, threading.Semaphore(0), threading.Event()
    def predict_wav(self, *a, **k):
        self.inside.release(); self.go.wait(60); return self.e.predict_wav(*a, **k)
slow = Slow(engine)
busy = TestClient(serve.create_app(slow, max_concurrent=1, max_queue=0), raise_server_exceptions=False)
speech = open(json.loads(sys.argv[2])["speech"], "rb").read()
t = threading.Thread(target=lambda: busy.post("/predict", files={"file": ("first.wav", speech, "audio/wav")}))
t.start(); slow.inside.acquire(timeout=60)
r = busy.post("/predict", files={"file": ("second.wav", speech, "audio/wav")})
slow.go.set(); t.join(60)
out["admission"] = {"rc": r.status_code, "body": r.json(), "retry_after": r.headers.get("Retry-After")}
print(json.dumps(out))
"""


def answer_outcome(sb: Sandbox, item: str, entry: str, command: str, rc: object, text: str, expect: str, want: str,
                   ok: bool) -> None:
    """API and server answers: refused (an exception / 4xx), warned, ok; anything else is a failure."""
    if rc in (0, 200) and NAN.search(text):
        outcome = "NaN"
    elif rc in (500, "internal") or (isinstance(rc, int) and rc >= 500 and rc != 503):
        outcome = "traceback"
    else:
        outcome = expect if ok else "unexpected"
    sb.add(item, entry, command, outcome, rc, text)


def audio_cases(sb: Sandbox, paths: dict) -> None:
    files, model = paths["audio"], paths["model"]
    p = sb.cli("predict", model, *files.values(), "--format", "json", "--no-progress")
    answers = {Path(d["path"]).name: d for d in json.loads(p.out or "[]")} if p.rc is not None else {}
    for name, f in files.items():
        expect, want = AUDIO[name]
        cmd = f"emoboost predict {model} {f}"
        mine = [ln for ln in p.err.splitlines() if f"{f}:" in ln]
        if p.rc is None or "Traceback" in p.text:
            judge(sb, name, "CLI", cmd, p, expect, want)
            continue
        ans = json.dumps(answers.get(f.name, {}))
        if expect == "refused":
            ok = len(mine) == 1 and mine[0].startswith("error:") and want in mine[0]
            sb.add(name, "CLI", cmd, "refused" if ok else "unexpected", p.rc, mine[0] if mine else ans)
        elif expect == "warned":
            ok = len(mine) == 1 and mine[0].startswith("warning:") and want in mine[0] and answers.get(f.name, {}).get("label")
            sb.add(name, "CLI", cmd, "warned" if ok else "unexpected", 0, mine[0] if mine else ans)
        else:
            d = answers.get(f.name, {})
            ok = not mine and (d.get("label") or d.get("silent"))
            msg = "labelled: no warning" if d.get("label") else '"silent": true, no label'
            answer_outcome(sb, name, "CLI", cmd, 0, msg if ok else ans, "ok", want, bool(ok))
    api_files = {k: str(v) for k, v in files.items() if k != "FIFO"}
    p = sb.py(API, model, json.dumps(api_files))
    res = json.loads(p.out.splitlines()[-1]) if p.rc == 0 and p.out.strip() else {}
    for name in api_files:
        expect, want = AUDIO[name]
        cmd = f"emoboost.load({str(model)!r}).predict({api_files[name]!r})"
        r = res.get(name)
        if r is None:
            judge(sb, name, "API", cmd, p, expect, want)
            continue
        if r["rc"] == 0:
            a = r["answer"]
            text = "; ".join(a["warnings"]) if a["warnings"] else ("labelled: no warning" if a["label"] else
                                                                   '"silent": true, no label')
            ok = (expect == "warned" and want in text) or (expect == "ok" and not a["warnings"])
        else:
            text = f"{r['rc']}: {r['error']}"
            ok = expect == "refused" and want in text and "\n" not in text
        answer_outcome(sb, name, "API", cmd, r["rc"], text, expect, want, ok)
    srv_files = {k: str(v) for k, v in files.items() if k not in ("missing", "folder", "FIFO")}
    srv_files["upload name"] = srv_files["speech"]
    p = sb.py(SERVER, model, json.dumps(srv_files), "../../etc/passwd\x1b[31m.wav")
    res = json.loads(p.out.splitlines()[-1]) if p.rc == 0 and p.out.strip() else {}
    for name in srv_files:
        expect, want = AUDIO.get(name, ("ok", ""))
        cmd = f"POST /predict file={Path(srv_files[name]).name}"
        r = res.get(name)
        if r is None:
            judge(sb, name, "server", cmd, p, expect, want)
            continue
        body = r["body"]
        if name == "upload name":
            cmd = "POST /predict file='../../etc/passwd<ESC>[31m.wav'"
            ok = r["rc"] == 200 and body["path"] == "passwd[31m.wav"
            answer_outcome(sb, "upload name with a path and an escape", "server", cmd, r["rc"],
                           f"answered as {body.get('path')!r}", "ok", "", ok)
            continue
        if r["rc"] == 200:
            text = "; ".join(body["warnings"]) if body["warnings"] else ("labelled: no warning" if body["label"] else
                                                                         '"silent": true, no label')
            ok = (expect == "warned" and want in text) or (expect == "ok" and not body["warnings"])
        else:
            text = f"{r['rc']} {body['detail']}"
            ok = expect == "refused" and 400 <= r["rc"] < 500 and want in text
        answer_outcome(sb, name, "server", cmd, r["rc"], text, expect, want, ok)
    if res:
        h = json.dumps(res["health"]["body"])
        leak = str(sb.root) in h or "coef" in h
        answer_outcome(sb, "GET /health", "server", "GET /health", 200,
                       "status, model kind, classes, limits, counts; no path, no weights" if not leak else h,
                       "ok", "", not leak)
        a = res["admission"]
        answer_outcome(sb, "a request beyond --max-concurrent 1 --max-queue 0", "server", "POST /predict (2 at once)",
                       a["rc"], f"{a['rc']} {a['body'].get('detail')} (Retry-After: {a['retry_after']})", "refused",
                       "", a["rc"] == 503 and bool(a["retry_after"]))


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
    for entry, p in (("CLI", sb.cli("predict", nan_head, speech, "--backend", "torch", "--no-progress")),
                     ("API", sb.py(API_ONE, nan_head, speech))):
        judge(sb, "NaN in the model's weights", entry, f"emoboost predict {nan_head} {speech}", p, "refused",
              "non-finite probabilities")
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
    before = snapshot(foreign, ())
    p = sb.cli(*run_args(paths, foreign))
    judge(sb, "--out a folder with other files", "CLI", show_run(paths, foreign), p, "refused", "not empty",
          outside=changed(before, snapshot(foreign, ())))
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


# ------------------------------------------------------------------------------------------------
# the table and the document
# ------------------------------------------------------------------------------------------------
def table(cases: list[Case], detail: bool = False) -> str:
    head = "| # | case | entry point | command | outcome | rc | what the user sees |" + (" detail |" if detail else "")
    rows = [head, "|" + "---|" * (7 + detail)]
    for i, c in enumerate(cases, 1):
        cells = [str(i), c.item, c.entry, f"`{c.command}`", c.outcome, "" if c.rc is None else str(c.rc),
                 f"`{c.message}`" if c.message else ""] + ([c.detail] if detail else [])
        rows.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    return "\n".join(rows)


DOC_HEAD = """# Reliability: what emoboost does with hostile input

Generated by `python benchmarks/hostile.py --write-doc docs/reliability.md` (do not edit by hand). The
script builds a 24-clip EmoDB corpus (4 speakers, anger / neutral / sadness, from `$EMOBOOST_SHARED`), a
tiny random Whisper encoder and a final logreg model (`emoboost train`, with its ONNX form) in a temporary
folder (`$TMP` below), then runs each case through the command line, the Python API (`emoboost.load`)
or the HTTP server (the app `emoboost serve` runs, through FastAPI's test client; `emoboost serve` itself
for the flag checks), each in its own process under a timeout.

A case fails, and the script exits 1, when it ends in a traceback or an internal error, a hang, a NaN in
an answer, a silent reuse of stale features or results, or a write outside the command's own target.
Otherwise its outcome is one of:

- **refused**: a non-zero exit (or a 4xx answer) with one line naming the file or the flag and the problem;
  `predict` goes on with the other files and exits 1;
- **warned**: answered as usual (labels and numbers unchanged), with one warning line naming the file;
- **ok**: handled: skipped and listed, recomputed, or answered as expected.

Audio warnings use these rules (`emoboost.audio.LevelChecks`): a heavy DC offset is a mean of at least
10 % of the peak; clipping is at least 0.2 % of the samples at 98 % of full scale or above; no
speech-like content is a median spectral flatness of at least 0.3 over the loudest half of the
512-sample frames.

"""


def write_doc(path: Path, cases: list[Case]) -> None:
    from emoboost.utils import atomic_write_text

    failed = [c for c in cases if c.outcome in FAILURES]
    tail = f"\n\n{len(cases)} cases; {len(failed)} failed.\n"
    atomic_write_text(path, DOC_HEAD + table(cases) + tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-doc", metavar="MD", help="also write the cases as a Markdown document (docs/reliability.md)")
    ap.add_argument("--keep", metavar="DIR", help="build in this new folder and keep it (default: a temporary folder)")
    ap.add_argument("--only", nargs="+", choices=["audio", "models", "config", "store", "long"],
                    help="run only these groups of cases")
    args = ap.parse_args(argv)
    shared = shared_root()
    if not (shared / "data" / "emodb" / "wav").is_dir():
        print(f"EmoDB not found under {shared}/data/emodb/wav (set EMOBOOST_SHARED)", file=sys.stderr)
        return 2
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="emoboost-hostile-"))
    root.mkdir(parents=True, exist_ok=True)
    sb = Sandbox(root.resolve(), shared.resolve())
    t0 = time.perf_counter()
    try:
        paths = build(sb)
        groups = {"audio": audio_cases, "models": model_cases, "config": config_cases, "store": store_cases,
                  "long": long_clip}
        for name, fn in groups.items():
            if not args.only or name in args.only:
                fn(sb, paths)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(sb.cases, detail=True))
    failed = [c for c in sb.cases if c.outcome in FAILURES]
    print(f"\n{len(sb.cases)} cases, {len(failed)} failed, {time.perf_counter() - t0:.0f} s")
    if args.write_doc:
        write_doc(Path(args.write_doc), sb.cases)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
