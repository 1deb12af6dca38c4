"""TurEV-DB loader: Sound Source/ as released, with the repository's filtered copies beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import write_tone
from emoboost.data.corpora import get_corpus, turevdb
from emoboost.data.corpora.base import CorpusLayoutError


def turevdb_repo(root: Path) -> Path:
    src = root / "Sound Source"
    write_tone(src / "Angry" / "1157_kz_acik.wav", seconds=0.2, sr=44100)
    write_tone(src / "Calm" / "1984_sk_eger.wav", seconds=0.25, sr=44100, seed=1)
    write_tone(src / "Happy" / "1234_mt_ogul1.wav", seconds=0.3, sr=44100, seed=2)
    write_tone(src / "Sad" / "7895_hl_dil.wav", seconds=0.22, sr=44100, seed=3)
    write_tone(src / "Sad" / "7895_kz_dil.wav", seed=4)                # angry code in the Sad folder
    write_tone(src / "Sad" / "7895_xx_dil.wav", seed=5)                # unknown code
    (src / "Calm" / "1358_sk_koy.wav").write_bytes(b"not audio at all" * 20)
    # the repository's high-pass filtered copy of a test word, same name and emotion folder
    write_tone(root / "Model Output for Test Data" / "testEmotions500HighPass" / "sound" / "Angry" / "1157_kz_acik.wav",
               seconds=0.5, seed=9)
    return root


def test_turevdb_tiny_reads_only_sound_source(tmp_path):
    root = turevdb_repo(tmp_path / "TurEV-DB")
    m, skipped = turevdb.scan(root)
    assert m.ids == ["1157_kz_acik", "1234_mt_ogul1", "1984_sk_eger", "7895_hl_dil"]
    assert [u.label for u in m] == ["angry", "happy", "calm", "sad"]
    assert [u.speaker for u in m] == ["1157", "1234", "1984", "7895"]
    assert [u.text for u in m] == ["acik", "ogul1", "eger", "dil"]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.3, 0.25, 0.22])      # 0.2 s: not the filtered copy
    assert all("/Sound Source/" in u.path for u in m)
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"7895_kz_dil.wav", "7895_xx_dil.wav", "1358_sk_koy.wav"}
    assert "contradicts the folder Sad/" in problems["7895_kz_dil.wav"]
    assert "unknown TurEV-DB emotion code 'xx'" in problems["7895_xx_dil.wav"]
    assert get_corpus("TurEV-DB") is turevdb
    assert turevdb.INFO.default_protocol == "stratified-group-kfold"


def test_turevdb_other_roots(tmp_path):
    root = turevdb_repo(tmp_path / "TurEV-DB")
    ids = turevdb.prepare(root).ids
    assert turevdb.prepare(tmp_path).ids == ids
    assert turevdb.prepare(root / "Sound Source").ids == ids
    copy = tmp_path / "copy"                  # the emotion folders copied without Sound Source/
    write_tone(copy / "angry" / "1157_kz_acik.wav", seconds=0.2)
    assert turevdb.prepare(copy).ids == ["1157_kz_acik"]
    assert turevdb.prepare(root, classes=["calm"]).ids == ["1984_sk_eger"]
    write_tone(tmp_path / "flat" / "1157_kz_acik.wav")
    with pytest.raises(CorpusLayoutError, match=r"no TurEV-DB files \(Sound Source/\{Angry,Calm,Happy,Sad\}/"
                                                r"<speaker>_<code>_<word>.wav\) under .*flat$"):
        turevdb.prepare(tmp_path / "flat")
