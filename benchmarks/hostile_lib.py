"""The hostile benchmark's machinery: a sandbox of child processes under timeouts, the judge of their
outcomes, the corpus, model and bad audio it builds, and the audio cases (see ``benchmarks/hostile.py``)."""

from __future__ import annotations

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


_LAUNCH = """
import json, os, signal, subprocess, sys
p = subprocess.Popen(json.loads(sys.argv[1]))
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[2], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:  # killed by a signal: die by the same one, so the caller sees what the command met
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""
"""Starts a command, waits for it and writes its peak RSS (KiB) to a file; exits as the command did."""


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
        its own peak RSS from the kernel (``os.wait4``: the high-water mark, nothing sampled).

        The command is started by a small launcher process (:data:`_LAUNCH`), never by this one: Linux carries
        the high-water RSS of the process that starts a child into the child's ``ru_maxrss``, and this process
        holds torch and the hour-long test clip."""
        cwd = self.root / "cwd"
        cwd.mkdir(exist_ok=True)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
                tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
            p = subprocess.Popen([sys.executable, "-c", _LAUNCH, json.dumps([str(a) for a in argv]), rss.name],
                                 cwd=cwd, env=self.env(**env), stdout=out, stderr=err, text=True,
                                 start_new_session=True)
            deadline, status = time.monotonic() + timeout, None
            while status is None:
                pid, st, _ = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    status = os.waitstatus_to_exitcode(st)
                elif time.monotonic() > deadline:
                    os.killpg(p.pid, 9)  # the launcher, the command and whatever it started (Ray workers)
                    os.wait4(p.pid, 0)
                    break
                else:
                    time.sleep(0.05)
            p.returncode = status if status is not None else -9  # reaped here: Popen must not wait again
            out.seek(0)
            err.seek(0)
            kib = rss.read().strip()
            return Proc(status, out.read(), err.read(), int(kib) / 1024 if kib else 0.0)

    def cli(self, *args: object, timeout: float = TIMEOUT, **env: str) -> Proc:
        return self.run([sys.executable, "-m", "emoboost.cli", *map(str, args)], timeout, **env)

    def py(self, code: str, *args: object, timeout: float = TIMEOUT) -> Proc:
        return self.run([sys.executable, "-c", code, *map(str, args)], timeout)

    def show(self, text: str) -> str:
        text = text.replace(str(self.root), "$TMP").replace(str(self.shared), "$EMOBOOST_SHARED")
        return re.sub(r"pid \d+", "pid $PID", re.sub(r"127\.0\.0\.1:\d{2,}", "127.0.0.1:$PORT", text))

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


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, files in os.walk(root):
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


def answer_outcome(sb: Sandbox, item: str, entry: str, command: str, rc: object, text: str, expect: str,
                   ok: bool) -> None:
    """API and server answers: refused (an exception / 4xx), warned, ok; anything else is a failure."""
    if rc in (0, 200) and NAN.search(text):
        outcome = "NaN"
    elif rc in (500, "internal") or (isinstance(rc, int) and rc >= 500 and rc != 503):
        outcome = "traceback"
    else:
        outcome = expect if ok else "unexpected"
    sb.add(item, entry, command, outcome, rc, text)


def _labelled(d: dict) -> str:
    return "labelled: no warning" if d.get("label") else '"silent": true, no label'


def _answer(d: dict, expect: str, want: str) -> tuple[str, bool]:
    """An API or server answer's text (its warnings, else labelled or silent) and whether it is what was expected."""
    text = "; ".join(d["warnings"]) if d["warnings"] else _labelled(d)
    return text, (expect == "warned" and want in text) or (expect == "ok" and not d["warnings"])


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
            answer_outcome(sb, name, "CLI", cmd, 0, _labelled(d) if ok else ans, "ok", bool(ok))
    lst = files["speech"].parent / "files.txt"
    lst.write_text(f"# my files\n{files['speech'].name}\ngone.wav\n")
    judge(sb, "a .txt list naming a missing file", "CLI", f"emoboost predict {model} {lst}",
          sb.cli("predict", model, lst, "--no-progress"), "refused", "gone.wav: file does not exist")
    if Path("/dev/zero").exists():
        judge(sb, "/dev/zero as audio", "CLI", f"emoboost predict {model} /dev/zero",
              sb.cli("predict", model, "/dev/zero", "--no-progress", timeout=60), "refused", "not a regular file")
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
            text, ok = _answer(r["answer"], expect, want)
        else:
            text = f"{r['rc']}: {r['error']}"
            ok = expect == "refused" and want in text and "\n" not in text
        answer_outcome(sb, name, "API", cmd, r["rc"], text, expect, ok)
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
                           f"answered as {body.get('path')!r}", "ok", ok)
            continue
        if r["rc"] == 200:
            text, ok = _answer(body, expect, want)
        else:
            text = f"{r['rc']} {body['detail']}"
            ok = expect == "refused" and 400 <= r["rc"] < 500 and want in text
        answer_outcome(sb, name, "server", cmd, r["rc"], text, expect, ok)
    if res:
        h = json.dumps(res["health"]["body"])
        leak = str(sb.root) in h or "coef" in h
        answer_outcome(sb, "GET /health", "server", "GET /health", 200,
                       "status, model kind, classes, limits, counts; no path, no weights" if not leak else h,
                       "ok", not leak)
        a = res["admission"]
        answer_outcome(sb, "a request beyond --max-concurrent 1 --max-queue 0", "server", "POST /predict (2 at once)",
                       a["rc"], f"{a['rc']} {a['body'].get('detail')} (Retry-After: {a['retry_after']})", "refused",
                       a["rc"] == 503 and bool(a["retry_after"]))
