"""Phone and utterance probes on tiny synthetic data (the real TIMIT run is marked shared)."""

import numpy as np
import pytest
import soundfile as sf

from emoboost.data.manifest import Manifest, Utterance
from emoboost.pretrain.probe import (
    PHONES_39,
    LogMelUpstream,
    fold_phone,
    frame_labels,
    load_timit_sample,
    phone_probe,
    utterance_probe,
)

SR = 16000


def test_folding_and_frame_labels():
    assert len(PHONES_39) == 39
    assert fold_phone("ao") == "aa" and fold_phone("pcl") == "sil" and fold_phone("q") is None
    assert fold_phone("iy") == "iy"
    with pytest.raises(ValueError):
        fold_phone("xyz")
    segs = [(0, 1600, "h#"), (1600, 2400, "q"), (2400, 4000, "ix")]
    # 20 frames/s: centres at 400, 1200, 2000, 2800, 3600, 4400 samples
    lab = frame_labels(segs, 6, 20.0)
    sil, ih = PHONES_39.index("sil"), PHONES_39.index("ih")
    assert lab.tolist() == [sil, sil, -1, ih, ih, -1]  # q dropped, past the end unlabelled


def _sound(kind: str, n: int, rng) -> np.ndarray:
    t = np.arange(n) / SR
    if kind == "aa":
        return 0.3 * np.sin(2 * np.pi * 300 * t)
    if kind == "s":
        return 0.1 * rng.standard_normal(n)
    return 0.001 * rng.standard_normal(n)


@pytest.fixture
def fake_timit(tmp_path):
    rng = np.random.default_rng(0)
    for spk in ("dr1-fa", "dr1-mb", "dr2-fc", "dr2-md", "dr3-fe", "dr3-mf"):
        d = tmp_path / spk
        d.mkdir()
        for u in range(2):
            segs, wav, pos = [], [], 0
            for ph in ["h#"] + list(rng.permutation(["aa", "s", "aa", "s"])) + ["h#"]:
                n = int(rng.integers(1600, 4000))
                wav.append(_sound(ph, n, rng))
                segs.append(f"{pos} {pos + n} {ph}")
                pos += n
            sf.write(str(d / f"u{u}.wav"), np.concatenate(wav).astype(np.float32), SR)
            (d / f"u{u}.phn").write_text("\n".join(segs) + "\n")
    return tmp_path


def test_phone_probe_on_synthetic_phones(fake_timit):
    assert len(load_timit_sample(fake_timit)) == 12
    res = phone_probe(LogMelUpstream(n_mels=20), fake_timit, test_speakers=("dr3-fe", "dr3-mf"),
                      valid_speakers=("dr2-fc",), max_iter=50)
    assert res["test_accuracy"] > 0.9, res
    assert set(res["layers"]) == {0} and res["n_frames"]["test"] > 100
    with pytest.raises(ValueError, match="not in the TIMIT sample"):
        phone_probe(LogMelUpstream(n_mels=20), fake_timit, test_speakers=("dr9-zz",), valid_speakers=("dr2-fc",))


def test_utterance_probe_speaker_grouped(tmp_path):
    rng = np.random.default_rng(1)
    utts = []
    for spk in range(4):
        for i in range(4):
            label = "tone" if i % 2 else "noise"
            wav = _sound("aa" if label == "tone" else "s", 8000, rng).astype(np.float32)
            p = tmp_path / f"{spk}_{i}.wav"
            sf.write(str(p), wav, SR)
            utts.append(Utterance(f"{spk}_{i}", str(p), f"spk{spk}", label, 0.5, "toy"))
    res = utterance_probe(LogMelUpstream(n_mels=20), Manifest(utts), n_folds=4)
    assert res["n_folds"] == 4 and res["classes"] == ["noise", "tone"]
    assert res["WA"] == pytest.approx(1.0) and res["UA"] == pytest.approx(1.0)


@pytest.mark.shared
def test_real_timit_sample_loads(shared_dir):
    utts = load_timit_sample(shared_dir / "data" / "timit_sample")
    assert len(utts) == 160 and len({u.speaker for u in utts}) == 16
