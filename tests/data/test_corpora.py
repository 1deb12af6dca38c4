"""Corpus loaders: tiny trees with each corpus's real naming scheme, plus EmoDB/RAVDESS from ../shared."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from builders import write_tone
from emoboost.data.corpora import (
    CORPORA,
    cremad,
    csvcorpus,
    emodb,
    emovo,
    folder,
    get_corpus,
    iemocap,
    ravdess,
    shemo,
    tess,
)
from emoboost.data.corpora.base import CorpusInfo, CorpusLayoutError
from emoboost.data.manifest import Manifest
from emoboost.protocols import PROTOCOLS


def tone(path: Path, seconds: float = 0.2, seed: int = 0) -> Path:
    return write_tone(path, seconds=seconds, seed=seed)


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not audio at all, just bytes " * 20)
    return path


def by_id(m: Manifest) -> dict:
    return {u.id: u for u in m}


# ---- registry -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CORPORA))
def test_every_registered_corpus_has_info_scan_prepare(name):
    mod = get_corpus(name)
    assert isinstance(mod.INFO, CorpusInfo)
    assert list(mod.INFO.classes) == sorted(mod.INFO.classes)
    assert len(set(mod.INFO.classes)) == len(mod.INFO.classes)
    assert mod.INFO.default_protocol in set(PROTOCOLS) - {"stratified-kfold"}   # speaker-independent
    assert callable(mod.scan) and callable(mod.prepare)


def test_get_corpus_normalises_names():
    assert get_corpus("CREMA-D") is cremad
    assert get_corpus("csv") is csvcorpus
    with pytest.raises(KeyError, match="unknown corpus"):
        get_corpus("nope")


# ---- EmoDB ----------------------------------------------------------------------------------------

def emodb_tree(root: Path) -> Path:
    wav = root / "wav"
    tone(wav / "03a01Fa.wav", 0.20)
    tone(wav / "08b02Wb.wav", 0.25, seed=1)
    tone(wav / "16a05Tc.wav", 0.30, seed=2)
    tone(wav / "13b10Lb.wav", 0.22, seed=3)
    garbage(wav / "09a01Na.wav")
    tone(wav / "notes.wav")                  # not the EmoDB convention
    garbage(wav / "._03a01Fa.wav")           # macOS metadata: ignored silently
    (root / "erkennung.txt").write_text("Nr.\tSatz\n")
    return root


def test_emodb_tiny(tmp_path):
    root = emodb_tree(tmp_path / "emodb")
    m, skipped = emodb.scan(root)
    assert m.ids == ["03a01Fa", "08b02Wb", "13b10Lb", "16a05Tc"]
    u = by_id(m)
    assert [u[i].label for i in m.ids] == ["happiness", "anger", "boredom", "sadness"]
    assert [u[i].speaker for i in m.ids] == ["03", "08", "13", "16"]
    assert [u[i].gender for i in m.ids] == ["m", "f", "f", "f"]
    assert [u[i].text for i in m.ids] == ["a01", "b02", "b10", "a05"]
    assert u["16a05Tc"].extra["version"] == "c"
    assert [u[i].duration for i in m.ids] == pytest.approx([0.20, 0.25, 0.22, 0.30])
    assert all(x.corpus == "emodb" and Path(x.path).is_absolute() and Path(x.path).exists() for x in m)
    problems = dict(skipped)
    assert set(problems) == {str(root / "wav" / "09a01Na.wav"), str(root / "wav" / "notes.wav")}
    assert "unreadable" in problems[str(root / "wav" / "09a01Na.wav")]
    assert "convention" in problems[str(root / "wav" / "notes.wav")]


def test_emodb_prepare_warns_and_accepts_wav_folder(tmp_path, caplog):
    root = emodb_tree(tmp_path / "emodb")
    with caplog.at_level(logging.WARNING, logger="emoboost.data.corpora"):
        m = emodb.prepare(root)
    assert len(m) == 4
    assert "skipped 2 file(s)" in caplog.text and "09a01Na.wav" in caplog.text
    assert emodb.prepare(root / "wav").ids == m.ids


def test_emodb_class_filter(tmp_path):
    root = emodb_tree(tmp_path / "emodb")
    m = emodb.prepare(root, classes=["anger", "sadness"])
    assert m.ids == ["08b02Wb", "16a05Tc"]
    with pytest.raises(ValueError, match="unknown class.*angry"):
        emodb.prepare(root, classes=["angry"])
    with pytest.raises(ValueError, match="no usable utterances"):
        emodb.prepare(root, classes=["fear"])  # valid class, but no file of it


def test_emodb_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(CorpusLayoutError, match=f"no EmoDB wav files .* under {tmp_path}"):
        emodb.prepare(tmp_path)
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        emodb.prepare(tmp_path / "missing")
    tone(tmp_path / "other" / "hello.wav")
    with pytest.raises(CorpusLayoutError, match=r"1 other audio file"):
        emodb.prepare(tmp_path / "other")


def test_all_unreadable_is_an_error_listing_the_file(tmp_path):
    garbage(tmp_path / "wav" / "03a01Fa.wav")
    m, skipped = emodb.scan(tmp_path)
    assert len(m) == 0 and len(skipped) == 1
    with pytest.raises(ValueError, match="03a01Fa.wav"):
        emodb.prepare(tmp_path)


@pytest.mark.shared
def test_emodb_real(shared_dir):
    m, skipped = emodb.scan(shared_dir / "data" / "emodb")
    assert skipped == []
    assert len(m) == 535
    assert m.speakers() == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert m.label_counts() == {"anger": 127, "boredom": 81, "disgust": 46, "fear": 69, "happiness": 71,
                                "neutral": 79, "sadness": 62}
    assert m.labels() == list(emodb.INFO.classes)
    genders = {u.speaker: u.gender for u in m}
    assert Counter(genders.values()) == {"m": 5, "f": 5}
    assert all(1.2 <= u.duration <= 9.0 for u in m)
    assert sum(u.duration for u in m) / 60 == pytest.approx(24.8, abs=0.1)


# ---- RAVDESS --------------------------------------------------------------------------------------

def test_ravdess_tiny(tmp_path):
    root = tmp_path / "ravdess"
    tone(root / "Actor_01" / "03-01-05-02-01-02-01.wav", 0.2)
    tone(root / "Actor_02" / "03-01-01-01-02-01-02.flac", 0.25, seed=1)
    tone(root / "Actor_24" / "03-01-08-01-01-01-24.wav", 0.3, seed=2)
    tone(root / "Actor_01" / "03-02-03-01-01-01-01.wav")     # song: not part of the speech corpus
    garbage(root / "Actor_02" / "03-01-04-02-02-02-02.wav")
    tone(root / "Actor_02" / "03-01-04.wav")                 # bad name
    m, skipped = ravdess.scan(root)
    u = by_id(m)
    assert m.ids == ["03-01-01-01-02-01-02", "03-01-05-02-01-02-01", "03-01-08-01-01-01-24"]
    a = u["03-01-05-02-01-02-01"]
    assert (a.label, a.intensity, a.speaker, a.gender, a.text, a.extra["repetition"]) == \
        ("angry", "strong", "Actor_01", "m", "01", 2)
    b = u["03-01-01-01-02-01-02"]
    assert (b.label, b.intensity, b.speaker, b.gender, b.text) == ("neutral", "normal", "Actor_02", "f", "02")
    assert b.path.endswith(".flac") and b.duration == pytest.approx(0.25)
    assert u["03-01-08-01-01-01-24"].label == "surprised"
    assert sorted(Path(p).name for p, _ in skipped) == ["03-01-04-02-02-02-02.wav", "03-01-04.wav"]
    assert ravdess.prepare(root, classes=["neutral"]).ids == ["03-01-01-01-02-01-02"]
    tone(tmp_path / "songs" / "03-02-03-01-01-01-01.wav")
    with pytest.raises(CorpusLayoutError, match=f"no RAVDESS speech files .* under {tmp_path / 'songs'}"):
        ravdess.prepare(tmp_path / "songs" / ".." / "songs")


@pytest.mark.shared
def test_ravdess_real(shared_dir):
    m, skipped = ravdess.scan(shared_dir / "data" / "ravdess")
    assert skipped == []
    assert len(m) == 1440
    assert len(m.speakers()) == 24
    assert m.labels() == list(ravdess.INFO.classes) and len(m.labels()) == 8
    counts = m.label_counts()
    assert counts["neutral"] == 96 and all(v == 192 for k, v in counts.items() if k != "neutral")
    assert Counter(u.gender for u in m) == {"m": 720, "f": 720}
    assert Counter(u.intensity for u in m) == {"normal": 768, "strong": 672}
    assert all(u.intensity == "normal" for u in m if u.label == "neutral")
    assert all(Counter(u.speaker for u in m)[s] == 60 for s in m.speakers())


# ---- EMOVO ----------------------------------------------------------------------------------------

def test_emovo_tiny(tmp_path):
    root = tmp_path / "EMOVO"
    tone(root / "f1" / "dis-f1-b1.wav", 0.2)
    tone(root / "m2" / "gio-m2-l3.wav", 0.25, seed=1)
    tone(root / "m3" / "tri-m3-n5.wav", 0.3, seed=2)
    tone(root / "m2" / "rab-f1-b1.wav", seed=3)   # file of actor f1 in m2's folder
    tone(root / "f1" / "xyz-f1-b2.wav", seed=4)   # unknown emotion code
    garbage(root / "f2" / "pau-f2-d1.wav")
    tone(root / "documents" / "readme.wav", seed=5)
    m, skipped = emovo.scan(root)
    assert m.ids == ["dis-f1-b1", "gio-m2-l3", "tri-m3-n5"]
    assert [u.label for u in m] == ["disgust", "joy", "sadness"]
    assert [u.speaker for u in m] == ["f1", "m2", "m3"]
    assert [u.gender for u in m] == ["f", "m", "m"]
    assert [u.text for u in m] == ["b1", "l3", "n5"]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.25, 0.3])
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"rab-f1-b1.wav", "xyz-f1-b2.wav", "pau-f2-d1.wav", "readme.wav"}
    assert "folder of actor m2" in problems["rab-f1-b1.wav"]
    assert emovo.prepare(root, classes="joy").ids == ["gio-m2-l3"]
    assert set(emovo.INFO.classes) == {"disgust", "joy", "neutral", "fear", "anger", "surprise", "sadness"}


# ---- IEMOCAP --------------------------------------------------------------------------------------

EVAL_1 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5000, 3.0000, 3.0000]
[14.8872 - 18.0175]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.5000]
[19.2900 - 20.7875]\tSes01F_impro01_M001\txxx\t[2.5000, 2.0000, 2.0000]
[21.3257 - 24.7999]\tSes01F_impro01_F002\tang\t[1.5000, 4.0000, 4.0000]
[25.0000 - 26.0000]\tSes01F_impro01_M002\thap\t[4.0000, 3.0000, 3.0000]
"""
EVAL_2 = "[1.0 - 2.5]\tSes02M_script01_1_F003\tsad\t[1.5000, 2.0000, 2.0000]\n"


def iemocap_tree(base: Path) -> Path:
    s1 = base / "Session1"
    (s1 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(EVAL_1)
    (s1 / "dialog" / "EmoEvaluation" / "Categorical").mkdir()  # sub-folders are not label files
    (s1 / "dialog" / "transcriptions").mkdir(parents=True)
    (s1 / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n")
    w1 = s1 / "sentences" / "wav" / "Ses01F_impro01"
    for i, utt in enumerate(["F000", "M000", "F001", "M001"]):
        tone(w1 / f"Ses01F_impro01_{utt}.wav", 0.2 + 0.01 * i, seed=i)
    garbage(w1 / "Ses01F_impro01_F002.wav")
    # Ses01F_impro01_M002 (hap) has no wav: listed as skipped
    s2 = base / "Session2"
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt").write_text(EVAL_2)
    tone(s2 / "sentences" / "wav" / "Ses02M_script01_1" / "Ses02M_script01_1_F003.wav", 0.3, seed=9)
    return base


def test_iemocap_four_class(tmp_path):
    root = tmp_path / "corpus"
    iemocap_tree(root / "IEMOCAP_full_release")
    m, skipped = iemocap.scan(root)   # finds the release folder inside
    assert m.ids == ["Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses02M_script01_1_F003"]
    u = by_id(m)
    assert [u[i].label for i in m.ids] == ["neutral", "happy", "sad"]   # exc merged into happy
    assert [u[i].speaker for i in m.ids] == ["Ses01_F", "Ses01_M", "Ses02_F"]
    assert [u[i].session for i in m.ids] == ["Ses01", "Ses01", "Ses02"]
    assert [u[i].gender for i in m.ids] == ["f", "m", "f"]
    assert [u[i].duration for i in m.ids] == pytest.approx([0.2, 0.21, 0.3])
    f0 = u["Ses01F_impro01_F000"].extra
    assert f0["emotion_code"] == "neu" and f0["mode"] == "impro" and f0["transcript"] == "Excuse me."
    assert (f0["start"], f0["end"], f0["valence"]) == (6.2901, 8.2357, 2.5)
    assert u["Ses02M_script01_1_F003"].extra["mode"] == "script"
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"Ses01F_impro01_F002.wav", "Ses01F_impro01_M002.wav"}
    assert "missing" in problems["Ses01F_impro01_M002.wav"]
    assert "unreadable" in problems["Ses01F_impro01_F002.wav"]
    assert iemocap.INFO.classes == ("angry", "happy", "neutral", "sad")


def test_iemocap_all_and_subsets(tmp_path):
    root = iemocap_tree(tmp_path / "IEMOCAP_full_release")
    m = iemocap.prepare(root, classes="all")
    assert by_id(m)["Ses01F_impro01_M000"].label == "excited"
    assert by_id(m)["Ses01F_impro01_F001"].label == "frustrated"
    assert "Ses01F_impro01_M001" not in m.ids   # xxx: no majority
    assert iemocap.prepare(root, classes=["frustrated", "sad"]).ids == ["Ses01F_impro01_F001",
                                                                        "Ses02M_script01_1_F003"]
    assert len(iemocap.prepare(root, classes="4")) == 3
    with pytest.raises(ValueError, match="classes must be 4"):
        iemocap.prepare(root, classes=5)
    with pytest.raises(CorpusLayoutError, match="no IEMOCAP sessions"):
        iemocap.prepare(tmp_path / "IEMOCAP_full_release" / "Session1" / "sentences")


# ---- ShEMO ----------------------------------------------------------------------------------------

def test_shemo_tiny(tmp_path):
    root = tmp_path / "shemo"
    tone(root / "female" / "F01A01.wav", 0.2)
    tone(root / "female" / "F14W09.wav", 0.25, seed=1)
    tone(root / "male" / "M01N02.wav", 0.3, seed=2)
    tone(root / "male" / "M02F01.wav", 0.22, seed=3)   # F in the middle = fear
    tone(root / "female" / "M03S01.wav", seed=4)       # male file in female/
    garbage(root / "male" / "M05H03.wav")
    m, skipped = shemo.scan(root)
    assert m.ids == ["F01A01", "F14W09", "M01N02", "M02F01"]
    assert [u.label for u in m] == ["anger", "surprise", "neutral", "fear"]
    assert [u.speaker for u in m] == ["F01", "F14", "M01", "M02"]
    assert [u.gender for u in m] == ["f", "f", "m", "m"]
    assert [u.extra["index"] for u in m] == [1, 9, 2, 1]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.25, 0.3, 0.22])
    assert sorted(Path(p).name for p, _ in skipped) == ["M03S01.wav", "M05H03.wav"]
    assert "contradicts" in dict(skipped)[str(root / "female" / "M03S01.wav")]
    assert shemo.prepare(root, classes=["fear", "anger"]).ids == ["F01A01", "M02F01"]


# ---- TESS -----------------------------------------------------------------------------------------

def test_tess_tiny(tmp_path):
    root = tmp_path / "TESS Toronto emotional speech set data"
    tone(root / "OAF_angry" / "OAF_back_angry.wav", 0.2)
    tone(root / "YAF_pleasant_surprised" / "YAF_dog_ps.wav", 0.25, seed=1)
    tone(root / "OAF_Pleasant_surprise" / "OAF_dog_ps.wav", 0.26, seed=2)
    tone(root / "OAF_Fear" / "OAF_base_fear.wav", 0.3, seed=3)
    tone(root / "YAF_neutral" / "YAF_germ_neutral.wav", 0.22, seed=4)
    tone(root / "OAF_sad" / "OAF_bar_happy.wav", seed=5)        # contradicts its folder
    garbage(root / "YAF_disgust" / "YAF_back_disgust.wav")
    m, skipped = tess.scan(root)
    assert m.ids == ["OAF_back_angry", "OAF_base_fear", "OAF_dog_ps", "YAF_dog_ps", "YAF_germ_neutral"]
    assert [u.label for u in m] == ["angry", "fear", "surprise", "surprise", "neutral"]
    assert [u.speaker for u in m] == ["OAF", "OAF", "OAF", "YAF", "YAF"]
    assert [u.text for u in m] == ["back", "base", "dog", "dog", "germ"]
    assert all(u.gender == "f" for u in m)
    assert [u.duration for u in m] == pytest.approx([0.2, 0.3, 0.26, 0.25, 0.22])
    assert sorted(Path(p).name for p, _ in skipped) == ["OAF_bar_happy.wav", "YAF_back_disgust.wav"]
    assert tess.INFO.classes == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert tess.prepare(root, classes=["surprise"]).speakers() == ["OAF", "YAF"]


# ---- CREMA-D --------------------------------------------------------------------------------------

def test_cremad_tiny(tmp_path):
    root = tmp_path / "CREMA-D"
    tone(root / "AudioWAV" / "1001_DFA_ANG_XX.wav", 0.2)
    tone(root / "AudioWAV" / "1002_IEO_HAP_HI.wav", 0.25, seed=1)
    tone(root / "AudioWAV" / "1091_TIE_SAD_LO.wav", 0.3, seed=2)
    tone(root / "AudioWAV" / "1003_WSI_FEA_MD.wav", 0.22, seed=3)
    tone(root / "AudioWAV" / "1003_WSI_BOR_MD.wav", seed=4)   # unknown emotion
    (root / "AudioWAV" / "1004_ITS_NEU_XX.wav").write_text(  # git-lfs pointer instead of audio
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12345\n")
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n1091,29,Female,Asian,Not Hispanic\n")
    m, skipped = cremad.scan(root)
    u = by_id(m)
    assert m.ids == ["1001_DFA_ANG_XX", "1002_IEO_HAP_HI", "1003_WSI_FEA_MD", "1091_TIE_SAD_LO"]
    assert [u[i].label for i in m.ids] == ["anger", "happy", "fear", "sad"]
    assert [u[i].speaker for i in m.ids] == ["1001", "1002", "1003", "1091"]
    assert [u[i].gender for i in m.ids] == ["m", "f", None, "f"]      # 1003 not in the demographics
    assert [u[i].intensity for i in m.ids] == [None, "high", "medium", "low"]
    assert [u[i].extra["level"] for i in m.ids] == ["XX", "HI", "MD", "LO"]
    assert [u[i].text for i in m.ids] == ["DFA", "IEO", "WSI", "TIE"]
    assert [u[i].duration for i in m.ids] == pytest.approx([0.2, 0.25, 0.22, 0.3])
    assert sorted(Path(p).name for p, _ in skipped) == ["1003_WSI_BOR_MD.wav", "1004_ITS_NEU_XX.wav"]
    # AudioWAV itself is accepted too, and demographics can be passed explicitly
    m2 = cremad.prepare(root / "AudioWAV", demographics=root / "VideoDemographics.csv", classes=["sad"])
    assert m2.ids == ["1091_TIE_SAD_LO"] and m2[0].gender == "f"
    with pytest.raises(FileNotFoundError, match="demographics"):
        cremad.prepare(root, demographics=root / "nope.csv")


# ---- generic folder-per-label ---------------------------------------------------------------------

def folder_tree(root: Path) -> Path:
    tone(root / "angry" / "spk1" / "s1_a.wav", 0.2)
    tone(root / "angry" / "spk2" / "s2_b.wav", 0.25, seed=1)
    tone(root / "happy" / "spk1" / "s1_c.flac", 0.3, seed=2)
    tone(root / "happy" / "x.wav", 0.22, seed=3)             # no speaker folder, no s<N>_ prefix
    garbage(root / "happy" / "spk2" / "s2_d.wav")
    tone(root / "loose.wav", seed=4)                          # not in a label folder
    return root


def test_folder_speaker_level(tmp_path):
    root = folder_tree(tmp_path / "mydata")
    m, skipped = folder.scan(root, speaker_level=1)
    assert m.ids == ["angry/spk1/s1_a", "angry/spk2/s2_b", "happy/spk1/s1_c"]
    assert [u.label for u in m] == ["angry", "angry", "happy"]
    assert [u.speaker for u in m] == ["spk1", "spk2", "spk1"]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.25, 0.3])
    assert {u.corpus for u in m} == {"mydata"}
    assert sorted(Path(p).name for p, _ in skipped) == ["loose.wav", "s2_d.wav", "x.wav"]


def test_folder_speaker_regex_and_file(tmp_path):
    root = folder_tree(tmp_path / "mydata")
    m, skipped = folder.scan(root, speaker_regex=r"^(?P<speaker>s\d)_", corpus="mine")
    assert [u.speaker for u in m] == ["s1", "s2", "s1"] and {u.corpus for u in m} == {"mine"}
    assert "does not match" in dict(skipped)[str(root / "happy" / "x.wav")]
    m = folder.prepare(root, speaker="file", classes=["happy"])
    assert m.ids == ["happy/spk1/s1_c", "happy/x"] and [u.speaker for u in m] == m.ids


def test_folder_requires_a_speaker_source(tmp_path):
    root = folder_tree(tmp_path / "mydata")
    with pytest.raises(ValueError, match="speaker-independent"):
        folder.prepare(root)
    with pytest.raises(ValueError, match="only one"):
        folder.prepare(root, speaker_level=1, speaker="file")
    with pytest.raises(ValueError, match="only accepts 'file'"):
        folder.prepare(root, speaker="stem")
    with pytest.raises(ValueError, match="unknown class"):
        folder.prepare(root, speaker_level=1, classes=["sad"])
    (tmp_path / "flat").mkdir()
    tone(tmp_path / "flat" / "a.wav")
    with pytest.raises(CorpusLayoutError, match="no audio files in label folders"):
        folder.prepare(tmp_path / "flat", speaker="file")


# ---- generic CSV ----------------------------------------------------------------------------------

def test_csv_corpus(tmp_path):
    base = tmp_path / "proj"
    tone(base / "audio" / "a.wav", 0.2)
    tone(base / "audio" / "b.flac", 0.25, seed=1)
    abs_file = tone(tmp_path / "elsewhere" / "c.wav", 0.3, seed=2)
    garbage(base / "audio" / "d.wav")
    csv_path = base / "meta.csv"
    csv_path.write_text(
        "path,label,speaker,gender,age,duration\n"
        "audio/a.wav,angry,s1,f,31,99\n"
        "audio/b.flac,happy,s2,,40,\n"
        f"{abs_file},,s3,m,,\n"
        "audio/d.wav,angry,s1,f,31,\n"
        "audio/missing.wav,sad,s4,,,\n"
        "audio/e.wav,sad,,,,\n")
    m, skipped = csvcorpus.scan(csv_path)
    u = by_id(m)
    assert sorted(m.ids) == sorted(["audio/a", "audio/b", str(abs_file.with_suffix(""))])
    a = u["audio/a"]
    assert (a.label, a.speaker, a.gender, a.extra["age"], a.corpus) == ("angry", "s1", "f", "31", "meta")
    assert a.path == str(base / "audio" / "a.wav") and a.duration == pytest.approx(0.2)  # not the CSV's 99
    assert u["audio/b"].gender is None and u["audio/b"].duration == pytest.approx(0.25)
    assert u[str(abs_file.with_suffix(""))].label is None     # unlabelled row
    problems = {Path(p).name: why for p, why in skipped}
    assert set(problems) == {"d.wav", "missing.wav", "e.wav"}
    assert "does not exist" in problems["missing.wav"] and "meta.csv:6" in problems["missing.wav"]
    assert "no speaker" in problems["e.wav"]
    assert csvcorpus.prepare(csv_path, classes=["happy"]).ids == ["audio/b"]


def test_csv_corpus_semicolon_and_ids(tmp_path):
    tone(tmp_path / "x.wav")
    p = tmp_path / "list.csv"
    p.write_text("id;path;label;speaker\nutt1;x.wav;calm;A\n")
    m = csvcorpus.prepare(p, corpus="demo")
    assert m.ids == ["utt1"] and m[0].label == "calm" and m[0].corpus == "demo"


def test_csv_corpus_paths_in_any_spelling_are_one_id(tmp_path):
    tone(tmp_path / "a" / "x.wav")
    tone(tmp_path / "a" / "y.wav", seed=1)
    p = tmp_path / "list.csv"
    p.write_text("path,label,speaker\n./a/x.wav,calm,A\nb/../a//y.wav,sad,B\na/x.wav,calm,A\n")
    m, skipped = csvcorpus.scan(p)
    assert [(u.id, u.path) for u in m] == [("a/x", str(tmp_path / "a" / "x.wav")), ("a/y", str(tmp_path / "a" / "y.wav"))]
    assert [(Path(f).name, why.split(" (")[0]) for f, why in skipped] == [("x.wav", "duplicate utterance id 'a/x'")]


def test_csv_corpus_errors(tmp_path):
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        csvcorpus.prepare(tmp_path / "none.csv")
    with pytest.raises(CorpusLayoutError, match="is a folder"):
        csvcorpus.prepare(tmp_path)
    p = tmp_path / "bad.csv"
    p.write_text("file,label\nx.wav,a\n")
    with pytest.raises(ValueError, match=r"bad.csv: missing required column\(s\) \['path', 'speaker'\]"):
        csvcorpus.prepare(p)


def test_scan_corpus_passes_options_and_refuses_unknown_ones(tmp_path):
    from emoboost.data.corpora import corpus_options, scan_corpus

    for label in ("anger", "joy"):
        for spk in ("s1", "s2"):
            write_tone(tmp_path / label / f"{spk}-{label}.wav", seconds=0.1)
    m, skipped = scan_corpus("folder", tmp_path, {"speaker_regex": r"^(s\d)-"})
    assert sorted(set(m.groups("speaker"))) == ["s1", "s2"] and skipped == []
    assert corpus_options("folder")[:3] == ["speaker_regex", "speaker_level", "speaker"]
    with pytest.raises(ValueError, match=r"corpus 'folder': unknown option\(s\) \['speaker_regx'\]; it accepts: "
                                         r"speaker_regex, "):
        scan_corpus("folder", tmp_path, {"speaker_regx": "x"})
    with pytest.raises(ValueError, match=r"speaker_regex must be a string, got \['0-9'\] \(quote it"):
        scan_corpus("folder", tmp_path, {"speaker_regex": ["0-9"]})
    assert corpus_options("emodb") == ["classes"]


def test_locate_corpus_follows_the_lookup_order_and_never_downloads(tmp_path, monkeypatch, capsys):
    import json as _json

    from emoboost.cli import main
    from emoboost.data.corpora import locate_corpus
    from emoboost.data.download import COMPLETE_MARKER
    from emoboost.experiment.run import resolve_data_root

    shared, data, cache = tmp_path / "shared", tmp_path / "data", tmp_path / "cache"
    monkeypatch.setenv("EMOBOOST_SHARED", str(shared))
    monkeypatch.setenv("EMOBOOST_CACHE", str(cache))
    monkeypatch.delenv("EMOBOOST_DATA", raising=False)
    assert locate_corpus("emodb") == ("download", None)  # has an official URL: fetched on first use
    assert locate_corpus("iemocap") == ("not here", None)  # no direct download
    done = cache / "corpora" / "emodb"
    (done / "wav").mkdir(parents=True)
    (done / "lablaut").mkdir()
    (done / COMPLETE_MARKER).write_text(_json.dumps({"corpus": "emodb"}))
    assert locate_corpus("emodb") == ("downloaded", done)
    (shared / "data" / "emodb").mkdir(parents=True)
    assert locate_corpus("emodb") == ("shared", shared / "data" / "emodb")
    (data / "RAVDESS").mkdir(parents=True)
    (shared / "data" / "ravdess").mkdir(parents=True)
    monkeypatch.setenv("EMOBOOST_DATA", str(data))
    assert locate_corpus("RAVDESS") == ("EMOBOOST_DATA", data / "RAVDESS")  # $EMOBOOST_DATA before the shared copy
    assert locate_corpus("ravdess") == ("shared", shared / "data" / "ravdess")
    assert resolve_data_root("emodb", None) == shared / "data" / "emodb"
    assert resolve_data_root("emodb", "/x/y") == Path("/x/y")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert f"shared: {shared / 'data' / 'emodb'}" in out and "no direct download" in out
