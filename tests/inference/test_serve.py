"""The HTTP server: endpoints, bad uploads, temp-file hygiene, a real model, and the page in headless Chromium."""

from __future__ import annotations

import argparse
import math
import re
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("multipart", reason="the serve extra (python-multipart) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from emoboost.audio import load_audio  # noqa: E402
from emoboost.inference import serve  # noqa: E402
from emoboost.inference.engine import MIN_DURATION, Prediction, silent_prediction, too_short  # noqa: E402

SR = 16000


class LoudnessPredictor:
    """Labels audio by its level: P(loud) = sigmoid((RMS dBFS + 30) / 3), per 1 s window, duration-weighted."""

    classes = ["quiet", "loud"]
    bundle = {"classes": classes, "method": "loudness", "features": ["rms"], "segment_length": 1.0,
              "models": ["fold0_seed0", "fold1_seed0"]}

    def __init__(self):
        self.calls = 0

    def window_proba(self, x: np.ndarray) -> np.ndarray:
        db = 10 * math.log10(float(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12)
        p = 1 / (1 + math.exp(-(db + 30) / 3))
        return np.array([1 - p, p])

    def predict_wav(self, wav: np.ndarray, path: str = "<array>", timeline: bool = False, vad=None) -> Prediction:
        # the real engine's rules: too short is refused, digital silence is flagged and unlabelled
        if len(wav) < MIN_DURATION * SR:
            raise too_short(path, len(wav) / SR)
        if not np.any(wav):
            return silent_prediction(path, len(wav) / SR)
        self.calls += 1
        starts = list(range(0, len(wav), SR))
        probs = [self.window_proba(wav[s : s + SR]) for s in starts]
        weights = np.array([min(SR, len(wav) - s) for s in starts], float)
        proba = (np.stack(probs) * weights[:, None]).sum(0) / weights.sum()
        tl = [{"start": s / SR, "end": min(s + SR, len(wav)) / SR, "label": self.classes[int(p.argmax())],
               "probabilities": dict(zip(self.classes, map(float, p)))} for s, p in zip(starts, probs)] if timeline else []
        return Prediction(path, self.classes[int(proba.argmax())], dict(zip(self.classes, map(float, proba))), tl)


class BrokenPredictor(LoudnessPredictor):
    def predict_wav(self, wav, path="<array>", timeline=False, vad=None):
        if len(wav) < SR:
            raise RuntimeError("model exploded on short input")
        return super().predict_wav(wav, path, timeline)


def tone(path: Path, seconds: float, amp: float, sr: int = SR, channels: int = 1, seed: int = 0) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * 220 * t) + 0.1 * amp * np.random.default_rng(seed).standard_normal(len(t))
    sf.write(str(path), np.stack([x] * channels, 1).astype(np.float32) if channels > 1 else x.astype(np.float32), sr)
    return path


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    """Temporary files of the server land here, so tests can check that none is left behind."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def post(client, path: Path | None = None, name: str | None = None, data: bytes | None = None, **params):
    files = None
    if path is not None or data is not None:
        files = {"file": (name or path.name, data if data is not None else path.read_bytes(), "application/octet-stream")}
    return client.post("/predict", files=files, params=params)


def test_health_reports_classes_limits_and_model():
    client = TestClient(serve.create_app(LoudnessPredictor(), max_seconds=30, max_bytes=2**20, max_concurrent=3,
                                         max_queue=5))
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["classes"] == ["quiet", "loud"]
    assert h["limits"] == {"max_seconds": 30, "max_bytes": 2**20, "max_concurrent": 3, "max_queue": 5}
    assert h["model"] == {"kind": "ensemble", "method": "loudness", "n_models": 2}  # no paths, no weights
    assert (h["requests"], h["ok"], h["errors"], h["busy"], h["by_status"], h["in_flight"]) == (0, 0, 0, 0, {}, 0)

    class Bare:  # no .bundle: health still answers
        classes = ["a", "b"]
    assert TestClient(serve.create_app(Bare())).get("/health").json()["model"] == {}


def test_health_gives_away_no_weights_or_paths():
    """A bundle holds the head's weights, normalisation statistics, the CV run's folder and the encoder's
    path: /health says kind, method, encoder name, size and classes, and nothing else of it."""

    class Real(LoudnessPredictor):
        bundle = {"kind": "final", "classes": ["quiet", "loud"], "method": "logreg", "models": ["."],
                  "method_params": {"layer": 2, "Cs": [1.0]},
                  "upstream": {"spec": "/srv/secret/encoders/whisper-tiny.en", "fingerprint": "whisper-tiny.en-0df96c3a",
                               "layers": [2], "num_layers": 5},
                  "head": {"coef": [[0.123456789, -2.5]], "intercept": [0.75], "mean": [0.625089], "scale": [1.5]},
                  "cv": {"run": "/srv/secret/runs/emodb", "UA": {"mean": 0.9}},
                  "training": {"skipped_files": ["/srv/secret/data/x.wav"], "utterances": 535}}

    h = TestClient(serve.create_app(Real())).get("/health").json()
    assert h["model"] == {"kind": "final", "method": "logreg", "n_models": 1, "encoder": "whisper-tiny.en-0df96c3a"}
    text = str(h)
    for secret in ("/srv", "secret", "0.123456789", "0.625089", "coef", "intercept", "0.75", "Cs", "skipped"):
        assert secret not in text, secret
    assert set(h) == {"status", "classes", "model", "limits", "requests", "ok", "errors", "busy", "by_status",
                      "in_flight", "uptime_s", "speakers"}
    assert h["speakers"] == {"adapts": False, "count": 0}  # whether it takes speaker profiles, and how many it holds
    Real.bundle["upstream"]["spec"] = "whisper-tiny.en"  # a known name is said as it is
    assert TestClient(serve.create_app(Real())).get("/health").json()["model"]["encoder"] == "whisper-tiny.en"


def test_predict_matches_the_predictor(tmp_path, upload_dir):
    pred = LoudnessPredictor()
    client = TestClient(serve.create_app(pred))
    for amp, want in ((0.3, "loud"), (0.002, "quiet")):
        f = tone(tmp_path / f"a{amp}.wav", 2.5, amp)
        r = post(client, f)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == want and body["path"] == f.name
        assert body["duration"] == pytest.approx(2.5)
        ref = pred.predict_wav(load_audio(f), f.name).to_dict()
        assert body["probabilities"] == pytest.approx(ref["probabilities"], abs=1e-9)
        assert "timeline" not in body
    # resampled stereo FLAC, with timeline: windows of the 16 kHz mono signal
    f = tone(tmp_path / "st.flac", 3.4, 0.04, sr=44100, channels=2)
    body = post(client, f, timeline="true").json()
    ref = pred.predict_wav(load_audio(f), f.name, timeline=True).to_dict()
    assert [(t["start"], t["end"]) for t in body["timeline"]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 3.4)]
    for got, exp in zip(body["timeline"], ref["timeline"]):  # decoded in blocks: resampled to float32 rounding
        assert got["probabilities"] == pytest.approx(exp["probabilities"], abs=1e-6)
    assert 0.05 < body["probabilities"]["loud"] < 0.95  # a mid level: the numbers are not saturated
    assert list(upload_dir.iterdir()) == []


def test_decoding_in_small_blocks_equals_load_audio(tmp_path, upload_dir, monkeypatch):
    """Uploads are decoded block by block (a tiny FLAC can hold gigabytes of 8-channel 384 kHz audio)."""
    monkeypatch.setattr(serve, "DECODE_BLOCK_SAMPLES", 5000)
    for f, tol in ((tone(tmp_path / "a.wav", 2.3, 0.3), 0.0), (tone(tmp_path / "b.flac", 2.3, 0.3, sr=48000, channels=3), 1e-6)):
        with open(f, "rb") as fh:
            wav, name = serve.decode_upload(fh, f.name)
        ref = load_audio(f)
        assert name == f.name and wav.dtype == np.float32 and len(wav) == len(ref)
        assert np.max(np.abs(wav - ref)) <= tol
    assert list(upload_dir.iterdir()) == []


def test_bad_uploads_get_clear_4xx_and_the_server_keeps_serving(tmp_path, upload_dir):
    pred = LoudnessPredictor()
    client = TestClient(serve.create_app(pred, max_seconds=5.0, max_bytes=300_000), raise_server_exceptions=False)
    good = tone(tmp_path / "good.wav", 1.5, 0.3)
    wav_bytes = good.read_bytes()
    nan = np.zeros(SR, np.float32)
    nan[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, SR, subtype="FLOAT")
    sf.write(str(tmp_path / "loud.wav"), np.full(SR, 1e30, np.float32), SR, subtype="FLOAT")
    sf.write(str(tmp_path / "slow.wav"), (0.3 * np.sin(np.arange(600))).astype(np.float32), 1)  # 1.2 KB, "600 s"
    cases = [
        (dict(), 400, "no file"),
        (dict(name="empty.wav", data=b""), 400, "empty.wav: the upload is empty"),
        (dict(name="notes.txt", data=b"this is not audio\n" * 50), 415, "notes.txt: not an audio file"),
        (dict(name="rec.webm", data=b"\x1aE\xdf\xa3" + bytes(2000)), 415, "rec.webm: not an audio file"),
        (dict(name="cut.wav", data=wav_bytes[: len(wav_bytes) // 2]), 422, "cut.wav: truncated"),
        (dict(path=tmp_path / "nan.wav"), 422, "nan.wav: contains NaN"),
        # finite float samples 1e30 x full scale: NaN features in a real model, a 500 from JSON before
        (dict(path=tmp_path / "loud.wav"), 422, "loud.wav: amplitude out of range: peak 1e+30 × full scale"),
        # a 1 Hz header: refused before ten minutes of audio are resampled and classified
        (dict(path=tmp_path / "slow.wav"), 422, "slow.wav: sample rate 1 Hz is outside the accepted 4000-384000 Hz"),
        (dict(path=tone(tmp_path / "long.wav", 6.0, 0.3)), 413, "long.wav: 6.0 s of audio is over the server's limit of 5 s"),
        # over max_bytes but under the Content-Length gate: refused while copying
        (dict(name="big.wav", data=bytes(330_000)), 413, "big.wav: upload is over the server's limit of 0.286 MiB"),
        # far over: refused from the Content-Length header before the body is parsed
        (dict(name="huge.wav", data=bytes(1_000_000)), 413, "over the server's limit"),
        (dict(name="../../etc/evil.wav", data=b"xx"), 415, "evil.wav: not an audio file"),  # no path in messages
        # decodable, but shorter than the model labels: the predictor's refusal is a 422, not a 500
        (dict(path=tone(tmp_path / "blip.wav", 0.1, 0.3)), 422, "blip.wav: too short to label: 0.100 s"),
    ]
    for kw, status, message in cases:
        r = post(client, **kw)
        assert r.status_code == status, (kw.get("name") or kw.get("path"), r.status_code, r.text)
        detail = r.json()["detail"]
        assert message in detail, detail
        assert "\n" not in detail and "Traceback" not in detail
        assert upload_dir.name not in detail and "etc/" not in detail  # neither temp nor client paths leak
    assert pred.calls == 0
    r = post(client, good)
    assert r.status_code == 200 and r.json()["label"] == "loud"
    sf.write(str(tmp_path / "zeros.wav"), np.zeros(SR, np.float32), SR)
    r = post(client, tmp_path / "zeros.wav")  # silence is an answer, not an error: flagged, label null
    assert r.status_code == 200 and r.json()["label"] is None and r.json()["silent"] is True
    h = client.get("/health").json()
    assert h["requests"] == len(cases) + 2 and h["errors"] == len(cases) and h["ok"] == 2
    assert sum(h["by_status"].values()) == h["requests"] and h["by_status"]["422"] == 5
    assert list(upload_dir.iterdir()) == []


class NaNPredictor(LoudnessPredictor):
    """A model whose answer is not finite (what a real encoder gives on overflowing input)."""

    def predict_wav(self, wav, path="<array>", timeline=False, vad=None):
        pred = super().predict_wav(wav, path, timeline)
        pred.probabilities = {c: float("nan") for c in self.classes}
        return pred


def test_a_non_finite_model_answer_is_a_counted_4xx_never_a_nan(tmp_path, upload_dir):
    client = TestClient(serve.create_app(NaNPredictor()), raise_server_exceptions=False)
    r = post(client, tone(tmp_path / "odd.wav", 1.5, 0.3))
    assert r.status_code == 422, r.text
    assert "NaN" not in r.text.replace("(NaN or infinite", "") and "Internal Server Error" not in r.text
    assert r.json()["detail"].startswith("odd.wav: the model's answer for this audio is not finite")
    h = client.get("/health").json()
    assert (h["requests"], h["errors"], h["by_status"]) == (1, 1, {"422": 1})
    assert list(upload_dir.iterdir()) == []


def test_every_outcome_is_counted_even_an_unexpected_exception(tmp_path, upload_dir, monkeypatch):
    def explode(*a, **kw):
        raise MemoryError("decoder ran out")

    monkeypatch.setattr(serve, "decode_upload", explode)
    client = TestClient(serve.create_app(LoudnessPredictor()), raise_server_exceptions=False)
    r = post(client, tone(tmp_path / "a.wav", 1.5, 0.3))
    assert r.status_code == 500 and r.json()["detail"] == "a.wav: prediction failed (MemoryError: decoder ran out)"
    assert client.post("/predict", params={"timeline": "maybe"}).status_code == 422  # FastAPI's own validation
    h = client.get("/health").json()
    assert (h["requests"], h["errors"], h["by_status"]) == (2, 2, {"500": 1, "422": 1})


def multipart(filename: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart body written byte by byte (httpx would percent-escape the control characters)."""
    b = b"emoboostboundary"
    body = (b"--" + b + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--" + b + b"--\r\n")
    return body, {"content-type": f"multipart/form-data; boundary={b.decode()}"}


def test_upload_names_lose_control_characters_separators_and_length(tmp_path, upload_dir):
    client = TestClient(serve.create_app(LoudnessPredictor()))
    good = tone(tmp_path / "g.wav", 1.5, 0.3).read_bytes()
    hostile = "..\\x/a\x00b\x1b[31mc\x7f\u0085d\u202ee\u200bf\u2028g\tv.wav".encode()
    body, headers = multipart(hostile, good)
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "ab[31mcdef gv.wav"
    body, headers = multipart(("x" * 1000 + ".txt").encode(), b"not audio")
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 415 and r.json()["detail"].startswith("x" * serve.MAX_NAME_CHARS + ": not an audio file")
    for raw, want in (("", "upload"), ("..", "upload"), ("a/..", "upload"), ("\x00\x01", "upload"), ("C:\\u\\t.wav", "t.wav")):
        assert serve._safe_name(raw) == want, raw


def test_model_failure_is_a_500_with_message_then_serving_continues(tmp_path, upload_dir):
    client = TestClient(serve.create_app(BrokenPredictor()), raise_server_exceptions=False)
    r = post(client, tone(tmp_path / "short.wav", 0.5, 0.3))
    assert r.status_code == 500 and "short.wav: prediction failed (RuntimeError: model exploded" in r.json()["detail"]
    assert post(client, tone(tmp_path / "ok.wav", 2.0, 0.3)).json()["label"] == "loud"
    assert list(upload_dir.iterdir()) == []


def test_page_is_self_contained():
    client = TestClient(serve.create_app(LoudnessPredictor()))
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for needle in ('id="file"', 'id="predict"', 'id="record"', 'id="label"', 'id="probs"', 'id="timeline-svg"'):
        assert needle in html
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)  # nothing fetched from elsewhere
    assert re.findall(r"https?://[^\s\"')]+", html) == ["http://www.w3.org/2000/svg"]  # the SVG namespace only


def test_cli_args_and_main(monkeypatch):
    import uvicorn

    from emoboost.inference.engine import Engine

    pred = LoudnessPredictor()
    seen = {}
    monkeypatch.setattr(Engine, "load", classmethod(
        lambda cls, path, upstream=None, backend="auto", threads=None, device="cpu", max_models=None:
        seen.setdefault("load", (path, upstream, device)) and pred))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    from emoboost.cli import serve as serve_cli

    args = serve_cli.add_args(argparse.ArgumentParser()).parse_args(
        ["runs/x", "--port", "8123", "--max-seconds", "42", "--max-mb", "1.5", "--max-concurrent", "3", "--max-queue", "0"])
    assert serve_cli.main(args) == 0
    assert seen["load"] == ("runs/x", None, "cpu") and seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    h = TestClient(seen["app"]).get("/health").json()
    assert h["limits"] == {"max_seconds": 42.0, "max_bytes": int(1.5 * 2**20), "max_concurrent": 3, "max_queue": 0}
    seen.clear()
    assert serve_cli.main(serve_cli.add_args(argparse.ArgumentParser()).parse_args(["runs/x", "--device", "cuda:1"])) == 0
    assert seen["load"] == ("runs/x", None, "cuda:1")


@pytest.mark.parametrize("flags,message", [
    (["--port", "-1"], "--port must be an integer from 1 to 65535, got -1"),
    (["--port", "70000"], "--port must be an integer from 1 to 65535, got 70000"),
    (["--max-seconds", "nan"], "--max-seconds must be a finite number of seconds above 0, got nan"),
    (["--max-seconds", "inf"], "--max-seconds must be a finite number of seconds above 0, got inf"),
    (["--max-seconds", "0"], "--max-seconds must be a finite number of seconds above 0, got 0.0"),
    (["--max-mb", "nan"], "--max-mb must be a finite size above 0, got nan MiB"),
    (["--max-mb", "inf"], "--max-mb must be a finite size above 0, got inf MiB"),
    (["--max-concurrent", "0"], "--max-concurrent must be an integer >= 1, got 0"),
    (["--max-queue", "-1"], "--max-queue must be an integer >= 0, got -1"),
])
def test_bad_flags_end_in_one_line_and_exit_2_before_anything_starts(monkeypatch, capsys, flags, message):
    import uvicorn

    from emoboost.cli import main
    from emoboost.inference.engine import Engine

    def never(*a, **kw):
        raise AssertionError("started although a flag is bad")

    monkeypatch.setattr(Engine, "load", classmethod(never))
    monkeypatch.setattr(uvicorn, "run", never)
    assert main(["serve", "runs/x", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"emoboost: error: {message}\n"


def _blocking(predictor_cls):
    class Blocking(predictor_cls):
        """Holds its slot until released, so a test can fill the server deterministically."""

        def __init__(self):
            super().__init__()
            self.entered, self.release = threading.Semaphore(0), threading.Event()

        def predict_wav(self, wav, path="<array>", timeline=False, vad=None):
            self.entered.release()
            assert self.release.wait(20), "never released"
            return super().predict_wav(wav, path, timeline)

    return Blocking()


@pytest.mark.parametrize("queue", [0, 1])
def test_admission_beyond_the_queue_is_503_with_retry_after_and_no_decoding(tmp_path, upload_dir, monkeypatch, queue):
    pred = _blocking(LoudnessPredictor)
    decoded = []
    real_decode = serve.decode_upload
    monkeypatch.setattr(serve, "decode_upload", lambda stream, name, *a: decoded.append(name) or real_decode(stream, name, *a))
    client = TestClient(serve.create_app(pred, max_concurrent=1, max_queue=queue))
    f = tone(tmp_path / "a.wav", 1.5, 0.3)
    answers: dict[str, object] = {}

    def send(key: str) -> None:
        answers[key] = post(client, f, name=f"{key}.wav")

    first = threading.Thread(target=send, args=("first",))
    first.start()
    assert pred.entered.acquire(timeout=20)  # the first request is inside, classifying
    waiting = [threading.Thread(target=send, args=(f"queued{i}",)) for i in range(queue)]
    for t in waiting:
        t.start()
    deadline = time.time() + 20
    while client.get("/health").json()["in_flight"] < 1 + queue:
        assert time.time() < deadline, "the queued request never arrived"
        time.sleep(0.01)
    r = post(client, f, name="late.wav")  # beyond the queue: refused at once, never decoded
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["detail"].startswith("late.wav: the server is busy")
    assert "late.wav" not in decoded
    pred.release.set()
    for t in [first, *waiting]:
        t.join(20)
    assert all(answers[k].status_code == 200 for k in ["first", *(f"queued{i}" for i in range(queue))]), answers
    h = client.get("/health").json()
    assert (h["requests"], h["ok"], h["busy"], h["errors"], h["in_flight"]) == (2 + queue, 1 + queue, 1, 0, 0)
    assert h["by_status"] == {"200": 1 + queue, "503": 1}
    assert post(client, f).status_code == 200  # a place again once the others are done
    assert list(upload_dir.iterdir()) == []


def test_real_emoboost_model(shared_dir, tmp_path, upload_dir):
    """A real (tiny) SVM on eGeMAPS of EmoDB anger vs sadness, served: the same answer as the engine itself."""
    from emoboost.features.functionals import functionals
    from emoboost.methods import UtteranceSet
    from emoboost.methods.svm import FunctionalsSVM

    wav_dir = shared_dir / "data" / "emodb" / "wav"
    train = [f for spk in ("03", "08", "09") for emo in "WT" for f in sorted(wav_dir.glob(f"{spk}*{emo}?.wav"))[:3]]
    test = sorted(wav_dir.glob("10*W?.wav"))[:1] + sorted(wav_dir.glob("10*T?.wav"))[:1]
    if len(train) < 18 or len(test) < 2:
        pytest.skip("EmoDB files missing from the shared folder")
    classes = ["angry", "sad"]
    feats = [functionals(load_audio(f), "egemaps").astype(np.float32) for f in train]
    data = UtteranceSet(ids=[f.stem for f in train], y=np.array([0 if f.stem[5] == "W" else 1 for f in train]),
                        groups=np.array([f.stem[:2] for f in train]), features={"egemaps": feats})
    svm = FunctionalsSVM(classes, features="egemaps", C_grid=[1.0, 10.0], gamma_grid=[1.0], inner_folds=3).fit(data)
    from emoboost.inference.backend_torch import TorchBackend
    from emoboost.inference.bundle import Bundle
    from emoboost.inference.engine import Engine

    bundle = Bundle(tmp_path, "model", classes, method="svm", features=["egemaps"], models=[tmp_path])
    predictor = Engine(TorchBackend([svm], bundle), bundle)
    client = TestClient(serve.create_app(predictor))
    assert client.get("/health").json()["model"]["method"] == "svm"
    for f in test:
        body = post(client, f).json()
        ref = predictor.predict_file(f).to_dict()
        assert body["label"] == ref["label"] and body["probabilities"] == pytest.approx(ref["probabilities"], abs=1e-6)
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3) and body["warnings"] == []
    # the same speech with a heavy DC offset: answered, and the answer says what looks wrong
    x, sr = sf.read(str(test[0]), dtype="float32")
    sf.write(str(tmp_path / "dc.wav"), x + 0.5, sr)
    body = post(client, tmp_path / "dc.wav").json()
    assert body["label"] in classes and len(body["warnings"]) == 1
    assert body["warnings"][0].startswith("dc.wav: heavy DC offset")
    assert list(upload_dir.iterdir()) == []


# --- the page in a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _running(app):
    """``app`` served by uvicorn on a free local port for the ``with`` block -> its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not th.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        th.join(10)


@pytest.fixture
def live_server():
    pred = LoudnessPredictor()
    with _running(serve.create_app(pred)) as url:
        yield url, pred


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="headless browser test needs Debian's chromium and chromium-driver "
                           "(apt-get install chromium chromium-driver)")
def _open_page(driver, url: str, model_text: str, timeout: float):
    """Load the server's page and wait until it shows the model (``model_text``, e.g. "2 classes") -> the wait."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_page_load_timeout(30)
    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: model_text in d.find_element(By.ID, "model").text)
    return wait


def _chromium(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def test_page_in_headless_chromium(live_server, tmp_path):
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    url, pred = live_server
    audio = tone(tmp_path / "speech.wav", 2.5, 0.04)
    ref = pred.predict_wav(load_audio(audio), audio.name, timeline=True).to_dict()
    driver = _chromium(tmp_path)
    try:
        wait = _open_page(driver, url, "2 classes", 30)
        driver.find_element(By.ID, "file").send_keys(str(audio))
        wait.until(ec.element_to_be_clickable((By.ID, "predict"))).click()
        wait.until(lambda d: d.find_element(By.ID, "label").text.strip() != "")
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_element(By.ID, "label").text.strip().lower() == ref["label"]
        rows = driver.find_elements(By.CSS_SELECTOR, "#probs .prob")
        shown = {r.get_attribute("data-class"): float(r.find_element(By.CSS_SELECTOR, ".value").text) for r in rows}
        assert shown == pytest.approx(ref["probabilities"], abs=6e-4)  # shown with 3 decimals
        widths = {r.get_attribute("data-class"): r.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style")
                  for r in rows}
        assert f"{100 * ref['probabilities']['loud']:.1f}%" in widths["loud"]
        segments = driver.find_elements(By.CSS_SELECTOR, "#timeline-svg rect.segment")
        assert len(segments) == len(ref["timeline"]) == 3
        # then a bad file: the page shows the server's message and the server still answers
        bad = tmp_path / "notes.txt"
        bad.write_text("not audio")
        driver.find_element(By.ID, "file").send_keys(str(bad))
        wait.until(ec.element_to_be_clickable((By.ID, "predict"))).click()
        wait.until(lambda d: "not an audio file" in d.find_element(By.ID, "error").text)
        # then digital silence: the page says so instead of printing a null label
        silence = tmp_path / "silence.wav"
        sf.write(str(silence), np.zeros(2 * SR, np.float32), SR)
        driver.find_element(By.ID, "file").send_keys(str(silence))
        wait.until(ec.element_to_be_clickable((By.ID, "predict"))).click()
        wait.until(lambda d: "silence" in d.find_element(By.ID, "label").text.lower())
        assert "null" not in driver.find_element(By.ID, "label").text.lower()
        assert driver.find_element(By.ID, "error").text == ""
    finally:
        driver.quit()


def test_a_model_answering_nan_is_422_not_500(tmp_path, upload_dir):
    """The engine refuses NaN answers itself (NonFiniteAnswer); the server says so as a 422 like any answer it
    cannot give for this audio, not as an internal error."""
    from types import SimpleNamespace

    from emoboost.inference.engine import Engine

    class NanModel(LoudnessPredictor):
        def predict_wav(self, wav, path="<array>", timeline=False, vad=None):
            return Engine._finite(SimpleNamespace(bundle=SimpleNamespace(path="model")), np.array([np.nan, 1.0]), path)

    client = TestClient(serve.create_app(NanModel()))
    r = post(client, tone(tmp_path / "a.wav", 1.0, 0.3))
    assert r.status_code == 422 and r.json()["detail"].startswith("a.wav: the model's answer for this audio is not finite")
    assert client.get("/health").json()["by_status"] == {"422": 1}


@pytest.fixture
def adapted_server(tmp_path):
    """A final model trained with adapt=online, served -> (URL, its engine, three clips of one speaker)."""
    from builders import adapted_models
    from emoboost.inference.engine import Engine

    corpus, _, final = adapted_models(tmp_path / "model")
    engine = Engine.load(final, backend="torch")
    with _running(serve.create_app(engine)) as url:
        yield url, engine, sorted((corpus / "wav").glob("08*.wav"))[:3]


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="headless browser test needs chromium and chromium-driver")
def test_page_live_speaker_session_in_headless_chromium(adapted_server, tmp_path):
    """A speaker named on the page: each clip is adapted to the clips heard before it, and the page says how many."""
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    url, engine, clips = adapted_server
    from emoboost.inference.api import Model

    ref = Model(engine, engine.bundle.path)  # the same engine's API: the live session's reference numbers
    want = [ref.predict(c, speaker="ana", learn=True).probabilities for c in clips]
    ref.speakers.delete("ana")
    driver = _chromium(tmp_path)
    try:
        wait = _open_page(driver, url, "3 classes", 60)
        assert driver.find_element(By.ID, "speaker").is_enabled()
        driver.find_element(By.ID, "speaker").send_keys("ana")
        for k, (clip, probs) in enumerate(zip(clips, want)):
            driver.find_element(By.ID, "file").send_keys(str(clip))
            wait.until(ec.element_to_be_clickable((By.ID, "predict"))).click()
            wait.until(lambda d, k=k: f"profile now {k + 1} clips" in d.find_element(By.ID, "heard").text)
            heard = driver.find_element(By.ID, "heard").text
            assert f"adapted to {k} clip" in heard and driver.find_element(By.ID, "error").text == ""
            rows = driver.find_elements(By.CSS_SELECTOR, "#probs .prob")
            shown = {r.get_attribute("data-class"): float(r.find_element(By.CSS_SELECTOR, ".value").text) for r in rows}
            assert shown == pytest.approx(probs, abs=6e-4)
    finally:
        driver.quit()
