"""Several corpora as one manifest: the label map (built-in and user files), shared classes, prefixes."""

from __future__ import annotations

import json

import pytest

from emoboost.data.crosscorpus import BUILTIN, LabelMap, corpus_plan, load_label_map, merge_corpora
from emoboost.data.manifest import Manifest, Utterance


def _corpus(name: str, labels: dict[str, int], speakers=("01", "02"), session: bool = False) -> Manifest:
    """``labels[label]`` utterances per speaker; ids repeat across corpora on purpose (``01_0``)."""
    us = []
    for spk in speakers:
        k = 0
        for lab, n in labels.items():
            for _ in range(n):
                us.append(Utterance(f"{spk}_{k}", f"/{name}/{spk}_{k}.wav", spk, lab, 1.0, name,
                                    session=f"S{spk}" if session else None))
                k += 1
    return Manifest(us)


EMODB = {"anger": 2, "boredom": 1, "disgust": 1, "fear": 1, "happiness": 1, "neutral": 2, "sadness": 1}
RAVDESS = {"angry": 1, "calm": 2, "disgust": 1, "fearful": 1, "happy": 1, "neutral": 1, "sad": 1, "surprised": 1}
CASIA = {"angry": 1, "fear": 1, "happy": 1, "neutral": 1, "sad": 1, "surprise": 3}


def test_builtin_map_gives_one_common_name_per_usual_label():
    lm = LabelMap()
    assert [lm.lookup("x", lab) for lab in ("angry", "Anger", "happy", "joy", "sad", "fearful", "surprised",
                                             "disgust", "neutral", "calm", "boredom")] == [
        "anger", "anger", "happiness", "happiness", "sadness", "fear", "surprise", "disgust", "neutral", "calm",
        "boredom"]
    assert lm.lookup("x", "excited") == "excited"  # unknown labels keep their own name
    assert set(BUILTIN.values()) == {"anger", "happiness", "sadness", "neutral", "fear", "disgust", "surprise",
                                     "calm", "boredom"}
    assert lm.name == "built-in"


def test_merge_keeps_shared_classes_and_reports_what_each_corpus_lost():
    parts = {"emodb": _corpus("emodb", EMODB), "ravdess": _corpus("ravdess", RAVDESS)}
    m, rep = merge_corpora(parts)
    assert rep.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert m.labels() == rep.classes
    # calm (ravdess only) and boredom (emodb only) are left out, never folded into neutral
    assert rep.left_out == {"emodb": {"boredom": 2}, "ravdess": {"calm": 4, "surprised": 2}}
    assert rep.renamed["ravdess"] == {"angry": "anger", "fearful": "fear", "happy": "happiness", "sad": "sadness"}
    assert rep.renamed["emodb"] == {}
    assert "emodb: boredom (2)" in rep.left_out_line() and "ravdess: calm (4), surprised (2)" in rep.left_out_line()
    assert rep.map_line().startswith("built-in (ravdess: angry→anger")
    assert len(m) == sum(len(p) for p in parts.values()) - 8


def test_merge_prefixes_ids_speakers_and_sessions_so_nothing_collides():
    a = _corpus("emodb", {"anger": 1, "sadness": 1}, session=True)
    b = _corpus("casia", {"angry": 1, "sad": 1}, session=True)
    assert set(a.ids) == set(b.ids) and set(a.speakers()) == set(b.speakers())  # they would collide
    m, _ = merge_corpora({"emodb": a, "casia": b})
    assert len(m) == 8 and len(set(m.ids)) == 8
    assert m.ids[0] == "emodb/01_0" and m[4].id == "casia/01_0"
    assert m.speakers() == ["casia/01", "casia/02", "emodb/01", "emodb/02"]
    assert {u.session for u in m} == {"emodb/S01", "emodb/S02", "casia/S01", "casia/S02"}
    assert {u.corpus for u in m} == {"emodb", "casia"}
    assert m[0].path == "/emodb/01_0.wav"  # the audio (and so the feature store key) is untouched
    with pytest.raises(ValueError, match="duplicate utterance id"):
        Manifest.concat([a, b])


def test_classes_narrow_the_shared_set_and_a_missing_one_names_the_corpus():
    parts = {"emodb": _corpus("emodb", EMODB), "casia": _corpus("casia", CASIA)}
    m, rep = merge_corpora(parts, classes=["anger", "sadness"])
    assert m.labels() == ["anger", "sadness"]
    assert rep.left_out["casia"] == {"fear": 2, "happy": 2, "neutral": 2, "surprise": 6}
    with pytest.raises(ValueError, match="emodb has no 'surprise'"):
        merge_corpora(parts, classes=["anger", "surprise"])


def test_fewer_than_two_shared_classes_is_refused_with_each_corpus_classes():
    parts = {"a": _corpus("a", {"calm": 1, "anger": 1}), "b": _corpus("b", {"boredom": 1, "angry": 1})}
    with pytest.raises(ValueError, match=r"share 1 class\(es\) \(anger\).*a: anger, calm; b: anger, boredom"):
        merge_corpora(parts)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_user_map_file_global_and_per_corpus_entries(tmp_path, suffix):
    data = {"excited": "happiness", "frustrated": None, "casia": {"surprise": None, "fear": "anxiety"},
            "emodb": {"fear": "anxiety"}, "typo_label": "anger"}
    path = tmp_path / f"map{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        import yaml

        path.write_text(yaml.safe_dump(data))
    lm = load_label_map(path)
    assert lm.name == f"{path} over the built-in map"
    assert lm.lookup("any", "Excited") == "happiness" and lm.lookup("any", "frustrated") is None
    assert lm.lookup("casia", "fear") == "anxiety" and lm.lookup("ravdess", "fear") == "fear"
    a = _corpus("emodb", {"anger": 1, "fear": 1, "excited": 1, "frustrated": 1})
    b = _corpus("casia", {"angry": 1, "fear": 1, "happy": 1, "surprise": 1})
    m, rep = merge_corpora({"emodb": a, "casia": b}, lm)
    assert rep.classes == ["anger", "anxiety", "happiness"]  # excited -> happiness meets casia's happy
    assert rep.left_out == {"emodb": {"frustrated": 2}, "casia": {"surprise": 2}}
    assert rep.renamed["emodb"] == {"excited": "happiness", "fear": "anxiety"}
    assert rep.unused_entries == ["typo_label"]
    assert rep.to_dict()["label map"] == lm.name


def test_bad_map_files_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml: label map file does not exist"):
        load_label_map(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    for text, why in (("a: [b", "not a valid label map"), ("- a\n- b\n", "a label map is a mapping"),
                      ("", "got nothing"), ("angry: 3\n", "'angry' must map to a class name or null"),
                      ("casia:\n  angry: [x]\n", "casia: 'angry' must map")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=why) as e:
            load_label_map(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    js = tmp_path / "bad.json"
    js.write_text("{angry: anger}")
    with pytest.raises(ValueError, match="bad.json: not a valid label map"):
        load_label_map(js)


def test_corpus_plan_from_flags():
    assert corpus_plan() == {}
    assert corpus_plan(["emodb", "ravdess"], "casia") == {
        "corpora": ["emodb", "ravdess", "casia"], "test_corpora": ["casia"], "protocol": "cross-corpus"}
    assert corpus_plan(leave_one_corpus_out=["a", "b"]) == {"corpora": ["a", "b"], "protocol": "leave-one-corpus-out"}
    with pytest.raises(ValueError, match="--train and --test go together"):
        corpus_plan(["emodb"])
    with pytest.raises(ValueError, match="replaces --train/--test"):
        corpus_plan(["a"], "b", ["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        corpus_plan(leave_one_corpus_out=["a"])
