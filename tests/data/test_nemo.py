"""nEMO loader: a tiny release named like the real one (data.tsv with padded speaker ids + samples/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import write_tone
from emoboost.data.corpora import get_corpus, nemo
from emoboost.data.corpora.base import CorpusLayoutError

HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"
ROWS = [
    ("WR0_surprised_64.wav", "surprised", "Ucho wykrywa dźwięki.", "ucho wykrywa dźwięki", "WR0", "male", "23"),
    ("EB0_neutral_13.wav", "neutral", "„Ród smoka” to serial.", "„ród smoka” to serial", "EB0", "female", "27"),
    ("KD0_anger_2.wav", "anger", "Nie waśńmy się.", "nie waśńmy się", "KD0", "female", "28"),
    ("KD0_fear_3.wav", "anger", "Chodźmy w tango.", "chodźmy w tango", "KD0", "female", "28"),  # emotion mismatch
    ("MP0_sadness_9.wav", "sadness", "Piłka nożna.", "piłka nożna", "MP0", "male", "24"),         # file missing
    ("SM0_fear_66.wav", "fear", "Rtęć.", "rtęć", "SM0", "male", "24"),                          # unreadable
]


def nemo_release(root: Path) -> Path:
    rows = [(*r[:4], f"        {r[4]}", *r[5:]) for r in ROWS]   # the release pads speaker ids with spaces
    (root / "samples").mkdir(parents=True)
    (root / "data.tsv").write_text(HEADER + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    for k, (name, *_rest) in enumerate(ROWS):
        if name.startswith(("WR0", "EB0", "KD0")):
            write_tone(root / "samples" / name, seconds=0.2 + 0.01 * k, sr=24000, seed=k)
    (root / "samples" / "SM0_fear_66.wav").write_bytes(b"not audio at all" * 20)
    write_tone(root / "samples" / "TP0_fear_1.wav", seconds=0.1)   # not listed in data.tsv
    return root


def test_nemo_tiny(tmp_path):
    root = nemo_release(tmp_path / "nEMO")
    m, skipped = nemo.scan(root)
    assert m.ids == ["EB0_neutral_13", "KD0_anger_2", "WR0_surprised_64"]
    assert [u.label for u in m] == ["neutral", "anger", "surprised"]
    assert [u.speaker for u in m] == ["EB0", "KD0", "WR0"]
    assert [u.gender for u in m] == ["f", "f", "m"]
    assert [u.text for u in m] == ["13", "2", "64"]
    assert [u.extra["age"] for u in m] == [27, 28, 23]
    assert m[0].extra["raw_text"] == "„Ród smoka” to serial." and m[0].extra["sample_rate"] == 24000
    assert [u.duration for u in m] == pytest.approx([0.21, 0.22, 0.2])
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"KD0_fear_3.wav", "MP0_sadness_9.wav", "SM0_fear_66.wav", "TP0_fear_1.wav"}
    assert "data.tsv:5" in problems["KD0_fear_3.wav"] and "disagree" in problems["KD0_fear_3.wav"]
    assert "missing" in problems["MP0_sadness_9.wav"]
    assert "unreadable" in problems["SM0_fear_66.wav"]
    assert "not listed in data.tsv" in problems["TP0_fear_1.wav"]
    assert get_corpus("nEMO") is nemo


def test_nemo_roots_above_and_below_and_classes(tmp_path):
    root = nemo_release(tmp_path / "unpacked" / "nEMO-main")
    ids = nemo.prepare(root).ids
    assert nemo.prepare(root / "samples").ids == ids          # the samples/ folder
    assert nemo.prepare(tmp_path / "unpacked").ids == ids     # the folder the archive was unpacked into
    assert nemo.prepare(root, classes=["anger", "surprised"]).ids == ["KD0_anger_2", "WR0_surprised_64"]
    with pytest.raises(ValueError, match="unknown class.*surprise'"):
        nemo.prepare(root, classes=["surprise"])


def test_nemo_refuses_other_layouts(tmp_path):
    write_tone(tmp_path / "samples" / "WR0_anger_1.wav")   # samples/ without data.tsv
    with pytest.raises(CorpusLayoutError, match=r"no nEMO release \(data.tsv beside samples/<SPK>_<emotion>_<n>"):
        nemo.prepare(tmp_path)
    (tmp_path / "data.tsv").write_text("file\tlabel\nWR0_anger_1.wav\tanger\n")
    with pytest.raises(ValueError, match=r"data.tsv: missing column\(s\) \['file_id', 'emotion', 'speaker_id'\]"):
        nemo.prepare(tmp_path)
