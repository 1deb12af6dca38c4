"""Manifest: JSONL/CSV round trips of real loader output, and the list operations protocols rely on."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from builders import write_tone
from emoboost.data.corpora import emodb, iemocap
from emoboost.data.manifest import Manifest, Utterance


@pytest.fixture
def manifest(tmp_path) -> Manifest:
    """A loader-made manifest with None fields, extras of several types and a non-ASCII text."""
    for i, name in enumerate(["03a01Fa", "08b02Wb", "16a05Tc", "09a04Nb"]):
        write_tone(tmp_path / "emodb" / "wav" / f"{name}.wav", seconds=0.2 + 0.01 * i, seed=i)
    m = emodb.prepare(tmp_path / "emodb")
    odd = Utterance(id="x,1", path=str(tmp_path / "a b.wav"), speaker="007", label=None, duration=1 / 3,
                    corpus="misc", session="S1", text='Größe, "quoted"\nline', extra={"vad": [1.5, 2.0]})
    return Manifest([*m, odd])


def fields_of(m: Manifest) -> list[dict]:
    return [{k: v for k, v in asdict(u).items() if k != "extra"} for u in m]


def test_jsonl_round_trip_keeps_everything(tmp_path, manifest):
    p = manifest.write(tmp_path / "out" / "m.jsonl")
    back = Manifest.read(p)
    assert fields_of(back) == fields_of(manifest)
    assert [u.extra for u in back] == [u.extra for u in manifest]
    assert back.ids == manifest.ids
    assert isinstance(back[0].duration, float) and back[-1].duration == 1 / 3
    lines = p.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(manifest) and json.loads(lines[-1])["text"].startswith("Größe")
    assert not list(p.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_csv_round_trip_keeps_fields(tmp_path, manifest):
    p = manifest.write(tmp_path / "m.csv")
    back = Manifest.read(p)
    assert fields_of(back) == fields_of(manifest)       # None survives as empty cell -> None
    assert back[-1].speaker == "007" and back[-1].label is None
    assert back[0].gender == "m" and back[0].text == "a01"
    assert back[-1].text == 'Größe, "quoted"\nline'
    header = p.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:6] == ["id", "path", "speaker", "label", "duration", "corpus"]


def test_iemocap_extras_round_trip(tmp_path):
    s1 = tmp_path / "Session1"
    (s1 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        "[1.5 - 2.0]\tSes01F_impro01_M000\tang\t[1.0000, 4.5000, 4.0000]\n")
    write_tone(s1 / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_M000.wav", seconds=0.2)
    m = iemocap.prepare(tmp_path)
    back = Manifest.read(m.write(tmp_path / "i.jsonl"))
    assert back[0] == m[0] and back[0].extra["activation"] == 4.5 and back[0].session == "Ses01"


def test_read_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Manifest.read(tmp_path / "none.jsonl")
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "path": "a.wav", "speaker": "s", "label": "x", "duration": 1, "corpus": "c"}\n'
                 "{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        Manifest.read(p)
    p.write_text('{"id": "a", "path": "a.wav"}\n')
    with pytest.raises(ValueError, match=r"'a' lacks required field\(s\) \['speaker', 'label', 'duration'"):
        Manifest.read(p)


def test_unknown_columns_go_to_extra(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": 5, "path": "a.wav", "speaker": 3, "label": "x", "duration": "1.5", "corpus": "c", '
                 '"arousal": 0.7}\n')
    u = Manifest.read(p)[0]
    assert (u.id, u.speaker, u.duration, u.extra) == ("5", "3", 1.5, {"arousal": 0.7})


def by_label(m: Manifest) -> dict:
    return {u.id: u.label for u in m}


def test_operations(manifest):
    m = manifest
    assert len(m.filter(lambda u: u.corpus == "emodb")) == 4
    assert m.subset(["08b02Wb", "03a01Fa", "nope"]).ids == ["03a01Fa", "08b02Wb"]  # manifest order kept
    assert m.labels() == ["anger", "happiness", "neutral", "sadness"]               # None is no class
    assert m.speakers() == ["007", "03", "08", "09", "16"]
    counts = m.label_counts()
    assert counts["anger"] == 1 and counts[None] == 1
    emo = m.filter(lambda u: u.corpus == "emodb")
    groups = emo.groups("speaker")
    assert isinstance(groups, np.ndarray) and list(groups) == [u.speaker for u in emo]
    with pytest.raises(ValueError, match="'session'"):
        emo.groups("session")
    relabelled = m.map_labels({"anger": "negative", "sadness": "negative", "neutral": None})
    assert relabelled.labels() == ["happiness", "negative"]
    assert relabelled.ids == ["03a01Fa", "08b02Wb", "16a05Tc"]
    assert by_label(relabelled) == {"03a01Fa": "happiness", "08b02Wb": "negative", "16a05Tc": "negative"}
    root = str(Path(m[0].path).parents[2])
    moved = emo.rebase(root, "/data/corpora")
    assert all(u.path.startswith("/data/corpora/emodb/wav/") for u in moved)
    assert len(Manifest.concat([emo, m.subset(["x,1"])])) == 5
    with pytest.raises(ValueError, match="duplicate utterance id '03a01Fa'"):
        Manifest.concat([emo, emo])
    assert "5 utterances" in repr(m)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_write_on_a_full_disk_names_the_manifest_and_keeps_the_old_one(tmp_path, monkeypatch, suffix):
    import errno
    import os

    from emoboost import utils

    m = Manifest([Utterance("a", "/x/a.wav", "s1", "anger", 1.0, "t")])
    out = m.write(tmp_path / f"m{suffix}")
    before = out.read_bytes()
    assert Manifest.read(out).ids == ["a"]

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(utils.os, "fsync", full)
    with pytest.raises(OSError) as e:
        Manifest([]).write(out)
    assert e.value.filename == str(out) and e.value.errno == errno.ENOSPC
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_paths_are_normalised_and_bad_rows_listed_when_asked(tmp_path):
    row = {"speaker": "s", "label": "x", "duration": 1, "corpus": "c"}
    lines = [json.dumps({**row, "id": "dot", "path": "./a/x.wav"}), json.dumps({**row, "id": "up", "path": "b/../a/y.wav"}),
             json.dumps({**row, "id": "dbl", "path": "a//z.wav"}), json.dumps({"id": "half", "path": "a/h.wav"}),
             json.dumps({**row, "id": "empty", "path": " "}), "[1, 2]", "{oops",
             json.dumps({**row, "id": "dur", "path": "a/d.wav", "duration": "long"}),
             json.dumps({**row, "id": "dot", "path": "a/x.wav"})]
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(lines) + "\n")
    skipped: list = []
    m = Manifest.read(p, skipped=skipped)
    assert [(u.id, u.path) for u in m] == [("dot", "a/x.wav"), ("up", "a/y.wav"), ("dbl", "a/z.wav")]
    assert [w for w, _ in skipped] == [f"{p}:{n}" for n in (4, 5, 6, 7, 8, 9)]
    problems = [why for _, why in skipped]
    assert "lacks required field(s)" in problems[0] and "empty path" in problems[1]
    assert "not a JSON object" in problems[2] and "not valid JSON" in problems[3]
    assert "duration 'long' is not a number" in problems[4] and "duplicate utterance id 'dot'" in problems[5]
    with pytest.raises(ValueError, match=r"m.jsonl:4: manifest row 'half' lacks"):
        Manifest.read(p)  # without a list to report into, the first bad row is the error
