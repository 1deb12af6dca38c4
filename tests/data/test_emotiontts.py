"""Korean emotiontts open DB loader: the repository's layout, with its unlabelled corpora beside the emotional one."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import write_tone
from emoboost.data.corpora import emotiontts, get_corpus
from emoboost.data.corpora.base import CorpusLayoutError


def emotiontts_repo(root: Path) -> Path:
    speech = root / "Dataset" / "SpeechCorpus"
    emo = speech / "Emotional"
    write_tone(emo / "plain-to-emotional" / "ema" / "wav" / "ema00001.wav", seconds=0.2, sr=22050)
    write_tone(emo / "plain-to-emotional" / "emf" / "wav" / "emf00150.wav", seconds=0.25, sr=22050, seed=1)
    write_tone(emo / "emotional-to-emotional" / "nea" / "wav" / "nea00201.wav", seconds=0.3, sr=22050, seed=2)
    write_tone(emo / "emotional-to-emotional" / "neo" / "wav" / "neo00400.wav", seconds=0.22, sr=22050, seed=3)
    write_tone(emo / "emotional-to-emotional" / "nek" / "wav" / "nek00401.wav", seed=4)    # index past 00400
    write_tone(emo / "emotional-to-emotional" / "nek" / "wav" / "nel00001.wav", seed=5)    # another speaker's file
    (emo / "emotional-to-emotional" / "nec" / "wav").mkdir(parents=True)
    (emo / "emotional-to-emotional" / "nec" / "wav" / "nec00003.wav").write_bytes(b"not audio at all" * 20)
    (emo / "emotional-to-emotional" / "nea" / "script").mkdir(parents=True)
    (emo / "emotional-to-emotional" / "nea" / "script" / "nea00201.txt").write_text("...\n", encoding="utf-8")
    write_tone(speech / "Main" / "adaptive" / "ada" / "wav" / "ada00001.wav", seed=6)    # no emotion labels
    write_tone(root / "Dataset" / "CSD" / "korean" / "wav" / "kr001a.wav", seed=7)
    return root


def test_emotiontts_tiny(tmp_path):
    root = emotiontts_repo(tmp_path / "emotiontts_open_db")
    m, skipped = emotiontts.scan(root)
    assert m.ids == ["ema00001", "emf00150", "nea00201", "neo00400"]
    assert [u.label for u in m] == ["neutral", "joy", "anger", "sad"]
    assert [u.speaker for u in m] == ["A", "F", "A", "O"]          # ema and nea: both speaker A
    assert [u.gender for u in m] == ["f", "m", "f", "m"]
    assert [u.extra["part"] for u in m] == ["plain-to-emotional"] * 2 + ["emotional-to-emotional"] * 2
    assert [u.extra["index"] for u in m] == [1, 150, 201, 400]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.25, 0.3, 0.22], abs=1e-4)   # 22.05 kHz: whole samples
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"nek00401.wav", "nel00001.wav", "nec00003.wav"}   # Main/ and CSD/ are not reported
    assert "outside 00001-00400" in problems["nek00401.wav"] and "lies in nek/" in problems["nel00001.wav"]
    assert get_corpus("emotiontts") is emotiontts
    assert emotiontts.INFO.classes == ("anger", "joy", "neutral", "sad")


def test_emotiontts_other_roots_and_layout_error(tmp_path):
    root = emotiontts_repo(tmp_path / "repo")
    emo = root / "Dataset" / "SpeechCorpus" / "Emotional"
    assert emotiontts.prepare(emo).ids == emotiontts.prepare(root).ids
    assert emotiontts.prepare(emo / "emotional-to-emotional" / "nea").ids == ["nea00201"]
    assert emotiontts.prepare(root, classes=["joy"]).ids == ["emf00150"]
    with pytest.raises(CorpusLayoutError, match=r"no emotiontts files \(Emotional/\{plain-to-emotional,"
                                                r"emotional-to-emotional\}/<spk>/wav/<spk>NNNNN.wav\) under .*Main$"):
        emotiontts.prepare(root / "Dataset" / "SpeechCorpus" / "Main")
