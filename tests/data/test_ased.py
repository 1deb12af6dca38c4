"""ASED loader: emotion folders and file names as released, including the capital letter and gender typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import write_tone
from emoboost.data.corpora import ased, get_corpus
from emoboost.data.corpora.base import CorpusLayoutError


def ased_tree(root: Path) -> Path:
    write_tone(root / "05Angry" / "a5-03-01-02-50.wav", seconds=0.2)
    write_tone(root / "01Neutral" / "n1-01-02-01-21.wav", seconds=0.25, seed=1)
    write_tone(root / "04Sad" / "S4-04-02-01-29.wav", seconds=0.3, seed=2)        # capital letter, as released
    write_tone(root / "02Fearful" / "f2-06-01-01-21.wav", seconds=0.22, seed=3)
    write_tone(root / "03Happy" / "h3-07-01-02-21.wav", seconds=0.24, seed=4)     # speaker 21 under code 02 once
    write_tone(root / "03Happy" / "a5-01-01-02-50.wav", seed=5)                    # angry file in the happy folder
    write_tone(root / "05Angry" / "a3-01-01-02-50.wav", seed=6)                    # letter and number disagree
    (root / "01Neutral" / "n1-02-01-02-07.wav").write_bytes(b"not audio at all" * 20)
    (root / "README.md").write_text("ASED v1\n")
    return root


def test_ased_tiny(tmp_path):
    root = ased_tree(tmp_path / "ASED_V1")
    m, skipped = ased.scan(root)
    assert m.ids == ["a5-03-01-02-50", "f2-06-01-01-21", "h3-07-01-02-21", "n1-01-02-01-21", "s4-04-02-01-29"]
    assert [u.label for u in m] == ["angry", "fearful", "happy", "neutral", "sad"]
    assert [u.speaker for u in m] == ["50", "21", "21", "21", "29"]
    # speaker 21 is female in 2 of 3 files: the one file coded 02 is a typo, not a second (male) speaker
    assert [u.gender for u in m] == ["m", "f", "f", "f", "f"]
    assert [u.extra["gender_code"] for u in m] == ["02", "01", "02", "01", "01"]
    assert [u.extra["sentence"] for u in m] == ["03", "06", "07", "01", "04"]
    assert [u.extra["repetition"] for u in m] == [1, 1, 1, 2, 2]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.22, 0.24, 0.25, 0.3])
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"a5-01-01-02-50.wav", "a3-01-01-02-50.wav", "n1-02-01-02-07.wav"}
    assert "03Happy/" in problems["a5-01-01-02-50.wav"] and "contradicts" in problems["a3-01-01-02-50.wav"]
    assert "unreadable" in problems["n1-02-01-02-07.wav"]
    assert get_corpus("ASED") is ased
    assert ased.INFO.classes == ("angry", "fearful", "happy", "neutral", "sad")


def test_ased_root_above_classes_and_layout_error(tmp_path):
    root = ased_tree(tmp_path / "x" / "ASED_V1")
    assert ased.prepare(tmp_path).ids == ased.prepare(root).ids
    assert ased.prepare(root, classes=["sad"]).ids == ["s4-04-02-01-29"]
    write_tone(tmp_path / "other" / "anger_01.wav")
    with pytest.raises(CorpusLayoutError, match=r"no ASED files \(05Angry/a5-03-01-02-50.wav, ...\) under .*other "
                                                r"\(1 other audio file\(s\) found\)"):
        ased.prepare(tmp_path / "other")
