"""Acoustic features of a corpus: computed once per (parameters, audio content), bad files skipped."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from emoboost.audio import Segmenting
from emoboost.data.manifest import Manifest, Utterance
from emoboost.features import acoustic
from emoboost.features.pipeline import compute_corpus_features, wav_features


def test_corpus_features_are_cached_and_bad_files_skipped(tmp_path, tone, monkeypatch):
    paths = [tone(f"a{i}.wav", seconds=d, seed=i) for i, d in enumerate([1.0, 4.0])]
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC garbage")
    man = Manifest([*(Utterance(id=p.stem, path=str(p), speaker="s", label="x", duration=1.0, corpus="t")
                      for p in paths),
                    Utterance(id="bad", path=str(bad), speaker="s", label="x", duration=1.0, corpus="t")])
    calls = []
    real = acoustic.FEATURES["mfcc"]

    @functools.wraps(real)
    def counting(wav, **kw):
        calls.append(1)
        return real(wav, **kw)

    monkeypatch.setitem(acoustic.FEATURES, "mfcc", counting)
    cache = str(tmp_path / "c")
    feats, skipped = compute_corpus_features(man, ["mfcc"], Segmenting(3.0), cache, progress=False)
    assert feats["mfcc"]["a0"].shape == (1, 300, 40) and feats["mfcc"]["a1"].shape == (2, 300, 40)
    assert [p for p, _ in skipped] == [str(bad)] and "bad" not in feats["mfcc"] and len(calls) == 3
    again, _ = compute_corpus_features(man, ["mfcc"], Segmenting(3.0), cache, progress=False)
    assert len(calls) == 3  # read from the cache
    np.testing.assert_array_equal(again["mfcc"]["a1"], feats["mfcc"]["a1"])
    compute_corpus_features(man, ["mfcc"], Segmenting(2.0), cache, progress=False)  # new key -> recompute
    assert len(calls) == 3 + 1 + 2


def test_ssl_and_unknown_names_are_refused():
    wav = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ValueError, match="feature store"):
        wav_features(wav, ["ssl"], Segmenting(1.0))
    with pytest.raises(ValueError, match="unknown feature"):
        compute_corpus_features(Manifest([]), ["mfcc", "pitch"], Segmenting(1.0), "/nonexistent")
