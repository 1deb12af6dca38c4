"""emoboost.audio: every format and every kind of broken file, on tiny synthetic audio."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
import soundfile as sf

from builders import write_tone
from emoboost.audio import (
    MAX_PEAK,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
    AudioError,
    NotRegularFileError,
    Segmenting,
    audio_info,
    content_hash,
    is_silent,
    load_audio,
    peak_dbfs,
    rms_dbfs,
    segment,
    stream_audio,
)


@pytest.mark.parametrize("name,fmt,subtype", [
    ("a.wav", None, None),
    ("a.flac", None, None),
    ("a.aiff", "AIFF", "PCM_16"),
    ("a.ogg", "OGG", "VORBIS"),
])
def test_formats_load_same_signal(tmp_path, name, fmt, subtype):
    ref = write_tone(tmp_path / "ref.wav", seconds=0.25, subtype="FLOAT")
    p = write_tone(tmp_path / name, seconds=0.25, fmt=fmt, subtype=subtype)
    wav = load_audio(p)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == 4000
    tol = 0.05 if fmt == "OGG" else 1e-3  # lossy codec vs 16-bit PCM
    assert np.max(np.abs(wav - load_audio(ref))) < tol
    dur, sr, ch = audio_info(p)
    assert (sr, ch) == (16000, 1) and dur == pytest.approx(0.25, abs=1e-3)


def test_aiff_named_wav_is_sniffed_from_header(tmp_path):
    p = write_tone(tmp_path / "aiff.wav", seconds=0.2, fmt="AIFF", subtype="PCM_16", seed=3)
    assert p.read_bytes()[:4] == b"FORM"  # really AIFF
    wav = load_audio(p)
    assert len(wav) == 3200
    assert audio_info(p) == (pytest.approx(0.2), 16000, 1)


def test_resample_and_downmix_44k_stereo(tmp_path):
    sr, seconds = 44100, 0.3
    t = np.arange(int(sr * seconds)) / sr
    left, right = 0.4 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 300 * t)
    p = tmp_path / "st.wav"
    sf.write(str(p), np.stack([left, right], axis=1).astype(np.float32), sr, subtype="FLOAT")
    wav = load_audio(p)
    assert wav.dtype == np.float32
    assert len(wav) == round(len(t) * SAMPLE_RATE / sr)
    # mono = mean of channels: a 300 Hz tone of amplitude 0.3, preserved by the resampler
    mid = wav[500:-500]
    assert np.max(np.abs(mid)) == pytest.approx(0.3, abs=0.01)
    assert audio_info(p) == (pytest.approx(seconds, abs=1e-4), sr, 2)


def test_other_target_rate(tmp_path):
    p = write_tone(tmp_path / "a.wav", seconds=0.2)
    assert len(load_audio(p, sample_rate=8000)) == 1600


def test_missing_file(tmp_path):
    p = tmp_path / "nope.wav"
    for fn in (load_audio, audio_info):
        with pytest.raises(AudioError, match="does not exist") as e:
            fn(p)
        assert str(p) in str(e.value) and e.value.path == str(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    for fn in (load_audio, audio_info):
        with pytest.raises(AudioError, match=r"empty \(0 bytes\)") as e:
            fn(p)
        assert str(p) in str(e.value)


@pytest.mark.parametrize("cut", [1, 1000])
def test_truncated_wav(tmp_path, cut):
    good = write_tone(tmp_path / "good.wav", seconds=0.5)
    p = tmp_path / "cut.wav"
    p.write_bytes(good.read_bytes()[:-cut])
    for fn in (load_audio, audio_info):
        with pytest.raises(AudioError, match="truncated") as e:
            fn(p)
        assert str(p) in str(e.value)
    assert len(load_audio(good)) == 8000  # the intact original still loads


def test_truncated_aiff(tmp_path):
    good = write_tone(tmp_path / "good.aiff", seconds=0.5, fmt="AIFF", subtype="PCM_16")
    p = tmp_path / "cut.aiff"
    p.write_bytes(good.read_bytes()[:-300])
    with pytest.raises(AudioError, match="truncated") as e:
        audio_info(p)
    assert str(p) in str(e.value)


def test_header_only_wav_is_truncated(tmp_path):
    good = write_tone(tmp_path / "good.wav", seconds=0.1)
    p = tmp_path / "hdr.wav"
    p.write_bytes(good.read_bytes()[:44])
    for fn in (load_audio, audio_info):
        with pytest.raises(AudioError, match="truncated.*holds 0") as e:
            fn(p)
        assert str(p) in str(e.value)


def test_valid_wav_without_samples(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(str(p), np.zeros(0, dtype=np.float32), 16000)
    for fn in (load_audio, audio_info):
        with pytest.raises(AudioError, match="no audio samples") as e:
            fn(p)
        assert str(p) in str(e.value)


def test_garbage_bytes(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    for fn in (load_audio, audio_info):
        with pytest.raises(AudioError, match="unreadable") as e:
            fn(p)
        assert str(p) in str(e.value)


def test_folder_is_not_audio(tmp_path):
    d = tmp_path / "dir.wav"
    d.mkdir()
    with pytest.raises(AudioError, match="not a regular file"):
        audio_info(d)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = np.sin(np.linspace(0, 20, 3200)).astype(np.float32)
    x[100] = bad
    p = tmp_path / "nan.wav"
    sf.write(str(p), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite") as e:
        load_audio(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("peak,ok", [(1.0, True), (MAX_PEAK, True), (2e3, False), (1e30, False), (-1e30, False)])
def test_peak_beyond_the_limit_is_refused_by_every_reader(tmp_path, peak, ok):
    """Finite float samples far beyond full scale overflow float32 features (NaN posteriors) downstream."""
    x = 0.1 * np.sin(np.linspace(0, 200, 40000)).astype(np.float32)
    x[30000] = peak  # in the second stream block: checked block by block, not only at the start
    p = tmp_path / "loud.wav"
    sf.write(str(p), x, 16000, subtype="FLOAT")
    readers = [load_audio, lambda q: np.concatenate(list(stream_audio(q, block_seconds=0.5)))]
    for read in readers:
        if ok:
            assert np.max(np.abs(read(p))) == pytest.approx(abs(peak))
        else:
            with pytest.raises(AudioError, match=r"amplitude out of range: peak .* above the limit of 1000") as e:
                read(p)
            assert str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("rate,ok", [(1, False), (3999, False), (MIN_SAMPLE_RATE, True), (MAX_SAMPLE_RATE, True),
                                     (400_000, False)])
def test_absurd_sample_rate_is_refused_from_the_header(tmp_path, rate, ok):
    p = tmp_path / "rate.wav"
    sf.write(str(p), np.zeros(max(rate // 100, 8), np.int16), rate, subtype="PCM_16")
    readers = [audio_info, load_audio, lambda q: list(stream_audio(q))]
    for read in readers:
        if ok:
            read(p)
        else:
            with pytest.raises(AudioError, match=f"sample rate {rate} Hz is outside the accepted 4000-384000 Hz"):
                read(p)


def test_too_short(tmp_path):
    p = write_tone(tmp_path / "short.wav", seconds=0.1)
    assert len(load_audio(p, min_duration=0.05)) == 1600
    with pytest.raises(AudioError, match=r"too short: 0\.100 s < minimum 0\.500 s") as e:
        load_audio(p, min_duration=0.5)
    assert str(p) in str(e.value)


def test_content_hash_follows_bytes_not_name(tmp_path):
    a = write_tone(tmp_path / "a.wav", seconds=0.1, seed=1)
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())
    c = write_tone(tmp_path / "c.wav", seconds=0.1, seed=2)
    assert content_hash(a) == content_hash(b) != content_hash(c)
    assert len(content_hash(a)) == 64


def _finishes(fn, *args, timeout: float = 5.0):
    """Run ``fn(*args)`` in a daemon thread; -> ("ok", value) / ("raised", exc) / ("hung", None)."""
    box: list = []

    def target():
        try:
            box.append(("ok", fn(*args)))
        except BaseException as e:  # noqa: BLE001 - the test inspects whatever was raised
            box.append(("raised", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else ("hung", None)


def _special_files(tmp_path):
    """A FIFO, and /dev/zero both directly and behind a symlink named like audio."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    out = [fifo]
    if os.path.exists("/dev/zero"):
        link = tmp_path / "zero.wav"
        link.symlink_to("/dev/zero")
        out += ["/dev/zero", link]
    return out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("fn", [content_hash, load_audio, audio_info])
def test_devices_and_fifos_are_refused_without_hanging(tmp_path, fn):
    for p in _special_files(tmp_path):
        status, exc = _finishes(fn, p)
        assert status == "raised", f"{fn.__name__}({p}) {status}"
        assert isinstance(exc, NotRegularFileError), exc
        assert isinstance(exc, AudioError) and isinstance(exc, OSError)   # both skip paths catch it
        assert str(exc) == f"{p}: {exc.problem}" and "not a regular file" in str(exc)  # not "[Errno None] ..."
    assert "FIFO" in str(_finishes(fn, tmp_path / "pipe.wav")[1])


def test_content_hash_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        content_hash(tmp_path / "gone.wav")


# ---- silence -----------------------------------------------------------------------------------------

def test_rms_dbfs_levels():
    t = np.arange(16000) / 16000
    assert rms_dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(20 * math.log10(1 / math.sqrt(2)), abs=1e-3)
    assert rms_dbfs(np.full(100, 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=1e-4)
    assert rms_dbfs(np.zeros(16000, dtype=np.float32)) == -math.inf
    assert rms_dbfs(np.zeros(0, dtype=np.float32)) == -math.inf
    assert is_silent(np.zeros(10)) and is_silent(np.full(100, 1e-4))          # -80 dBFS
    assert not is_silent(np.full(100, 1e-2))                                    # -40 dBFS
    assert is_silent(np.full(100, 1e-2), threshold_db=-30.0)


def test_quiet_speech_is_not_digital_silence():
    """A soft take has a low RMS but clear peaks (RAVDESS's quietest: -64 dBFS RMS, -42 dBFS peak): it
    must be kept. Only a clip whose every sample stays below -60 dBFS is digital silence."""
    wav = np.zeros(16000 * 3, dtype=np.float32)
    wav[16000 : 16800] = 0.008 * np.sin(np.arange(800) * 0.3)  # one soft 50 ms burst in 3 s
    assert rms_dbfs(wav) < -60.0 and peak_dbfs(wav) > -45.0
    assert not is_silent(wav)
    assert is_silent(np.full(1000, 5e-4)) and peak_dbfs(np.zeros(4)) == -math.inf


def test_load_audio_rejects_silence_only_when_asked(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(str(p), np.zeros(48000, dtype=np.float32), 16000)
    assert len(load_audio(p)) == 48000                                          # default: unchanged
    with pytest.raises(AudioError, match=r"digital silence \(peak -inf dBFS < -60 dBFS\)") as e:
        load_audio(p, reject_silence=True)
    assert str(p) in str(e.value)
    hiss = tmp_path / "hiss.wav"
    sf.write(str(hiss), 1e-4 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000,
             subtype="FLOAT")
    with pytest.raises(AudioError, match=r"peak -6\d\.\d dBFS < -60 dBFS"):
        load_audio(hiss, reject_silence=True)
    assert len(load_audio(hiss, reject_silence=True, silence_db=-90.0)) == 16000
    tone = write_tone(tmp_path / "tone.wav", seconds=0.2)
    assert len(load_audio(tone, reject_silence=True)) == 3200


# ---- segmenting ------------------------------------------------------------------------------------

def test_segment_non_overlapping_with_zero_padding():
    seg = Segmenting(length=1.0, sample_rate=10)
    wav = np.arange(1, 26, dtype=np.float32)  # 2.5 s
    out = segment(wav, seg)
    assert out.shape == (3, 10) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], wav[:10])
    np.testing.assert_array_equal(out[1], wav[10:20])
    np.testing.assert_array_equal(out[2, :5], wav[20:])
    assert np.all(out[2, 5:] == 0)
    np.testing.assert_allclose(seg.starts(len(wav)), [0.0, 1.0, 2.0])


def test_segment_short_input_is_one_padded_window():
    seg = Segmenting(length=3.0)
    wav = np.ones(16000, dtype=np.float32)
    out = segment(wav, seg)
    assert out.shape == (1, 48000)
    assert out[0, :16000].sum() == 16000 and out[0, 16000:].sum() == 0


def test_segment_exact_multiple_has_no_empty_tail():
    seg = Segmenting(length=1.0, sample_rate=10)
    out = segment(np.ones(20, dtype=np.float32), seg)
    assert out.shape == (2, 10) and out.min() == 1.0


def test_segment_with_hop():
    seg = Segmenting(length=1.0, hop=0.5, sample_rate=10)
    wav = np.arange(25, dtype=np.float32)
    out = segment(wav, seg)
    # windows start at 0, 5, 10, 15 (15..24 covers the end)
    assert seg.num_segments(25) == 4 == out.shape[0]
    for i, start in enumerate(range(0, 20, 5)):
        chunk = wav[start:start + 10]
        np.testing.assert_array_equal(out[i, :len(chunk)], chunk)
    np.testing.assert_allclose(seg.starts(25), [0.0, 0.5, 1.0, 1.5])
    assert seg.key() == "seg1-hop0.5-sr10"


def test_segmenting_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"):
        Segmenting(length=0.0)
    with pytest.raises(ValueError, match="segment_hop"):
        Segmenting(length=1.0, hop=-1.0)
