"""URDU loader: emotion folders and S<G><id>_F<n>_<E><nn> names as released."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import write_tone
from emoboost.data.corpora import get_corpus, urdu
from emoboost.data.corpora.base import CorpusLayoutError


def urdu_tree(root: Path) -> Path:
    write_tone(root / "Angry" / "SM1_F1_A01.wav", seconds=0.2, sr=44100)
    write_tone(root / "Angry" / "SM1_F10_A010.wav", seconds=0.25, sr=44100, seed=1)
    write_tone(root / "Happy" / "SF6_F3_H045.wav", seconds=0.3, sr=44100, seed=2)
    write_tone(root / "Neutral" / "SM5_F61_N089.wav", seconds=0.22, sr=44100, seed=3)
    write_tone(root / "Sad" / "SM24_F2_S050.wav", seconds=0.24, sr=44100, seed=4)
    write_tone(root / "Sad" / "SM5_F70_N099.wav", seed=5)            # neutral letter in the Sad folder
    (root / "Happy" / "SF1_F1_H01.wav").write_bytes(b"not audio at all" * 20)
    write_tone(root / "Happy" / "happy_01.wav", seed=6)              # not the URDU convention
    return root


def test_urdu_tiny(tmp_path):
    root = urdu_tree(tmp_path / "URDU-Dataset")
    m, skipped = urdu.scan(root)
    assert m.ids == ["SF6_F3_H045", "SM1_F10_A010", "SM1_F1_A01", "SM24_F2_S050", "SM5_F61_N089"]
    assert [u.label for u in m] == ["happy", "angry", "angry", "sad", "neutral"]
    assert [u.speaker for u in m] == ["SF6", "SM1", "SM1", "SM24", "SM5"]
    assert [u.gender for u in m] == ["f", "m", "m", "m", "m"]
    assert [(u.extra["file"], u.extra["index"]) for u in m] == [(3, 45), (10, 10), (1, 1), (2, 50), (61, 89)]
    assert all(u.text is None for u in m)      # spontaneous speech: no sentence ids
    assert [u.duration for u in m] == pytest.approx([0.3, 0.25, 0.2, 0.24, 0.22])
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"SM5_F70_N099.wav", "SF1_F1_H01.wav", "happy_01.wav"}
    assert "contradicts the folder Sad/" in problems["SM5_F70_N099.wav"]
    assert get_corpus("URDU") is urdu
    assert (urdu.INFO.default_protocol, urdu.INFO.default_folds) == ("stratified-group-kfold", 4)


def test_urdu_root_above_classes_and_layout_error(tmp_path):
    root = urdu_tree(tmp_path / "unpacked" / "URDU-Dataset")
    assert urdu.prepare(tmp_path).ids == urdu.prepare(root).ids
    assert urdu.prepare(root, classes=["neutral"]).ids == ["SM5_F61_N089"]
    with pytest.raises(CorpusLayoutError, match=r"no URDU files .* under .*Angry \(1 other audio file"):
        write_tone(tmp_path / "Angry" / "clip1.wav")
        urdu.prepare(tmp_path / "Angry")
