"""ExtractReport: one report for both engines, one definition of × real time."""

from __future__ import annotations

import numpy as np
import pytest

from emoboost.data.manifest import Manifest, Utterance
from emoboost.features.report import ExtractReport
from emoboost.features.store import FeatureStore, StoreSpec


def _stats(seconds: float, layers: int = 3, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, int]:
    frames = np.random.default_rng(seed).standard_normal((layers, int(seconds * 50), dim)).astype(np.float32)
    return frames, int(seconds * 16000)


def test_real_time_is_encoded_audio_over_encoding_wall_time(tmp_path):
    store = FeatureStore(tmp_path, "enc-1234", StoreSpec(frames=None))
    man = Manifest([Utterance(id=f"u{i}", path=f"u{i}.wav", speaker="s", label="a", corpus="t",
                               duration=1.0) for i in range(3)])
    rep = ExtractReport(files=3, keep_layers=[2])
    for i, (uid, sec) in enumerate([("u0", 2.0), ("u2", 4.0)]):
        frames, n = _stats(sec, seed=i)
        st = store.write(f"hash{uid}", frames, n, 50.0)
        rep.add(uid, f"hash{uid}", st, computed=uid == "u2")  # u0 was in the store already
    frames, n = _stats(6.0, seed=5)
    store.write("hashu1", frames, n, 50.0)
    rep.add("u1", "hashu1", None, computed=True)  # written by a Ray worker: sizes read at finish
    rep.encode_s = 2.5
    rep.finish(man, store, wall_s=7.0)
    assert list(rep.hashes) == ["u0", "u1", "u2"]  # manifest order
    assert (rep.computed, rep.reused) == (2, 1)
    assert rep.computed_seconds == pytest.approx(10.0) and rep.audio_seconds == pytest.approx(12.0)
    assert rep.samples["u1"] == 96000 and rep.frames["u1"] == 300
    assert rep.x_real_time == pytest.approx(10.0 / 2.5)  # reused audio and time outside encoding excluded
    assert list(rep.kept) == ["u0", "u2"] and rep.kept["u2"][0].shape == (1, 4)
    s = rep.summary()
    assert s["x_real_time"] == 4.0 and s["files"] == 3 and s["computed_audio_hours"] == round(10 / 3600, 4)
    assert s["bytes"] == sum(store.entry_bytes(h) for h in ("hashu0", "hashu1", "hashu2")) > 0


def test_nothing_encoded_has_no_speed():
    rep = ExtractReport(files=2, reused=2, encode_s=0.0)
    assert rep.x_real_time is None and rep.summary()["x_real_time"] is None
