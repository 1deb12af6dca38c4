"""CASIA loader: a tiny tree named like the public release, plus the real copy in ../shared."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from audio_helpers import write_tone
from emoboost.data.corpora import casia, get_corpus
from emoboost.data.corpora.base import CorpusLayoutError


def casia_tree(root: Path) -> Path:
    write_tone(root / "liuchanhg" / "angry" / "201.wav", seconds=0.2)
    write_tone(root / "ZhaoZuoxiang" / "Surprise" / "250.flac", seconds=0.25, seed=1)  # folder case varies
    write_tone(root / "wangzhe" / "neutral" / "203.wav", seconds=0.3, seed=2)
    write_tone(root / "zhaoquanyin" / "happy" / "220.flac", seconds=0.22, seed=3)
    write_tone(root / "liuchanhg" / "angry" / "201.flac", seconds=0.2, seed=4)  # same clip twice
    (root / "zhaoquanyin" / "sad").mkdir(parents=True)
    (root / "zhaoquanyin" / "sad" / "201.wav").write_bytes(b"not audio at all" * 20)
    write_tone(root / "wangzhe" / "neutral" / "notes.wav", seed=5)  # not a sentence number
    write_tone(root / "wangzhe" / "bored" / "204.wav", seed=6)      # not an emotion folder
    (root / "texts.txt").write_text("201. ...\n", encoding="utf-8")
    return root


def test_casia_tiny(tmp_path):
    root = casia_tree(tmp_path / "casia")
    m, skipped = casia.scan(root)
    assert m.ids == ["ZhaoZuoxiang_surprise_250", "liuchanhg_angry_201", "wangzhe_neutral_203",
                     "zhaoquanyin_happy_220"]
    assert [u.label for u in m] == ["surprise", "angry", "neutral", "happy"]
    assert [u.speaker for u in m] == ["ZhaoZuoxiang", "liuchanhg", "wangzhe", "zhaoquanyin"]
    assert [u.gender for u in m] == ["m", "f", "m", "f"]
    assert [u.text for u in m] == ["250", "201", "203", "220"]
    assert [u.duration for u in m] == pytest.approx([0.25, 0.2, 0.3, 0.22])
    assert all(u.corpus == "casia" for u in m)
    problems = {str(Path(p).relative_to(root)): why for p, why in skipped}
    assert set(problems) == {"liuchanhg/angry/201.wav", "zhaoquanyin/sad/201.wav", "wangzhe/neutral/notes.wav",
                             "wangzhe/bored/204.wav"}
    assert m[1].path.endswith("201.flac") and "duplicate" in problems["liuchanhg/angry/201.wav"]
    assert "unreadable" in problems["zhaoquanyin/sad/201.wav"]
    assert "convention" in problems["wangzhe/neutral/notes.wav"]
    assert "emotion folder" in problems["wangzhe/bored/204.wav"]
    assert get_corpus("CASIA") is casia and casia.INFO.classes == ("angry", "fear", "happy", "neutral", "sad",
                                                                  "surprise")


def test_casia_root_above_or_at_a_speaker_and_class_filter(tmp_path):
    root = casia_tree(tmp_path / "unpacked" / "CASIA database")
    assert casia.prepare(tmp_path).ids == casia.prepare(root).ids          # root given a level (or two) above
    one = casia.prepare(root / "wangzhe")                                  # a speaker folder: its own clips
    assert one.ids == ["wangzhe_neutral_203"] and one[0].speaker == "wangzhe"
    assert casia.prepare(root, classes=["happy", "surprise"]).ids == ["ZhaoZuoxiang_surprise_250",
                                                                       "zhaoquanyin_happy_220"]
    with pytest.raises(ValueError, match="unknown class.*anger"):
        casia.prepare(root, classes=["anger"])


def test_casia_refuses_other_layouts_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match=r"no CASIA files \(<speaker>/<emotion>/<201\.\.250>\.flac\|\.wav; "
                                                r".*\) under .*empty$"):
        casia.prepare(tmp_path / "empty")
    write_tone(tmp_path / "flat" / "angry_201.wav")
    write_tone(tmp_path / "flat" / "201.wav")   # a sentence number, but not in <speaker>/<emotion>/
    with pytest.raises(CorpusLayoutError, match=r"no CASIA files .* under .*flat \(2 other audio file\(s\) found\)"):
        casia.prepare(tmp_path / "flat")


@pytest.mark.shared
def test_casia_real(shared_dir):
    root = shared_dir / "data" / "casia"
    if not root.is_dir():
        pytest.skip(f"no CASIA copy at {root}")
    m, skipped = casia.scan(root)
    assert skipped == []
    assert len(m) == 1200
    assert m.speakers() == sorted(casia.SPEAKERS)
    assert m.labels() == list(casia.INFO.classes)
    assert Counter(u.speaker for u in m) == {s: 300 for s in casia.SPEAKERS}
    assert Counter(u.label for u in m) == {e: 200 for e in casia.EMOTIONS}
    assert sorted({u.text for u in m}) == [str(n) for n in range(201, 251)]
    assert Counter(u.gender for u in m) == {"f": 600, "m": 600}
    assert {u.extra["sample_rate"] for u in m} == {16000}
