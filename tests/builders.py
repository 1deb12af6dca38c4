"""The tests' builders: synthetic audio, tiny corpora, tiny random encoders, trained runs and datasets.

One plain module (``conftest`` names clash between test folders, and no test module imports another):
every test that needs a tone, a tiny Whisper or a cross-validated run builds it here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emoboost.methods import UtteranceSet


def write_tone(path: Path, seconds: float = 1.0, sr: int = 16000, freq: float = 220.0, channels: int = 1,
               fmt: str | None = None, subtype: str | None = None, seed: int = 0) -> Path:
    """A short tone + noise file (real audio content, distinct per seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    x = np.stack([x] * channels, axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr, format=fmt, subtype=subtype)
    return path


EMO_FREQ = {"W": 180.0, "T": 420.0, "N": 900.0}


def tiny_wav2vec2(path: Path) -> Path:
    """2 layers, 32 dims, 200 frames/s: 3 hidden states, built in well under a second."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10)
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def emodb_tone(path: Path, freq: float, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.4 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t))
    sf.write(str(path), x.astype(np.float32), 16000)


def tiny_corpus(root: Path, seconds: float = 0.8, step: float = 0.5) -> Path:
    """EmoDB-named tones: 4 speakers x 3 emotions x 3 texts (``seconds`` + 0, 1 or 2 ``step`` long), plus one
    file that is not audio."""
    wav = root / "wav"
    wav.mkdir(parents=True)
    k = 0
    for spk in ("03", "08", "09", "10"):
        for emo, f in EMO_FREQ.items():
            for text in ("a01", "a02", "b01"):
                k += 1
                emodb_tone(wav / f"{spk}{text}{emo}a.wav", f * (1 + 0.01 * int(spk[1])), seconds + (k % 3) * step, k)
    (wav / "10b02Wa.wav").write_bytes(b"RIFF\x00\x00garbage that is not audio")
    return root


CASIA_FREQ = {"angry": 180.0, "sad": 420.0, "neutral": 900.0, "surprise": 1500.0}


def tiny_casia(root: Path) -> Path:
    """CASIA-named tones (``<speaker>/<emotion>/<sentence>.wav``): 3 speakers x 4 emotions x 3 sentences.

    Three of its emotions are :func:`tiny_corpus`'s under other names (angry/anger, sad/sadness, neutral)
    on the same tones, so a model trained on one corpus can recognise the other's; surprise is its own.
    """
    k = 0
    for spk in ("liuchanhg", "wangzhe", "zhaoquanyin"):
        for emo, f in CASIA_FREQ.items():
            for sentence in ("201", "202", "203"):
                k += 1
                path = root / spk / emo / f"{sentence}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                emodb_tone(path, f * (1 + 0.01 * len(spk)), 0.8 + (k % 3) * 0.5, 100 + k)
    return root


def cv_run(corpus: Path, upstream: Path, out: Path, cache: Path, method: str, params: dict) -> Path:
    """A finished cross-validation run of ``method`` on a :func:`tiny_corpus`."""
    from emoboost.experiment.run import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(corpus="emodb", data_root=str(corpus), upstream=str(upstream), method=method,
                           method_params=params, out_dir=str(out), cache_dir=str(cache), progress=False, tsne=False)
    run_experiment(cfg)
    return out


def save_tiny_whisper(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-dim random Whisper with encoder weights only (the ../shared layout)."""
    from safetensors.torch import save_file
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(seed)
    cfg = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        vocab_size=100, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2, decoder_start_token_id=3, begin_suppress_tokens=None,
                        suppress_tokens=None)
    model = WhisperModel(cfg)
    path.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(path)
    save_file({f"encoder.{k}": v.contiguous() for k, v in model.encoder.state_dict().items()},
              str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def synthetic(n_utt=60, L=3, T=10, D=16, n_classes=3, seed=0, informative_layer=1):
    """Class is encoded (weakly) in one layer's mean; other layers are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_utt) % n_classes
    centers = rng.standard_normal((n_classes, D)) * 3
    feats = []
    for i in range(n_utt):
        s = 1 + i % 2
        x = rng.standard_normal((s, L, T, D)).astype(np.float32)
        x[:, informative_layer] += centers[y[i]][None, None]
        feats.append(x.astype(np.float16))
    return UtteranceSet([f"u{i}" for i in range(n_utt)], y, np.array([f"s{i % 6}" for i in range(n_utt)]),
                        {"ssl": feats})


def clips(n_utt=60, L=3, D=8, n_classes=3, seed=0):
    """Utterance-encoded clips [L, T, D] float32 of varying length; class in layer 1's mean, 6 speakers."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_utt) % n_classes
    centers = rng.standard_normal((n_classes, D)) * 1.5
    frames = []
    for i in range(n_utt):
        x = rng.standard_normal((L, 5 + i % 7, D)).astype(np.float32) + rng.standard_normal(D).astype(np.float32)
        x[1] += centers[y[i]]
        frames.append(x)
    groups = np.array([f"s{(i // 3) % 6}" for i in range(n_utt)])  # every speaker has every class
    return UtteranceSet([f"u{i}" for i in range(n_utt)], y, groups, {"ssl": frames}), frames


def guided_segments(n_segments, L, T, D, frames, bins=200, seed=0, y=None, speakers=None) -> UtteranceSet:
    """Random features with the runner's layout: ssl [S, L, T', D] float16, mfcc [S, T, 40], spec [S, T, bins]."""
    rng = np.random.default_rng(seed)
    n = len(n_segments)
    feats = {"ssl": [], "mfcc": [], "spec": []}
    for s in n_segments:
        feats["ssl"].append(rng.standard_normal((s, L, T, D)).astype(np.float16))
        feats["mfcc"].append((rng.standard_normal((s, frames, 40)) * 10).astype(np.float32))
        feats["spec"].append(rng.standard_normal((s, frames, bins)).astype(np.float32))
    y = np.zeros(n, dtype=int) if y is None else np.asarray(y)
    groups = np.array(speakers if speakers is not None else [f"s{i}" for i in range(n)])
    ssl = feats["ssl"]
    data = UtteranceSet([f"u{i}" for i in range(n)], y, groups, feats)
    data.ssl_arrays = ssl  # the segment arrays the view was built from (tests compare against them)
    return data


def functionals_set(n_spk=6, per_class=4, n_classes=3, F=12, seed=0, kind="egemaps") -> UtteranceSet:
    """Class centres + a per-speaker offset + noise; every speaker has every class."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, F)) * 2.0
    ids, y, groups, feats = [], [], [], []
    for s in range(n_spk):
        offset = rng.standard_normal(F) * 0.5
        for c in range(n_classes):
            for r in range(per_class):
                ids.append(f"s{s}_c{c}_{r}")
                y.append(c)
                groups.append(f"spk{s}")
                feats.append((centres[c] + offset + rng.standard_normal(F)).astype(np.float32) * 10 + 100)
    return UtteranceSet(ids, np.array(y), np.array(groups), {kind: feats})


def logmel_images(n_utt=60, T=24, M=16, seed=0) -> UtteranceSet:
    """Class = orientation of stripes in the log-mel image (time stripes, frequency stripes, none)."""
    rng = np.random.default_rng(seed)
    t, m = np.meshgrid(np.arange(T), np.arange(M), indexing="ij")
    patterns = [np.where((t // 2) % 2 == 0, 1.0, -1.0), np.where((m // 2) % 2 == 0, 1.0, -1.0), np.zeros((T, M))]
    y = np.arange(n_utt) % 3
    feats = [(rng.standard_normal((1 + i % 2, T, M)) + 2.0 * patterns[y[i]] - 5).astype(np.float32)
             for i in range(n_utt)]
    return UtteranceSet([f"u{i}" for i in range(n_utt)], y, np.array([f"s{i % 6}" for i in range(n_utt)]),
                        {"logmel": feats})


def lone_clips(frames, y):
    """Each clip its own speaker: what predict sees (speaker norm then falls back to training statistics)."""
    return UtteranceSet([f"t{i}" for i in range(len(frames))], np.asarray(y),
                        np.array([f"lone{i}" for i in range(len(frames))]), {"ssl": list(frames)})


def head_proba(head, frames):
    from emoboost.inference.export import check_head, head_posteriors

    check_head(head)  # the head passes the exporter's own validation
    return np.stack([head_posteriors(head, f[head["layers"]]) for f in frames])


def finetune_data(tmp):
    """(tiny Whisper dir, its upstream, stored frames per clip, a 6-clip UtteranceSet with MFCCs)."""
    from emoboost.audio import Segmenting
    from emoboost.features.encode import encode_clip
    from emoboost.features.pipeline import wav_features
    from emoboost.features.store import StoreSpec
    from emoboost.features.views import ArraySource, SSLView
    from emoboost.upstreams.whisper import WhisperEncoderUpstream

    d = save_tiny_whisper(tmp / "tiny")
    up = WhisperEncoderUpstream(d)
    rng = np.random.default_rng(0)
    wavs = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (1.0, 2.5, 3.5, 1.5, 2.0, 3.0)]
    seg = Segmenting(3.0)
    frames = [encode_clip(up, w, StoreSpec(segmenting=seg))[0] for w in wavs]
    src = ArraySource(frames, [len(w) for w in wavs], frame_rate=50.0)
    src.segmenting = seg
    src.upstream_spec = str(d)
    feats = {"mfcc": [wav_features(w, ["mfcc"], seg)["mfcc"] for w in wavs]}
    y = np.arange(len(wavs)) % 2
    data = UtteranceSet([f"u{i}" for i in range(len(wavs))], y, np.array([f"s{i}" for i in range(len(wavs))]),
                        feats, ssl=SSLView(src))
    return d, up, frames, data


def pitch_tone(seconds: float, freq: float, seed: int = 0, amp: float = 0.3, sr: int = 16000) -> np.ndarray:
    """A modulated tone with a little noise, as an array (the pitch carries the class in tests)."""
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t) * (0.7 + 0.3 * np.sin(2 * np.pi * 2 * t))
    return (x + 0.03 * amp * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, **kw)
    return path


CLASSES = ["high", "low"]


def pooled_ensemble(root: Path, **params):
    """(run dir of 2 pooled logreg models on layer 1, the upstream dir, a frame model [pooling=segment]).

    Logistic regressions on a random 2-layer Whisper's pooled frames of tones (high vs low pitch), saved
    as a two-model run directory (an ensemble, like a CV run). ``params`` go to logreg (e.g.
    ``speaker_norm="speaker"``).
    """
    import json

    import pytest

    from emoboost.features.views import ArraySource, SSLView
    from emoboost.methods import get_method
    from emoboost.upstreams import build_upstream, fingerprint_spec

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOBOOST_CACHE", str(root / "cache"))
        up_dir = save_tiny_whisper(root / "tiny-whisper")
        up = build_upstream(str(up_dir))
        rng = np.random.default_rng(0)
        clips, y, groups = [], [], []
        for k in range(24):
            label = k % 2
            freq = rng.uniform(1000, 1600) if label == 0 else rng.uniform(150, 320)
            clips.append(up.extract(pitch_tone((1.0, 1.5, 2.0, 3.0)[(k // 2) % 4], freq, seed=k)))
            y.append(label)
            groups.append(f"s{k % 4}")
        data = UtteranceSet(ids=[f"u{i}" for i in range(len(y))], y=np.array(y), groups=np.array(groups),
                            ssl=SSLView(ArraySource(clips)))
        run = root / "run"
        logreg = get_method("logreg")
        for i in range(2):
            idx = np.flatnonzero(np.array(groups) != f"s{i}")
            logreg(CLASSES, layer=1, Cs=[10.0], **params).fit(data.subset(idx)).save(run / "models" / f"m{i}")
        bundle = {"classes": CLASSES, "method": "logreg",
                  "upstream": {"spec": str(up_dir), "fingerprint": fingerprint_spec(str(up_dir)), "num_layers": 3,
                               "hidden_size": 32, "frame_rate": 50.0, "layers": [1]},
                  "segment_length": 3.0, "segment_hop": None, "segment_encoding": "utterance",
                  "encoder_window": 30.0, "features": ["ssl"], "models": ["models/m0", "models/m1"]}
        (run / "bundle.json").write_text(json.dumps(bundle))
        frame_model = logreg(CLASSES, layer=1, Cs=[10.0], pooling="segment").fit(data)
    return run, up_dir, frame_model


def msemoboost_final(up, wavs: list[np.ndarray], out: Path, encoding: str = "utterance",
                       layer: int | str = 1, guidance: str = "both", **params) -> Path:
    """A final-model directory: MS-EmoBoost fitted for one epoch on these clips' features, as training makes them."""
    import json

    from emoboost.audio import Segmenting
    from emoboost.features.encode import encode_clip
    from emoboost.features.pipeline import wav_features
    from emoboost.features.store import StoreSpec
    from emoboost.features.views import ArraySource, SSLView
    from emoboost.methods import UtteranceSet
    from emoboost.methods.msemoboost import MSEmoBoost

    seg = Segmenting(3.0)
    spec = StoreSpec(encoding=encoding, frames="all", window=30.0, segmenting=seg)
    frames, seg_frames = [], 0
    for w in wavs:
        f, seg_frames = encode_clip(up, w, spec)
        frames.append(f)
    src = ArraySource(frames, [len(w) for w in wavs], frame_rate=float(up.frame_rate), encoding=encoding,
                      segment_frames=seg_frames or None)
    src.segmenting = seg
    src.upstream_spec = str(up.source)  # finetune_top copies layers from it
    feats = {n: [wav_features(w, [n], seg)[n] for w in wavs] for n in ("mfcc", "spec")}
    n = len(wavs)
    data = UtteranceSet([f"u{i}" for i in range(n)], np.arange(n) % 3, np.array([f"s{i}" for i in range(n)]),
                        feats, ssl=SSLView(src))
    m = MSEmoBoost(["a", "b", "c"], lstm_hidden=4, branch_dim=8, layer=layer, guidance=guidance, max_epochs=1,
                   batch_size=4, lr=1e-2, **params)
    m.fit(data, seed=0)
    for _ in range(8):  # shrink the output layer until posteriors are spread out: parity must see them
        if m.predict_proba(data).max() < 0.9:
            break
        with torch.no_grad():
            m.module_.out.weight.mul_(0.1)
    m.save(out)
    bundle = {"kind": "final", "classes": m.classes, "method": "msemoboost", "features": ["ssl", *m.requires[1:]],
              "segment_length": 3.0, "segment_hop": 3.0, "segment_encoding": encoding, "encoder_window": 30.0,
              "upstream": {"spec": str(up.source), "fingerprint": up.fingerprint(),
                           "layers": m.ssl_layers(up.num_layers)}}
    (out / "bundle.json").write_text(json.dumps(bundle))
    return out


def speakers_by_class(n_utt: int = 90, L: int = 5, D: int = 8, informative: tuple[int, ...] = (2,), n_spk: int = 6,
                      seed: int = 0) -> UtteranceSet:
    """Every speaker says every class (unlike test_linear.synthetic, whose speakers say one class each);
    the class lives in the ``informative`` layers' means, the other layers are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_utt) % 3
    centers = rng.standard_normal((3, D)) * 2
    frames = []
    for i in range(n_utt):
        x = rng.standard_normal((L, 6, D)).astype(np.float32)
        for k in informative:
            x[k] += centers[y[i]]
        frames.append(x)
    groups = np.array([f"s{(i // 3) % n_spk}" for i in range(n_utt)])
    return UtteranceSet([f"u{i}" for i in range(n_utt)], y, groups, {"ssl": frames})


def speaker_clips(n_speakers=8, per_class=5, n_classes=3, L=2, D=8, offset=2.0, seed=0):
    """Clips [L, T, D] whose speakers shift every frame by their own offset (what speaker adaptation removes);
    the class is in layer 1's mean, every speaker has every class. -> (UtteranceSet, frames, true offsets)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, D)) * 1.2
    offsets = {f"s{s}": rng.standard_normal(D) * offset for s in range(n_speakers)}
    frames, y, groups = [], [], []
    for s, off in offsets.items():
        for c in range(n_classes):
            for _ in range(per_class):
                x = rng.standard_normal((L, 4 + len(frames) % 5, D)).astype(np.float32) + off.astype(np.float32)
                x[1] += centers[c]
                frames.append(x)
                y.append(c)
                groups.append(s)
    data = UtteranceSet([f"u{i}" for i in range(len(y))], np.array(y), np.array(groups, dtype=object),
                        {"ssl": frames})
    return data, frames, offsets


def speaker_corpus(root: Path, speakers=("03", "08", "09", "10", "11"), texts=("a01", "a02", "b01", "b02")) -> Path:
    """EmoDB-named tones whose speakers each add their own voice (a second tone and a noise level), so that
    speaker adaptation has something to remove: speakers x 3 emotions x texts."""
    wav = root / "wav"
    wav.mkdir(parents=True)
    k = 0
    for si, spk in enumerate(speakers):
        for emo, f in EMO_FREQ.items():
            for text in texts:
                k += 1
                rng = np.random.default_rng(k)
                t = np.arange(int((0.8 + (k % 3) * 0.4) * 16000)) / 16000
                x = 0.3 * np.sin(2 * np.pi * f * t) + 0.25 * np.sin(2 * np.pi * (1300 + 700 * si) * t)
                x += (0.01 + 0.03 * si) * rng.standard_normal(len(t))
                sf.write(str(wav / f"{spk}{text}{emo}a.wav"), x.astype(np.float32), 16000)
    return root


def adapted_models(tmp: Path, adapt: str = "online") -> tuple[Path, Path, Path]:
    """A CV run of logreg with ``adapt`` on a :func:`speaker_corpus` (fold models saved) and its final model with
    the ONNX form `emoboost train` writes -> (corpus root, run dir, final model dir)."""
    import os

    from emoboost.experiment.refit import train_final

    old = os.environ.get("EMOBOOST_CACHE")
    os.environ["EMOBOOST_CACHE"] = str(tmp / "cache")
    try:
        corpus = speaker_corpus(tmp / "emodb")
        run = cv_run(corpus, save_tiny_whisper(tmp / "w"), tmp / "run", tmp / "cache", "logreg",
                     {"layer": 2, "Cs": [1.0], "adapt": adapt})
        train_final(run, tmp / "final", progress=False)
    finally:
        if old is None:
            os.environ.pop("EMOBOOST_CACHE", None)
        else:
            os.environ["EMOBOOST_CACHE"] = old
    return corpus, run, tmp / "final"
