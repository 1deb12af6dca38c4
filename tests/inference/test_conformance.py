"""Every entry point gives one answer for the same clips.

The same five clips — a normal clip, a 0.1 s clip, digital silence, 45 s of speech and silence, a stereo
44.1 kHz file — go through ``emoboost predict`` (the CLI), ``emoboost.load(...).predict`` and
``predict_many``, and the HTTP server, on the torch backend and on the ONNX form of the same model, for a
pooled model and an MS-EmoBoost model. Outcomes (label / silent / too short) and VAD windows must be
identical everywhere; probabilities identical within one backend (to the resampling's float rounding)
and within 1e-4 between torch and ONNX. A clip's posteriors never depend on the clips around it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import emoboost
from builders import cv_run, msemoboost_final, pitch_tone, save_tiny_whisper, tiny_corpus
from emoboost.audio import AudioError, load_audio
from emoboost.cli import main
from emoboost.inference.engine import Engine

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")
pytest.importorskip("silero_vad")
SR = 16000


@pytest.fixture(scope="module")
def clips(shared_dir, tmp_path_factory) -> dict[str, Path]:
    wavs = sorted((shared_dir / "data" / "emodb" / "wav").glob("*.wav"))
    if len(wavs) < 6:
        pytest.skip("EmoDB clips not found in the shared folder")
    root = tmp_path_factory.mktemp("clips")
    a, b = load_audio(wavs[0]), load_audio(wavs[5])
    gap = np.zeros(15 * SR, np.float32)
    out = {"normal.wav": a, "short.wav": a[: SR // 10], "silence.wav": np.zeros(3 * SR, np.float32),
           "long.wav": np.concatenate([a, gap, b, gap, a])[: 45 * SR]}
    paths = {}
    for name, x in out.items():
        paths[name] = root / name
        sf.write(str(paths[name]), x, SR, subtype="FLOAT")
    import soxr

    x = soxr.resample(b, SR, 44100).astype(np.float32)
    paths["stereo.flac"] = root / "stereo.flac"
    sf.write(str(paths["stereo.flac"]), np.stack([x, 0.5 * x], axis=1), 44100)
    return paths


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> Path:
    """A final logreg model with the ONNX form `emoboost train` writes beside it."""
    from emoboost.experiment.refit import train_final

    tmp = tmp_path_factory.mktemp("pooled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOBOOST_CACHE", str(tmp / "cache"))
        run = cv_run(tiny_corpus(tmp / "emodb"), save_tiny_whisper(tmp / "w"), tmp / "run", tmp / "cache", "logreg",
                     {"layer": 2, "Cs": [1.0], "speaker_norm": "speaker", "min_speaker_utts": 2})
        info = train_final(run, tmp / "final", progress=False)
    assert info["onnx_form"].startswith("yes"), info["onnx_form"]
    return tmp / "final"


@pytest.fixture(scope="module")
def msemo(tmp_path_factory) -> Path:
    """A final MS-EmoBoost model (both guidance branches) with its ONNX form."""
    from emoboost.experiment.refit import write_onnx_form
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    tmp = tmp_path_factory.mktemp("msemo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOBOOST_CACHE", str(tmp / "cache"))
        up = WhisperEncoderUpstream(save_tiny_whisper(tmp / "w"))
        wavs = [pitch_tone(s, f, seed=k) for k, (s, f) in enumerate([(1.0, 200.0), (2.5, 900.0), (3.5, 400.0),
                                                                     (1.5, 1500.0), (4.0, 250.0), (2.0, 700.0)])]
        final = msemoboost_final(up, wavs, tmp / "final", "utterance", 1, "both")
        line = write_onnx_form(final)
    assert line.startswith("yes"), line
    return final


def _outcome(d: dict | None, error: str | None = None) -> tuple:
    if error is not None:
        return ("refused", "too short" in error)
    if d["silent"]:
        return ("silent",)
    windows = tuple((t["start"], t["end"]) for t in d.get("timeline", [])) if d.get("vad") else ()
    return ("label", d["label"], windows)


def _probs(d: dict | None) -> dict:
    return (d or {}).get("probabilities") or {}


def answers(model: Path, backend: str, clips: dict[str, Path], capsys) -> dict[str, dict[str, tuple]]:
    """entry point -> clip -> (outcome, probabilities)."""
    from fastapi.testclient import TestClient

    from emoboost.inference import serve

    got: dict[str, dict[str, tuple]] = {}
    files = list(clips.values())
    rc = main(["predict", str(model), *map(str, files), "--format", "json", "--timeline", "--backend", backend,
               "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 1  # the 0.1 s clip is refused, the others labelled
    rows = {Path(r["path"]).name: r for r in json.loads(cap.out)}
    errors = {Path(line.removeprefix("error: ").split(": ")[0]).name: line
              for line in cap.err.splitlines() if line.startswith("error: ")}
    got["cli"] = {n: (_outcome(rows.get(n), errors.get(n)), _probs(rows.get(n))) for n in clips}
    m = emoboost.load(model, backend=backend)
    assert m.backend == backend
    api = {}
    for n, f in clips.items():
        try:
            d = m.predict(f, timeline=True).to_dict()
            api[n] = (_outcome(d), _probs(d))
        except AudioError as e:
            api[n] = (_outcome(None, str(e)), {})
    got["api"] = api
    many = m.predict_many(files, timeline=True, skip_errors=True)
    got["predict_many"] = {n: ((_outcome(p.to_dict()), _probs(p.to_dict())) if p is not None
                               else (_outcome(None, "too short"), {})) for n, p in zip(clips, many)}
    client = TestClient(serve.create_app(Engine.load(model, backend=backend)))
    srv = {}
    for n, f in clips.items():
        r = client.post("/predict", files={"file": (n, f.read_bytes(), "application/octet-stream")},
                        params={"timeline": True})
        srv[n] = (_outcome(r.json()), _probs(r.json())) if r.status_code == 200 else \
            (_outcome(None, r.json()["detail"]), {})
    got["server"] = srv
    return got


def _close(a: dict, b: dict, atol: float) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= atol for k in a)


@pytest.mark.parametrize("which", ["pooled", "msemo"])
def test_every_entry_point_gives_one_answer(which, pooled, msemo, clips, capsys):
    model = {"pooled": pooled, "msemo": msemo}[which]
    by_backend = {b: answers(model, b, clips, capsys) for b in ("torch", "onnx")}
    ref = by_backend["torch"]["cli"]
    assert ref["short.wav"][0] == ("refused", True) and ref["silence.wav"][0] == ("silent",)
    assert ref["normal.wav"][0][0] == "label" and ref["stereo.flac"][0][0] == "label"
    assert ref["long.wav"][0][0] == "label" and len(ref["long.wav"][0][2]) >= 2  # VAD windows, speech only
    for backend, entries in by_backend.items():
        for entry, per_clip in entries.items():
            for clip, (outcome, probs) in per_clip.items():
                assert outcome == ref[clip][0], (backend, entry, clip, outcome, ref[clip][0])
                same = by_backend[backend]["cli"][clip][1]
                assert _close(probs, same, 2e-5), (backend, entry, clip)  # one backend: one answer
                assert _close(probs, ref[clip][1], 1e-4), (backend, entry, clip)  # torch vs ONNX


@pytest.mark.parametrize("which", ["pooled", "msemo"])
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_clip_alone_and_among_twenty_others(which, backend, pooled, msemo):
    eng = Engine.load({"pooled": pooled, "msemo": msemo}[which], backend=backend)
    rng = np.random.default_rng(1)
    wavs = [pitch_tone(float(rng.uniform(0.5, 4.0)), float(rng.uniform(150, 1600)), seed=k) for k in range(21)]
    together = eng.posteriors_many(wavs)
    alone = np.stack([eng.posteriors_many([w])[0] for w in wavs])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-9)
