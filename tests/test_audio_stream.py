"""Streamed reading (audio.stream_audio) gives the samples of whole-file reading."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from emoboost.audio import AudioError, load_audio, stream_audio


def _noise(path, seconds: float, sr: int, channels: int = 1, seed: int = 0, subtype: str | None = None):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    sf.write(str(path), x.astype(np.float32), sr, subtype=subtype)
    return path


@pytest.mark.parametrize("seconds,block", [(7.3, 1.0), (4.0, 1.0), (0.2, 1.0), (3.0, 0.37)])
def test_native_rate_blocks_equal_whole_file_exactly(tmp_path, seconds, block):
    path = _noise(tmp_path / "a.wav", seconds, 16000)
    blocks = list(stream_audio(path, block_seconds=block))
    want = load_audio(path)
    np.testing.assert_array_equal(np.concatenate(blocks), want)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert all(len(b) == int(round(block * 16000)) for b in blocks[:-1])
    assert 0 < len(blocks[-1]) <= int(round(block * 16000))


def test_stereo_native_rate_mixes_like_load_audio(tmp_path):
    path = _noise(tmp_path / "st.flac", 2.5, 16000, channels=2, seed=3, subtype="PCM_24")
    np.testing.assert_array_equal(np.concatenate(list(stream_audio(path, block_seconds=0.3))), load_audio(path))


@pytest.mark.parametrize("sr,channels,block", [(44100, 2, 0.5), (48000, 1, 1.3), (8000, 1, 0.25), (22050, 3, 2.0)])
def test_resampled_blocks_match_whole_file(tmp_path, sr, channels, block):
    path = _noise(tmp_path / "r.wav", 5.1, sr, channels=channels, seed=sr)
    got = np.concatenate(list(stream_audio(path, block_seconds=block)))
    want = load_audio(path)
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_reuse_yields_views_of_one_buffer(tmp_path):
    path = _noise(tmp_path / "a.wav", 3.0, 16000)
    want = load_audio(path)
    it = stream_audio(path, block_seconds=1.0, reuse=True)
    first = next(it)
    first_copy = first.copy()
    second = next(it)
    assert np.shares_memory(first, second)  # the buffer was reused, not reallocated
    np.testing.assert_array_equal(first_copy, want[:16000])
    np.testing.assert_array_equal(second, want[16000:32000])


def test_memory_does_not_grow_with_duration(tmp_path):
    path = _noise(tmp_path / "long.wav", 60.0, 44100, channels=2)
    whole = 60 * 16000 * 4  # bytes of the decoded 16 kHz file
    tracemalloc.start()
    try:
        n = sum(len(b) for b in stream_audio(path, block_seconds=1.0, reuse=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == len(load_audio(path))
    assert peak < whole / 4, f"streaming peak {peak} bytes is not small against the whole file's {whole}"


def test_bad_files_raise_audio_error(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        list(stream_audio(tmp_path / "missing.wav"))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        list(stream_audio(tmp_path / "empty.wav"))
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00 not audio at all" * 10)
    with pytest.raises(AudioError, match="unreadable"):
        list(stream_audio(tmp_path / "junk.wav"))
    full = _noise(tmp_path / "full.wav", 1.0, 16000, subtype="PCM_16").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    with pytest.raises(AudioError, match="truncated"):
        list(stream_audio(tmp_path / "cut.wav"))
    x = np.zeros(16000, np.float32)
    x[12345] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        list(stream_audio(tmp_path / "nan.wav", block_seconds=0.5))
    with pytest.raises(ValueError, match="block_seconds"):
        list(stream_audio(tmp_path / "full.wav", block_seconds=0))
