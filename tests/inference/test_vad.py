"""Silero VAD regions on real speech with known silences; streaming equals one pass; windowing."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("onnxruntime", reason="the VAD extra (onnxruntime) is not installed")
from emoboost.inference import vad  # noqa: E402

try:
    vad.model_path("frame")
except (ImportError, FileNotFoundError) as e:  # pragma: no cover - depends on the environment
    pytest.skip(f"silero-vad model not available: {e}", allow_module_level=True)

SR = 16000
GAPS = [1.0, 2.0, 0.8, 1.5, 3.0, 1.2]  # seconds of digital silence after each clip
TOL = 0.3


@pytest.fixture(scope="module")
def speech(shared_dir):
    """Six EmoDB utterances separated by silences of known length; returns (wav, speech intervals)."""
    files = sorted((shared_dir / "data" / "emodb" / "wav").glob("*.wav"))[: len(GAPS)]
    if len(files) < len(GAPS):
        pytest.skip("EmoDB wav files not found in the shared folder")
    parts, truth, t = [np.zeros(SR // 2, np.float32)], [], 0.5
    for f, gap in zip(files, GAPS):
        x, sr = sf.read(str(f), dtype="float32")
        assert sr == SR
        truth.append((t, t + len(x) / SR))
        t += len(x) / SR + gap
        parts += [x, np.zeros(int(gap * SR), np.float32)]
    return np.concatenate(parts), truth


def _check_regions(regions, truth, duration):
    assert regions == sorted(regions)
    assert all(0 <= a < b <= duration + 1e-9 for a, b in regions)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(regions, regions[1:]))
    # every utterance is covered (up to TOL at its edges) ...
    for s, e in truth:
        covered = sum(max(0.0, min(b, e) - max(a, s)) for a, b in regions)
        assert covered >= (e - s) - 2 * TOL, f"speech {s:.2f}-{e:.2f} covered only {covered:.2f} s by {regions}"
    # ... and no region reaches into a silence by more than TOL
    gaps = [(e1, s2) for (_, e1), (s2, _) in zip(truth, truth[1:])] + [(truth[-1][1], duration)]
    for g0, g1 in gaps:
        for a, b in regions:
            assert min(b, g1 - TOL) <= max(a, g0 + TOL), f"region {a}-{b} inside the silence {g0:.2f}-{g1:.2f}"
    assert len(regions) == len(truth)


def test_regions_cover_speech_not_silence(speech):
    wav, truth = speech
    regions = vad.speech_regions(wav)
    _check_regions(regions, truth, len(wav) / SR)


def test_noise_floor_is_not_speech(speech):
    wav, truth = speech
    noisy = wav + 2e-3 * np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32)
    _check_regions(vad.speech_regions(noisy), truth, len(wav) / SR)


def test_digital_silence_has_no_regions():
    assert vad.speech_regions(np.zeros(5 * SR, np.float32)) == []
    assert vad.speech_regions(np.zeros(100, np.float32)) == []
    assert vad.speech_regions(np.zeros(0, np.float32)) == []


def test_streaming_equals_one_pass_across_block_boundaries(speech):
    wav, truth = speech
    whole = vad.speech_probabilities(wav, block_seconds=1e6)
    # 0.37 s blocks are not a multiple of the 32 ms frame: partial frames wait for the next block
    np.testing.assert_allclose(vad.speech_probabilities(wav, block_seconds=0.37), whole, atol=1e-6)
    one = vad.speech_regions(wav, block_seconds=1e6)
    blocked = vad.speech_regions(wav, block_seconds=0.37)
    assert blocked == one
    # the block boundaries fall inside utterances, yet each utterance is still one region
    inside = [k * 0.37 for k in range(int(len(wav) / SR / 0.37)) if any(s + 0.2 < k * 0.37 < e - 0.2 for s, e in truth)]
    assert len(inside) > 20
    assert all(any(a < t < b for a, b in blocked) for t in inside)


def test_iterable_blocks_and_resampled_input(speech):
    import soxr

    wav, truth = speech
    ref = vad.speech_regions(wav)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.integers(0, len(wav), 40))
    assert vad.speech_regions(iter(np.split(wav, cuts))) == ref
    up = soxr.resample(wav, SR, 44100).astype(np.float32)
    blocks = (up[i : i + 30000] for i in range(0, len(up), 30000))
    _check_regions(vad.speech_regions(blocks, sample_rate=44100), truth, len(wav) / SR)


def test_file_input_is_streamed(speech, tmp_path):
    wav, truth = speech
    path = tmp_path / "talk.flac"
    sf.write(str(path), np.stack([wav, wav], axis=1), SR)  # stereo: mixed to mono on the way
    assert vad.speech_regions(path, block_seconds=2.0) == vad.speech_regions(wav)
    import soxr

    sf.write(str(tmp_path / "talk22k.wav"), soxr.resample(wav, SR, 22050), 22050)
    _check_regions(vad.speech_regions(tmp_path / "talk22k.wav"), truth, len(wav) / SR)
    from emoboost.audio import AudioError

    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        vad.speech_regions(tmp_path / "bad.wav")


def test_sequence_and_frame_models_agree(speech):
    wav, _ = speech
    if vad.default_variant() != "sequence":
        pytest.skip("this silero-vad has no sequence model")
    seg = wav[: 4 * SR]
    np.testing.assert_allclose(vad.speech_probabilities(seg, variant="sequence"),
                               vad.speech_probabilities(seg, variant="frame"), atol=1e-5)


def test_memory_does_not_grow_with_duration(speech):
    wav, _ = speech

    def peak_for(reps: int) -> int:
        def blocks():
            for _ in range(reps):
                yield from (wav[i : i + 10 * SR] for i in range(0, len(wav), 10 * SR))
        tracemalloc.start()
        try:
            regions = vad.speech_regions(blocks())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(regions) == 6 * reps
        return peak

    short, long = peak_for(1), peak_for(12)  # 20 s vs 4 minutes of audio
    assert long < 1.25 * short + 100_000, f"peak memory grew from {short} to {long} bytes"
    assert long < len(wav) * 12 * 4 / 8


def test_parameters_change_regions(speech):
    wav, truth = speech
    merged = vad.speech_regions(wav, min_silence=2.5)  # only the 3 s silence still separates
    assert len(merged) == 2
    assert vad.speech_regions(wav, min_speech=10.0) == []
    padded = vad.speech_regions(wav, pad=0.3)
    base = vad.speech_regions(wav, pad=0.0)
    assert all(pa <= ba and pb >= bb for (pa, pb), (ba, bb) in zip(padded, base))
    with pytest.raises(ValueError, match="threshold"):
        vad.speech_regions(wav, threshold=1.5)
    with pytest.raises(ValueError, match="mono"):
        vad.speech_regions(np.zeros((2, 100), np.float32))


def test_windows_tile_regions():
    regions = [(0.0, 1.2), (2.0, 9.5), (10.0, 13.4), (20.0, 26.0), (30.0, 30.5)]
    w = vad.windows(regions, segment_length=3.0, min_length=1.0)
    assert w == [(0.0, 1.2),
                 (2.0, 5.0), (5.0, 8.0), (8.0, 9.5),   # 1.5 s remainder >= 1 s: its own window
                 (10.0, 13.4),                         # 0.4 s remainder < 1 s: joins the previous window
                 (20.0, 23.0), (23.0, 26.0),           # exact multiple
                 (30.0, 30.5)]                         # a short region stays whole
    for a, b in regions:  # no gaps, no overlaps, nothing outside the region
        inside = [(s, e) for s, e in w if a <= s < b]
        assert inside[0][0] == a and inside[-1][1] == b
        assert all(e1 == s2 for (_, e1), (s2, _) in zip(inside, inside[1:]))
    assert all(e - s < 3.0 + 1.0 for s, e in w)
    assert vad.windows(regions, segment_length=2.0, min_length=0.0)[1:6] == [
        (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 9.5), (10.0, 12.0)]
    with pytest.raises(ValueError, match="min_length"):
        vad.windows(regions, segment_length=1.0, min_length=2.0)
