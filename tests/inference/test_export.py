"""ONNX export: graphs, preprocessing file, bundle loading, and parity with the PyTorch path.

Parity reference = ``upstream.log_mel`` (transformers' extractor) + ``upstream.encode_mel`` + the numpy
head, each 30 s window encoded on its own. Real Whisper tiny.en / base encoders and EmoDB clips from
../shared (skipped when absent); a tiny random Whisper covers everything else on any machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from builders import msemoboost_final, save_tiny_whisper
from emoboost.audio import load_audio
from emoboost.cli.export import add_args, main
from emoboost.inference.bundle import is_onnx_export
from emoboost.inference.engine import Engine
from emoboost.inference.export import (
    check_head,
    export_onnx,
    export_segment_model,
    head_posteriors,
    load_head,
)
from emoboost.upstreams.whisper import WhisperEncoderUpstream

WINDOW = 480_000  # 30 s at 16 kHz


def random_head(up: WhisperEncoderUpstream, layers: list[int], seed: int = 0, n_classes: int = 7) -> dict:
    """Fixed random weights scaled so posteriors are spread out (a saturated softmax would hide errors)."""
    rng = np.random.default_rng(seed)
    f = len(layers) * up.hidden_size
    return {"classes": [f"c{i}" for i in range(n_classes)], "layers": layers, "pooling": "mean",
            "mean": rng.normal(0, 0.1, f).astype(np.float32), "scale": rng.uniform(0.5, 2.0, f).astype(np.float32),
            "weight": rng.normal(0, 2.0 / np.sqrt(f), (n_classes, f)).astype(np.float32),
            "bias": rng.normal(0, 0.1, n_classes).astype(np.float32)}


@torch.inference_mode()
def torch_posteriors(up: WhisperEncoderUpstream, head: dict, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(posteriors, frames [k, N, D]) via the upstream's own log-mel and encode_mel, 30 s windows."""
    frames = []
    for s in range(0, len(wav), WINDOW):
        w = wav[s : s + WINDOW]
        mel = torch.from_numpy(up.log_mel(w))[None]
        hidden, _ = up.encode_mel(mel, torch.tensor([mel.shape[-1]]))
        frames.append(hidden[head["layers"], 0].numpy())
    frames = np.concatenate(frames, axis=1)
    return head_posteriors(head, frames), frames


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_random(tmp_path_factory) -> WhisperEncoderUpstream:
    return WhisperEncoderUpstream(save_tiny_whisper(tmp_path_factory.mktemp("w") / "tiny-whisper"))


def _shared_upstream(shared_dir: Path, name: str) -> WhisperEncoderUpstream:
    d = shared_dir / "weights" / f"{name}-encoder"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"{name} encoder weights not found at {d}")
    return WhisperEncoderUpstream(d, name=name)


@pytest.fixture(scope="module")
def tiny_en(shared_dir) -> WhisperEncoderUpstream:
    return _shared_upstream(shared_dir, "whisper-tiny.en")


@pytest.fixture(scope="module")
def base(shared_dir) -> WhisperEncoderUpstream:
    return _shared_upstream(shared_dir, "whisper-base")


@pytest.fixture(scope="module")
def clips(shared_dir) -> dict[str, np.ndarray]:
    """Shortest and longest EmoDB files (16-bit PCM: size ~ duration) and a 35 s concatenation (2 windows)."""
    files = sorted((shared_dir / "data" / "emodb" / "wav").glob("*.wav"), key=lambda p: (p.stat().st_size, p.name))
    if not files:
        pytest.skip("no EmoDB wav files in the shared folder")
    short, long_ = load_audio(files[0]), load_audio(files[-1])
    cat = np.concatenate([long_] * (35 * 16000 // len(long_) + 1))[: 35 * 16000 + 1234]
    return {files[0].stem: short, files[-1].stem: long_, "concat35s": cat}


# ---- parity on real encoders and clips ---------------------------------------------------------

@pytest.mark.shared
@pytest.mark.parametrize("layers", [[1], [1, 2], [2, 4]])
def test_parity_tiny_en(tiny_en, clips, tmp_path, layers):
    """[2, 4] also covers the final layer_norm (hidden state 4 is tiny.en's last)."""
    head = random_head(tiny_en, layers, seed=len(layers))
    pred = Engine.load(export_onnx(tiny_en, head, tmp_path / "x"), threads=1)
    assert pred.classes == head["classes"]
    for name, wav in clips.items():
        ref, ref_frames = torch_posteriors(tiny_en, head, wav)
        blocks = list(pred.blocks(wav))
        assert len(blocks) == (2 if len(wav) > WINDOW else 1)
        got_frames = np.concatenate([pred.backend.encode(b)[0] for b in blocks], axis=1)
        assert got_frames.shape == ref_frames.shape, name
        rel = np.abs(got_frames - ref_frames).max() / np.abs(ref_frames).max()
        assert rel < 1e-4, (name, rel)
        got = head_posteriors(head, got_frames)
        # the engine's path (frames summed per block, the mean frame to head.onnx) gives the same numbers
        np.testing.assert_allclose(pred.posteriors(wav), got, atol=1e-5)
        assert ref.max() < 0.99, "head saturated: parity would be meaningless"
        err = np.abs(got - ref).max()
        assert err < 1e-4, (name, layers, err)


@pytest.mark.shared
def test_parity_base(base, clips, tmp_path):
    head = random_head(base, [1, 2], seed=7)
    pred = Engine.load(export_onnx(base, head, tmp_path / "x"), threads=1)
    name = min(clips, key=lambda k: len(clips[k]))
    ref, _ = torch_posteriors(base, head, clips[name])
    err = np.abs(pred.posteriors(clips[name]) - ref).max()
    assert ref.max() < 0.99 and err < 1e-4, (name, err)


@pytest.mark.shared
def test_log_mel_matches_extractor(tiny_en, clips):
    """The numpy log-mel equals the float32 extractor up to the extractor's own float32 rounding
    (~1.5e-5 on low-energy bins) and the same steps in float64 to 1e-6."""
    from emoboost.inference.backend_onnx import log_mel

    filters = tiny_en.feature_extractor.mel_filters
    for name, wav in clips.items():
        wav = wav[:WINDOW]
        ours = log_mel(wav, filters)
        ref = tiny_en.log_mel(wav)
        assert ours.shape == ref.shape == (80, len(wav) // 160)
        err = np.abs(ours - ref)
        assert err.max() < 3e-5 and np.mean(err > 1e-5) < 1e-3, (name, err.max())
        x = torch.from_numpy(np.concatenate([wav, np.zeros(200, np.float32)]).astype(np.float64))
        st = torch.stft(x, 400, 160, window=torch.hann_window(400, dtype=torch.float64), return_complex=True)
        m = torch.clamp(torch.from_numpy(filters).T @ (st[:, :-1].abs() ** 2), min=1e-10).log10()
        m = (torch.maximum(m, m.max() - 8.0) + 4.0) / 4.0
        np.testing.assert_allclose(ours, m[:, : len(wav) // 160].numpy(), atol=1e-6, rtol=0)


# ---- graph contents, files, predictor output (tiny random Whisper, runs everywhere) --------------

def test_encoder_stops_at_deepest_layer(tiny_random, tmp_path):
    """Per encoder layer the graph holds 2 LayerNorms and 1 attention Softmax; the final layer_norm
    is there only when the deepest listed layer is the last one."""
    import onnx

    def ops(d: Path) -> tuple[int, int]:
        types = [n.op_type for n in onnx.load(str(d / "encoder.onnx")).graph.node]
        return types.count("LayerNormalization"), types.count("Softmax")

    one = export_onnx(tiny_random, random_head(tiny_random, [1]), tmp_path / "one")
    two = export_onnx(tiny_random, random_head(tiny_random, [0, 2]), tmp_path / "two")
    assert ops(one) == (2, 1) and ops(two) == (5, 2)
    pre = json.loads((two / "preprocessing.json").read_text())
    assert pre["layers"] == [0, 2] and pre["window_samples"] == WINDOW and pre["n_mels"] == 80
    assert pre["upstream"]["fingerprint"] == tiny_random.fingerprint()
    assert pre["label_map"]["3"] == "c3" and np.load(two / pre["mel_filters"]["file"]).shape == (201, 80)
    assert is_onnx_export(two) and not is_onnx_export(tmp_path)


def test_predict_file_timeline_and_windows(tiny_random, tmp_path):
    head = random_head(tiny_random, [1, 2], seed=3)
    pred = Engine.load(export_onnx(tiny_random, head, tmp_path / "x"), threads=1)
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(WINDOW + 16000 * 5)).astype(np.float32)
    wav *= np.repeat(rng.uniform(0.1, 1.0, len(wav) // 1600 + 1), 1600)[: len(wav)]  # varying loudness
    path = tmp_path / "a.wav"
    sf.write(str(path), wav, 16000, subtype="FLOAT")
    d = pred.predict_file(path, timeline=True, vad=False).to_dict()
    ref, ref_frames = torch_posteriors(tiny_random, head, wav)
    assert d["path"] == str(path) and d["label"] == head["classes"][int(ref.argmax())]
    np.testing.assert_allclose([d["probabilities"][c] for c in head["classes"]], ref, atol=2e-5)
    # the timeline: the head on each 3 s window of each block's frames, as the torch backend shows it
    assert [(e["start"], e["end"]) for e in d["timeline"]] == [(3.0 * k, min(3.0 * k + 3, 35.0)) for k in range(12)]
    last = head_posteriors(head, ref_frames[:, 1650:])  # 33-35 s: the second block's frames 150-250
    np.testing.assert_allclose(list(d["timeline"][-1]["probabilities"].values()), last, atol=2e-5)
    assert "timeline" not in pred.predict_wav(wav[:8000]).to_dict()


def test_predict_file_streams_windows(tiny_random, tmp_path, monkeypatch):
    """Without VAD a file is read one 30 s window at a time (never loaded whole), and the streamed
    posteriors equal those of the loaded clip; silence is flagged, not labelled."""
    import emoboost.audio as audio_mod

    head = random_head(tiny_random, [2], seed=4)
    pred = Engine.load(export_onnx(tiny_random, head, tmp_path / "x"), threads=1)
    rng = np.random.default_rng(2)
    wav = (0.1 * rng.standard_normal(2 * WINDOW + 8000)).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(str(path), wav, 16000, subtype="FLOAT")
    whole = pred.predict_wav(wav, str(path)).probabilities
    sizes: list[int] = []
    real = audio_mod.stream_audio

    def spy(*a, **k):
        for b in real(*a, **k):
            sizes.append(len(b))
            yield b

    monkeypatch.setattr(audio_mod, "stream_audio", spy)
    monkeypatch.setattr(audio_mod, "load_audio", lambda *a, **k: pytest.fail("the whole file was loaded"))
    got = pred.predict_file(path, vad=False)
    assert got.duration == pytest.approx(len(wav) / 16000) and sizes and max(sizes) <= WINDOW
    np.testing.assert_allclose(list(got.probabilities.values()), list(whole.values()), atol=2e-5)
    sf.write(str(tmp_path / "zeros.wav"), np.zeros(40000, np.float32), 16000, subtype="FLOAT")
    quiet = pred.predict_file(tmp_path / "zeros.wav")
    assert quiet.silent and quiet.label is None


def test_bad_inputs(tiny_random, tmp_path):
    from emoboost.audio import AudioError

    out = export_onnx(tiny_random, random_head(tiny_random, [1]), tmp_path / "x")
    pred = Engine.load(out)

    with pytest.raises(ValueError, match="CPU provider; --device cuda does not apply"):
        Engine.load(out, device="cuda")
    with pytest.raises(AudioError, match="x.wav: too short"):
        pred.predict_wav(np.zeros(100, np.float32), "x.wav")
    with pytest.raises(AudioError, match="NaN"):
        pred.predict_wav(np.full(16000, np.nan, np.float32))
    with pytest.raises(AudioError, match="mono"):
        pred.predict_wav(np.zeros((2, 1600), np.float32))
    with pytest.raises(FileNotFoundError, match="nope: no such run directory or model"):
        Engine.load(tmp_path / "nope")
    (out / "head.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="head.onnx: cannot be loaded"):
        Engine.load(out)
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        export_onnx(tiny_random, random_head(tiny_random, [3]), tmp_path / "y")
    bad = random_head(tiny_random, [1])
    bad["scale"] = bad["scale"][:-1]
    with pytest.raises(ValueError, match="scale has shape"):
        check_head(bad)
    with pytest.raises(ValueError, match="fingerprint"):
        export_onnx(tiny_random, random_head(tiny_random, [1]), tmp_path / "z", fingerprint="other-123")


def test_inference_needs_no_torch(tiny_random, tmp_path):
    head = random_head(tiny_random, [2], seed=5)
    out = export_onnx(tiny_random, head, tmp_path / "x")
    wav = (0.1 * np.random.default_rng(1).standard_normal(24000)).astype(np.float32)
    sf.write(str(tmp_path / "a.wav"), wav, 16000, subtype="FLOAT")
    code = (
        "import json, sys\n"
        "from emoboost.inference.engine import Engine\n"
        f"d = Engine.load({str(out)!r}).predict_file({str(tmp_path / 'a.wav')!r}).to_dict()\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'p': d['probabilities']}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    ref, _ = torch_posteriors(tiny_random, head, wav)
    np.testing.assert_allclose([got["p"][c] for c in head["classes"]], ref, atol=2e-5)


# ---- bundle loading and the command-line hook ------------------------------------------------------

def test_load_head_from_bundle_json(tiny_random, tmp_path):
    head = random_head(tiny_random, [0, 2], seed=9)
    spec = {"spec": str(tiny_random.source), "fingerprint": tiny_random.fingerprint()}
    a = tmp_path / "a"
    a.mkdir()
    listed = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in head.items()}
    (a / "bundle.json").write_text(json.dumps({"classes": head["classes"], "features": ["ssl"], "upstream": spec,
                                               "head": listed}))
    got, up = load_head(a)
    assert up == spec and got["classes"] == head["classes"] and got["layers"] == [0, 2]
    for k in ("mean", "scale", "weight", "bias"):
        np.testing.assert_array_equal(got[k], head[k])
    (a / "bundle.json").write_text(json.dumps({"classes": head["classes"], "features": ["ssl"], "upstream": spec}))
    with pytest.raises(ValueError, match="the run saved no models|'models' must list"):
        load_head(a)
    with pytest.raises(FileNotFoundError, match="no bundle.json"):
        load_head(tmp_path)


def test_main_exports_a_bundle(tiny_random, tmp_path, capsys):
    head = random_head(tiny_random, [1], seed=11)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    listed = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in head.items()}
    up = {"spec": str(tiny_random.source), "fingerprint": tiny_random.fingerprint()}
    meta = {"classes": head["classes"], "features": ["ssl"]}
    (bundle / "bundle.json").write_text(json.dumps({**meta, "upstream": up, "head": listed}))
    parser = add_args(argparse.ArgumentParser())
    assert main(parser.parse_args([str(bundle), "--format", "onnx", "--out", str(tmp_path / "onnx")])) == 0
    assert "wrote" in capsys.readouterr().out
    wav = (0.1 * np.random.default_rng(2).standard_normal(20000)).astype(np.float32)
    ref, _ = torch_posteriors(tiny_random, head, wav)
    np.testing.assert_allclose(Engine.load(tmp_path / "onnx").posteriors(wav), ref, atol=1e-5)
    assert main(parser.parse_args([str(bundle), "--out", str(tmp_path / "onnx")])) == 0  # its own folder: again
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "encoder.onnx").write_bytes(b"my encoder")
    (mine / "summary.md").write_text("my notes")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    for target in (mine, bundle):  # a user's folder, the model bundle itself
        with pytest.raises(ValueError, match=f"{target}: not empty and not written by `emoboost export`"):
            main(parser.parse_args([str(bundle), "--out", str(target)]))
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json"]
    (bundle / "bundle.json").write_text(json.dumps({**meta, "upstream": {**up, "fingerprint": "x-0"}, "head": listed}))
    with pytest.raises(ValueError, match="trained on x-0"):
        main(parser.parse_args([str(bundle), "--out", str(tmp_path / "onnx2")]))
    assert not (tmp_path / "onnx2").exists()  # a refused export leaves no folder behind


# ---- MS-EmoBoost: the whole network as a segment head ------------------------------------------------

def _segment_parity(bundle_dir: Path, onnx_dir: Path, wavs: dict[str, np.ndarray], upstream=None) -> float:
    """Largest |ONNX - PyTorch| over utterance and per-segment posteriors of these clips."""
    from emoboost.inference.engine import Engine

    torch_pred = Engine.load(bundle_dir, upstream=upstream)
    onnx_pred = Engine.load(onnx_dir, threads=1)
    worst = 0.0
    for name, wav in wavs.items():
        ref = torch_pred.predict_wav(wav, name, timeline=True)
        got = onnx_pred.predict_wav(wav, name, timeline=True)
        assert got.label == ref.label and len(got.timeline) == len(ref.timeline), name
        assert [(e["start"], e["end"]) for e in got.timeline] == [(e["start"], e["end"]) for e in ref.timeline]
        pairs = [(got.probabilities, ref.probabilities)] + [(g["probabilities"], r["probabilities"])
                                                           for g, r in zip(got.timeline, ref.timeline)]
        assert max(ref.probabilities.values()) < 0.99, "saturated: parity would be meaningless"
        worst = max(worst, max(abs(g[c] - r[c]) for g, r in pairs for c in r))
    return worst


@pytest.mark.parametrize("encoding,layer,guidance,params", [
    ("utterance", 1, "both", {}), ("segment", "weighted", "mfcc", {}),
    ("utterance", 2, "mfcc", {"mask_padding": True, "enh": "bounded"}),
    ("utterance", -1, "mfcc", {"finetune_top": 1})])
def test_msemoboost_export_matches_pytorch(tiny_random, tmp_path, capsys, encoding, layer, guidance, params):
    rng = np.random.default_rng(7)
    clips = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (1.2, 3.0, 4.5, 2.0)]
    bundle = msemoboost_final(tiny_random, clips, tmp_path / "final", encoding, layer, guidance, **params)
    parser = add_args(argparse.ArgumentParser())
    assert main(parser.parse_args([str(bundle), "--out", str(tmp_path / "onnx")])) == 0
    assert "msemoboost on 3 s segments" in capsys.readouterr().out
    pre = json.loads((tmp_path / "onnx" / "preprocessing.json").read_text())
    assert pre["head"]["kind"] == "segments" and pre["segments"]["encoding"] == encoding
    assert set(pre["head"]["inputs"]) == {"ssl", *([guidance] if guidance != "both" else ["mfcc", "spec"]),
                                          *(["valid"] if params.get("mask_padding") else [])}
    long_ = np.concatenate([clips[2]] * 8)[: 16000 * 34]  # two encoder windows, 12 segments
    err = _segment_parity(bundle, tmp_path / "onnx", {"a": clips[0], "b": clips[2], "long": long_})
    assert err < 1e-4, err
    path = tmp_path / "long.wav"
    sf.write(str(path), long_, 16000, subtype="FLOAT")
    streamed = Engine.load(tmp_path / "onnx").predict_file(path, vad=False)
    whole = Engine.load(tmp_path / "onnx").predict_wav(long_)
    np.testing.assert_allclose(list(streamed.probabilities.values()), list(whole.probabilities.values()), atol=2e-5)


def test_export_refuses_what_it_cannot_export(tiny_random, tmp_path):
    class Other:
        name = "ssl_cnn"

    with pytest.raises(ValueError, match="segment export supports trained msemoboost models, got 'ssl_cnn'"):
        export_segment_model(tiny_random, Other(), {}, tmp_path / "x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "bundle.json").write_text(json.dumps({"classes": ["a", "b"], "features": ["ssl"], "upstream": {"spec": "x"},
                                                 "models": ["fold0", "fold1"]}))
    parser = add_args(argparse.ArgumentParser())
    with pytest.raises(ValueError, match="cross-validation run .* cannot be exported"):
        main(parser.parse_args([str(run), "--out", str(tmp_path / "o")]))


@pytest.mark.shared
def test_msemoboost_parity_tiny_en(tiny_en, clips, tmp_path):
    """Real encoder, real EmoDB clips (short, long, 35 s = two windows)."""
    wavs = list(clips.values())
    bundle = msemoboost_final(tiny_en, wavs[:2], tmp_path / "final", "utterance", -1, "both")
    from emoboost.methods import Method

    export_segment_model(tiny_en, Method.load(bundle), json.loads((bundle / "bundle.json").read_text()),
                         tmp_path / "onnx")
    err = _segment_parity(bundle, tmp_path / "onnx", clips)
    assert err < 1e-4, err
