"""predict: inputs (files, folders, lists), outputs (text/JSON/CSV, --out, --plot), long audio (VAD windows,
streamed reading), refusals (too short, fingerprint mismatch, encoder cut too shallow), silence, ONNX dispatch.

Models are tiny and real: logistic regressions trained here on a random 2-layer Whisper's pooled frames
of tones (low vs high pitch), saved as a two-model run directory (an ensemble, like a CV run).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import CLASSES, pitch_tone, pooled_ensemble, write_wav
from emoboost.audio import AudioError, load_audio, read_spans
from emoboost.cli import build_parser, main
from emoboost.inference.engine import Engine, Prediction
from emoboost.inference.inputs import expand_inputs

SR = 16000


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOBOOST_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return pooled_ensemble(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def predictor(models) -> Engine:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOBOOST_CACHE", str(models[0] / "cache"))
        return Engine.load(models[0])


def engine_of(models, bundle, upstream) -> Engine:
    """An engine over given torch models (the encoder cut or not), layers checked as loading checks them."""
    from emoboost.inference.backend_torch import TorchBackend

    backend = TorchBackend(models, bundle, upstream)
    backend.check_layers()
    return Engine(backend, bundle)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["predict", *map(str, argv), "--no-progress"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---- the model: loading, encoder cut, fingerprint ----------------------------------------------------

def test_encoder_cut_at_deepest_layer_gives_the_same_posteriors(models, predictor):
    from emoboost.upstreams import build_upstream

    run, up_dir, _ = models
    up = predictor.backend.upstream
    assert up.layers_out == 2 and up.num_layers == 3  # layer 1 is the deepest read
    full = engine_of(predictor.backend.models, predictor.bundle, build_upstream(str(up_dir)))
    assert full.backend.upstream.layers_out == 3
    for seconds, f in ((0.8, 200.0), (2.5, 1200.0), (31.0, 500.0)):  # 31 s: two encoder windows
        wav = pitch_tone(seconds, f, seed=int(seconds))
        a, b = predictor.predict_wav(wav), full.predict_wav(wav)
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
        assert a.duration == pytest.approx(seconds)
    assert predictor.predict_wav(pitch_tone(2.0, 200.0, seed=3)).label == "low"
    assert predictor.predict_wav(pitch_tone(2.0, 1200.0, seed=4)).label == "high"


def test_frame_model_on_a_too_shallow_encoder_fails_clearly(models, predictor):
    from emoboost.upstreams import build_upstream

    run, up_dir, frame_model = models
    wav = pitch_tone(2.0, 200.0)
    cut1 = engine_of([frame_model], predictor.bundle, build_upstream(str(up_dir), max_layer=1))
    uncut = engine_of([frame_model], predictor.bundle, build_upstream(str(up_dir)))
    assert frame_model.needs_frames()
    assert cut1.predict_wav(wav, timeline=True).to_dict() == uncut.predict_wav(wav, timeline=True).to_dict()
    with pytest.raises(ValueError, match=r"reads hidden state\(s\) \[1\].*0\.\.0 only"):
        engine_of([frame_model], predictor.bundle, build_upstream(str(up_dir), max_layer=0))


def test_fingerprint_mismatch_is_refused_before_any_weights_load(models, tmp_path, monkeypatch, capsys):
    import emoboost.upstreams.whisper as W

    run, _, _ = models
    other = tmp_path / "run"
    other.mkdir()
    (other / "models").symlink_to(run / "models")
    bundle = json.loads((run / "bundle.json").read_text())
    bundle["upstream"]["fingerprint"] = "tiny-whisper-0000000000000000"
    (other / "bundle.json").write_text(json.dumps(bundle))

    def no_loading(*a, **k):
        raise AssertionError("encoder weights were loaded before the fingerprint check")
    monkeypatch.setattr(W, "load_encoder", no_loading)
    with pytest.raises(ValueError, match="does not match the expected tiny-whisper-0000000000000000"):
        Engine.load(other)
    wav = write_wav(tmp_path / "a.wav", pitch_tone(1.0, 200.0))
    rc, _, err = run_cli(capsys, other, wav)
    assert rc == 2 and "does not match the expected" in err and err.count("\n") == 1


# ---- refusals and silence ----------------------------------------------------------------------------

def test_too_short_clips_are_refused_with_one_line(predictor, tmp_path, capsys, models):
    for n in (1, 800, 3999):  # 1 sample, 0.05 s, just under 0.25 s
        with pytest.raises(AudioError, match=f"x.wav: too short to label: {n / SR:.3f} s < minimum 0.250 s"):
            predictor.predict_wav(np.full(n, 0.1, np.float32), "x.wav")
    assert predictor.predict_wav(pitch_tone(0.25, 300.0)).label in CLASSES
    short = write_wav(tmp_path / "short.wav", pitch_tone(0.05, 300.0))
    one = write_wav(tmp_path / "one.wav", np.array([0.2], np.float32))
    rc, out, err = run_cli(capsys, models[0], short, one, "--format", "json")
    assert rc == 1 and json.loads(out) == []
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {short}: too short to label: 0.050 s < minimum 0.250 s",
                     f"error: {one}: too short to label: 0.000 s < minimum 0.250 s"]


def test_silence_is_flagged_not_labelled(predictor, tmp_path, capsys, models):
    p = predictor.predict_wav(np.zeros(3 * SR, np.float32), "z")
    assert p.silent and p.label is None and p.probabilities == {}
    quiet = pitch_tone(3.0, 300.0, amp=5e-4)  # about -70 dBFS: silent by the -60 dBFS rule
    assert predictor.predict_wav(quiet).silent
    assert not predictor.predict_wav(pitch_tone(3.0, 300.0, amp=5e-3)).silent  # about -50 dBFS: labelled
    zeros = write_wav(tmp_path / "zeros.wav", np.zeros(3 * SR, np.float32))
    long_zeros = write_wav(tmp_path / "long_zeros.flac", np.zeros(40 * SR, np.float32))  # VAD path (> 30 s)
    rc, out, _ = run_cli(capsys, models[0], zeros, long_zeros, "--format", "json")
    rows = json.loads(out)
    assert rc == 0 and [r["silent"] for r in rows] == [True, True] and [r["label"] for r in rows] == [None, None]
    assert rows[1]["duration"] == pytest.approx(40.0)
    rc, out, _ = run_cli(capsys, models[0], zeros)
    assert "(silent)" in out.splitlines()[1]
    long_tone = pitch_tone(35.0, 200.0)
    long_tone[: 33 * SR] = 0.0  # loud enough overall, but only 2 s are not digital silence
    f = write_wav(tmp_path / "mostly_zeros.wav", long_tone)
    assert not predictor.predict_file(f, vad=False).silent


# ---- inputs and outputs -------------------------------------------------------------------------------

def test_folder_input_reports_the_bad_file_and_predicts_the_others(models, predictor, tmp_path, capsys):
    d = tmp_path / "in"
    good = [write_wav(d / "a.wav", pitch_tone(1.2, 200.0, 1)), write_wav(d / "sub" / "b.flac", pitch_tone(1.5, 1200.0, 2)),
            write_wav(d / "sub" / "deeper" / "c.ogg", pitch_tone(2.0, 200.0, 3), format="OGG", subtype="VORBIS")]
    (d / "bad.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    (d / "notes.md").write_text("not an audio extension: ignored")
    rc, out, err = run_cli(capsys, models[0], d, "--format", "json")
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(d / "bad.wav") in errors[0] and "unreadable audio" in errors[0]
    assert "ensemble of 2 fold models" in err and "1 input(s) failed, 3 labelled" in err
    rows = json.loads(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in good)
    for r in rows:
        ref = predictor.predict_file(r["path"]).to_dict()
        assert r == ref and abs(sum(r["probabilities"].values()) - 1) < 1e-3


def test_list_file_and_csv_out(models, predictor, tmp_path, capsys):
    a = write_wav(tmp_path / "data" / "a.wav", pitch_tone(1.0, 200.0, 5))
    b = write_wav(tmp_path / "data" / "b.wav", pitch_tone(4.0, 1200.0, 6))
    lst = tmp_path / "data" / "files.txt"
    lst.write_text(f"# my files\na.wav\n\n{b}\nmissing.wav\na.wav\n")  # relative, absolute, missing, repeated
    out_csv = tmp_path / "out" / "results.csv"
    rc, _, err = run_cli(capsys, models[0], lst, "--out", out_csv, "--format", "csv")
    assert rc == 1 and f"error: {tmp_path / 'data' / 'missing.wav'}: file does not exist" in err
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["path"] for r in rows] == [str(tmp_path / "data" / "a.wav"), str(b)]
    assert list(rows[0]) == ["path", "label", "p_high", "p_low", "silent", "duration", "speech_seconds", "warnings",
                            "speaker", "speaker_clips"]
    for r, f in zip(rows, (a, b)):
        ref = predictor.predict_file(f)
        assert r["label"] == ref.label and float(r["p_low"]) == pytest.approx(ref.probabilities["low"], abs=1e-5)
        assert r["silent"] == "False" and float(r["duration"]) == pytest.approx(ref.duration)
    assert not list(out_csv.parent.glob(".*tmp"))  # atomic write leaves no temp file
    rc, _, _ = run_cli(capsys, models[0], b, "--out", out_csv, "--timeline")
    rows = list(csv.DictReader(out_csv.open()))
    assert rc == 0 and [(r["start"], r["end"]) for r in rows] == [("0.0", "3.0"), ("3.0", "4.0")]
    assert list(rows[0])[:4] == ["path", "start", "end", "label"]


def test_json_out_and_plot(models, tmp_path, capsys):
    a = write_wav(tmp_path / "a.wav", pitch_tone(2.0, 200.0))
    b = write_wav(tmp_path / "x" / "a.wav", pitch_tone(7.0, 1200.0))  # same stem: plots must not overwrite each other
    out = tmp_path / "r.json"
    rc, stdout, _ = run_cli(capsys, models[0], a, b, tmp_path / "nope.wav", "--out", out, "--plot", tmp_path / "plots")
    assert rc == 1
    doc = json.loads(out.read_text())
    assert doc["model"]["kind"] == "ensemble" and doc["model"]["models"] == 2 and doc["model"]["classes"] == CLASSES
    assert [r["path"] for r in doc["results"]] == [str(a), str(b)] and "timeline" not in doc["results"][0]
    assert doc["errors"] == [{"path": str(tmp_path / "nope.wav"), "problem": "file does not exist"}]
    assert doc["settings"]["vad_auto_seconds"] == 30.0 and doc["settings"]["min_duration"] == 0.25
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["a-2.timeline.png", "a.timeline.png"]
    assert stdout.startswith("# model:") and "ensemble of 2 fold models" in stdout.splitlines()[0]
    rc, _, err = run_cli(capsys, models[0], a, b, "--plot", tmp_path / "one.png")
    assert rc == 2 and "one PNG takes one input" in err
    rc, _, err = run_cli(capsys, models[0], a, "--out", tmp_path / "r.txt")
    assert rc == 2 and "must end in .csv or .json" in err
    rc, _, _ = run_cli(capsys, models[0], b, "--plot", tmp_path / "one.png", "--format", "json")
    assert rc == 0 and (tmp_path / "one.png").stat().st_size > 1000


def test_expand_inputs(tmp_path):
    write_wav(tmp_path / "d" / "B.WAV", pitch_tone(0.3, 200.0))
    write_wav(tmp_path / "d" / "a" / "x.flac", pitch_tone(0.3, 200.0))
    (tmp_path / "empty").mkdir()
    (tmp_path / "l.lst").write_text("d\n# c\nd/B.WAV\n")
    files, bad = expand_inputs([tmp_path / "d", tmp_path / "l.lst", tmp_path / "empty", tmp_path / "zz.wav"])
    assert files == [tmp_path / "d" / "B.WAV", tmp_path / "d" / "a" / "x.flac", tmp_path / "zz.wav"]
    assert len(bad) == 1 and bad[0][0] == str(tmp_path / "empty") and "no audio files" in bad[0][1]


# ---- long audio: streamed reading, VAD windows ---------------------------------------------------------

@pytest.mark.parametrize("sr", [16000, 22050])
def test_streamed_long_file_equals_the_loaded_waveform(predictor, tmp_path, sr, monkeypatch):
    x = np.concatenate([pitch_tone(20.0, 200.0, 1, sr=sr), pitch_tone(25.0, 1200.0, 2, sr=sr), pitch_tone(20.0, 300.0, 3, sr=sr)])
    f = write_wav(tmp_path / "long.flac", x, sr)
    streamed = predictor.predict_file(f, timeline=True, vad=False)
    loaded = predictor.predict_wav(load_audio(f), str(f), timeline=True)
    assert streamed.duration == pytest.approx(65.0, abs=1e-3) and len(streamed.timeline) == 22
    assert streamed.probabilities == pytest.approx(loaded.probabilities, abs=1e-4)
    for s, t in zip(streamed.timeline, loaded.timeline):
        assert (s["start"], s["end"]) == (t["start"], t["end"])
        assert s["probabilities"] == pytest.approx(t["probabilities"], abs=1e-4)


@pytest.mark.parametrize("sr,fmt", [(16000, "WAV"), (44100, "FLAC")])
def test_read_spans_reads_only_the_windows(tmp_path, monkeypatch, sr, fmt):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 5 * sr).astype(np.float32)
    f = write_wav(tmp_path / f"x.{fmt.lower()}", np.stack([x, -x * 0.5], 1), sr, format=fmt, subtype="FLOAT" if fmt == "WAV" else None)
    ref = load_audio(f)
    spans = [(100, 9000), (9000, 9001), (15000, 40000), (79000, 81000)]  # the last runs past the end (80000)
    got = list(read_spans(f, spans, block_seconds=0.7))  # spans cross block boundaries
    assert len(got) == 4 and len(got[3]) == 1000
    for (a, b), g in zip(spans, got):
        np.testing.assert_allclose(g, ref[a:b], atol=1e-6 if sr == SR else 2e-3)


def _speech_silence_speech(shared_dir: Path, tmp_path: Path, sr: int) -> tuple[Path, float, float, float]:
    clips = sorted((shared_dir / "data" / "emodb" / "wav").glob("*.wav"))
    if len(clips) < 2:
        pytest.skip("EmoDB clips not found in the shared folder")
    a, b = load_audio(clips[0]), load_audio(clips[1])
    x = np.concatenate([a, np.zeros(40 * SR, np.float32), b])
    if sr != SR:
        import soxr

        x = soxr.resample(x, SR, sr).astype(np.float32)
    f = write_wav(tmp_path / ("speech.wav" if sr == SR else "speech.flac"), x, sr)
    return f, len(a) / SR, len(a) / SR + 40.0, len(x) / sr


@pytest.mark.shared
@pytest.mark.parametrize("sr", [16000, 22050])
def test_vad_timeline_has_no_window_inside_the_silence(predictor, shared_dir, tmp_path, sr):
    f, sil_start, sil_end, total = _speech_silence_speech(shared_dir, tmp_path, sr)
    p = predictor.predict_file(f, timeline=True)  # > 30 s: VAD by default
    assert p.speech_seconds is not None and p.to_dict()["vad"] is True
    assert p.duration == pytest.approx(total, abs=1e-3)
    tl = p.timeline
    assert tl and all(t["end"] <= sil_start + 0.5 or t["start"] >= sil_end - 0.5 for t in tl), tl
    assert any(t["end"] <= sil_start + 0.5 for t in tl) and any(t["start"] >= sil_end - 0.5 for t in tl)
    assert all(0 < t["end"] - t["start"] <= 4.0 for t in tl)
    assert p.speech_seconds == pytest.approx(sum(t["end"] - t["start"] for t in tl), abs=1e-3)
    assert p.speech_seconds < sil_start + (total - sil_end) + 1.0
    from emoboost.inference.timeline import weighted_label

    label, probs = weighted_label(tl, CLASSES)
    assert p.label == label and p.probabilities == pytest.approx(probs, abs=1e-4)
    wav = load_audio(f)
    for t in tl:  # each window is its own utterance, read exactly from the file
        want = predictor.posteriors(wav[int(round(t["start"] * SR)) : int(round(t["end"] * SR))])
        np.testing.assert_allclose([t["probabilities"][c] for c in CLASSES], want, atol=1e-4 if sr == SR else 2e-3)
    assert predictor.predict_file(f, vad=False).speech_seconds is None  # --no-vad: the whole file


def test_given_regions_skip_silent_and_tiny_windows(predictor, tmp_path):
    x = np.concatenate([pitch_tone(3.0, 200.0), np.zeros(3 * SR, np.float32), pitch_tone(2.0, 1200.0)])
    f = write_wav(tmp_path / "r.wav", x)
    p = predictor.predict_regions(f, regions=[(0.0, 3.0), (3.2, 5.8), (6.0, 6.1), (6.1, 8.0)])
    assert [(t["start"], t["end"]) for t in p.timeline] == [(0.0, 3.0), (6.1, 8.0)]
    assert [t["label"] for t in p.timeline] == ["low", "high"] and p.speech_seconds == pytest.approx(4.9)
    none = predictor.predict_regions(f, regions=[(3.5, 5.5)])
    assert none.label is None and none.speech_seconds == 0.0 and not none.silent


# ---- ONNX export directories ----------------------------------------------------------------------------

def test_onnx_export_dir_is_run_with_onnxruntime(models, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from emoboost.inference.export import export_onnx
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    up = WhisperEncoderUpstream(models[1])
    rng = np.random.default_rng(0)
    head = {"classes": CLASSES, "layers": [1], "pooling": "mean", "mean": np.zeros(32, np.float32),
            "scale": np.ones(32, np.float32), "weight": rng.normal(0, 0.5, (2, 32)).astype(np.float32),
            "bias": np.zeros(2, np.float32)}
    d = export_onnx(up, head, tmp_path / "onnx")
    wav = write_wav(tmp_path / "a.wav", pitch_tone(2.0, 200.0))
    rc, out, err = run_cli(capsys, d, wav, "--format", "json")
    assert rc == 0 and "ONNX export" in err
    ref = Engine.load(d).predict_file(wav).to_dict()
    got = json.loads(out)[0]
    assert got["probabilities"] == ref["probabilities"] and got["label"] == ref["label"]
    rc, _, err = run_cli(capsys, d, wav, "--upstream", str(models[1]))
    assert rc == 2 and "--upstream does not apply" in err
    long_ = write_wav(tmp_path / "long.wav", np.concatenate([pitch_tone(3.0, 200.0), np.zeros(30 * SR, np.float32)]))
    p = Engine.load(d).predict_file(long_, timeline=True)  # VAD windows through the ONNX graphs
    assert p.speech_seconds is not None and all(t["end"] <= 3.5 for t in p.timeline)


# ---- command line ---------------------------------------------------------------------------------------

def test_predict_help_documents_the_vad_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "longer than 30 s" in text and "--no-vad" in text and "shorter than 0.25 s are refused" in text


def test_prediction_dict_shape():
    d = Prediction("a.wav", "x", {"x": 1.0}, duration=2.0).to_dict()
    assert d == {"path": "a.wav", "label": "x", "probabilities": {"x": 1.0}, "silent": False, "warnings": [],
                 "duration": 2.0}


def test_predict_device_option(models, tmp_path, capsys, monkeypatch):
    run = models[0]
    monkeypatch.setenv("EMOBOOST_CACHE", str(run / "cache"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    wav = write_wav(tmp_path / "a.wav", pitch_tone(1.0, 200.0))
    rc, _, err = run_cli(capsys, run, wav, "--device", "cuda")
    assert rc == 2 and "no CUDA device is visible" in err and err.count("\n") == 1
    auto = Engine.load(run, device="auto")  # resolves to the CPU here: the same numbers as the default
    assert auto.predict_file(wav).to_dict() == Engine.load(run).predict_file(wav).to_dict()


# ---- a clip's answer never depends on its batch-mates ------------------------------------------------------

@pytest.fixture(scope="module")
def speaker_norm_run(tmp_path_factory):
    """A run whose models z-normalise per speaker (``speaker_norm=speaker``, 2 utterances make a speaker)."""
    return pooled_ensemble(tmp_path_factory.mktemp("spk"), speaker_norm="speaker", min_speaker_utts=2)[0]


@pytest.mark.parametrize("which", ["plain", "speaker_norm"])
def test_a_clip_alone_and_among_others_gets_the_same_probabilities(models, speaker_norm_run, which, tmp_path):
    import emoboost

    run = models[0] if which == "plain" else speaker_norm_run
    pred = Engine.load(run)
    rng = np.random.default_rng(5)
    wavs = [pitch_tone(1.0 + 0.1 * k, rng.uniform(150, 1600), seed=50 + k) for k in range(21)]
    together = pred.posteriors_many(wavs)
    alone = np.stack([pred.posteriors_many([w])[0] for w in wavs])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)  # BLAS rounding only
    files = [write_wav(tmp_path / f"c{k}.wav", w) for k, w in enumerate(wavs)]
    m = emoboost.load(run)
    many = m.predict_many(files, batch_size=21)
    assert [p.probabilities for p in many] == [m.predict(f).probabilities for f in files]


def _odd_clips(d: Path) -> dict[str, Path]:
    """A DC-offset tone, a clipped tone and white noise: still labelled, each with its warning."""
    tone = pitch_tone(2.0, 300.0, 3)
    rng = np.random.default_rng(4)
    return {"dc": write_wav(d / "dc.wav", tone + 0.4),
            "clip": write_wav(d / "clip.wav", np.clip(tone * 8, -1.0, 1.0)),
            "noise": write_wav(d / "noise.wav", (0.2 * rng.standard_normal(32000)).astype(np.float32))}


def test_odd_audio_is_labelled_with_a_warning_naming_the_file(models, predictor, tmp_path, capsys):
    """Warnings only: the labels and probabilities are what the engine gives without them."""
    files = _odd_clips(tmp_path)
    rc, out, err = run_cli(capsys, models[0], *files.values(), "--format", "json")
    assert rc == 0
    got = {Path(d["path"]).stem: d for d in json.loads(out)}
    want = {"dc": "heavy DC offset", "clip": "clipped (", "noise": "no speech-like content"}
    for name, f in files.items():
        (w,) = got[name]["warnings"]
        assert w.startswith(f"{f}: {want[name]}") and f"warning: {w}" in err.splitlines()
        ref = predictor.posteriors(load_audio(f))
        assert got[name]["label"] == predictor.classes[int(np.argmax(ref))]
        assert got[name]["probabilities"] == pytest.approx(dict(zip(predictor.classes, ref)), abs=1e-5)
    clean = write_wav(tmp_path / "clean.wav", pitch_tone(2.0, 300.0, 3))
    assert predictor.predict_file(clean).warnings == []
    rows = list(csv.DictReader(io.StringIO(run_cli(capsys, models[0], files["dc"], "--format", "csv")[1])))
    assert rows[0]["warnings"].startswith(f"{files['dc']}: heavy DC offset")


def test_a_model_answering_nan_is_one_line_naming_the_file_once(models, tmp_path, capsys):
    import shutil

    from safetensors.numpy import load_file, save_file

    run = shutil.copytree(models[0], tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    for w in run.rglob("model.safetensors"):
        t = load_file(str(w))
        save_file({k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in t.items()}, str(w))
    wav = write_wav(tmp_path / "a.wav", pitch_tone(1.0, 300.0, 1))
    rc, out, err = run_cli(capsys, run, wav)
    assert rc == 1 and "=nan" not in out.lower()
    assert err.splitlines()[-2] == (f"error: {wav}: the model gave non-finite probabilities for this audio ({run}: "
                                    "check its weights, or the audio's level)")
