import numpy as np
import pytest

from emoboost.data.manifest import Manifest, Utterance
from emoboost.protocols import LeakageError, check_classes, check_disjoint, describe, make_folds


def _manifest(n_spk=10, per=6, sessions=False):
    us = []
    for s in range(n_spk):
        for k in range(per):
            us.append(Utterance(f"s{s}_{k}", f"/x/s{s}_{k}.wav", f"spk{s}", ["a", "b", "c"][k % 3], 1.0, "t",
                                session=f"S{s // 2}" if sessions else None))
    return Manifest(us)


def test_loso_one_speaker_per_fold_and_disjoint():
    m = _manifest()
    folds = make_folds(m, "loso")
    assert len(folds) == 10
    spk = m.groups("speaker")
    seen = []
    for f in folds:
        assert len(set(spk[f.test])) == 1
        seen += list(set(spk[f.test]))
        assert not set(spk[f.test]) & set(spk[np.concatenate([f.train, f.valid])])
        assert not set(spk[f.valid]) & set(spk[f.train])
        assert len(set(spk[f.valid])) == 1  # validation = one held-out training speaker
        assert len(f.train) + len(f.valid) + len(f.test) == len(m)
    assert sorted(seen) == sorted(set(spk))
    assert "leave-one-speaker-out" in describe("loso", folds)


def test_group_kfold_and_session():
    m = _manifest(sessions=True)
    folds = make_folds(m, "group-kfold", n_folds=5)
    assert len(folds) == 5
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests) == list(range(len(m)))
    sess = make_folds(m, "loso-session")
    assert len(sess) == 5
    s = m.groups("session")
    for f in sess:
        assert len(set(s[f.test])) == 1


def test_stratified_is_flagged_speaker_dependent():
    m = _manifest()
    folds = make_folds(m, "stratified-kfold", n_folds=3)
    assert not folds[0].speaker_independent
    assert "SPEAKER-DEPENDENT" in describe("stratified-kfold", folds)


def test_leakage_detected():
    m = _manifest()
    with pytest.raises(LeakageError, match="spk0"):
        check_disjoint(m, np.array([0, 1]), np.array([2]))


def test_unknown_protocol():
    with pytest.raises(ValueError, match="unknown protocol"):
        make_folds(_manifest(), "random")


def test_group_kfold_balances_gender_like_ravdess():
    us = [Utterance(f"a{a}_{k}", f"/x/{a}_{k}.wav", f"Actor_{a:02d}", ["n", "h"][k % 2], 1.0, "ravdess",
                    gender="m" if a % 2 else "f") for a in range(1, 25) for k in range(4)]
    m = Manifest(us)
    folds = make_folds(m, "group-kfold", n_folds=6, seed=0)
    g = m.groups("gender")
    spk = m.groups("speaker")
    for f in folds:
        actors = sorted(set(spk[f.test]))
        assert len(actors) == 4
        assert sorted(g[f.test][np.unique(spk[f.test], return_index=True)[1]]) == ["f", "f", "m", "m"], actors
    assert make_folds(m, "group-kfold", n_folds=6, seed=0)[0].test.tolist() == folds[0].test.tolist()  # deterministic


# URDU's speakers x classes as released (speaker: {class: utterances}): most speakers appear in one class only
URDU_SHAPE = {
    "SF1": {"H": 12}, "SF10": {"S": 2}, "SF11": {"S": 4}, "SF2": {"H": 2}, "SF3": {"H": 2}, "SF4": {"H": 4},
    "SF5": {"H": 4}, "SF6": {"H": 14}, "SF7": {"H": 6}, "SF8": {"H": 2}, "SF9": {"N": 4}, "SM1": {"A": 22},
    "SM17": {"H": 2}, "SM18": {"H": 2}, "SM19": {"H": 2}, "SM2": {"A": 28}, "SM20": {"N": 10}, "SM21": {"N": 4},
    "SM22": {"N": 2}, "SM23": {"S": 6}, "SM24": {"S": 38}, "SM25": {"S": 40}, "SM26": {"S": 2}, "SM27": {"S": 4},
    "SM3": {"N": 8, "H": 2, "A": 2}, "SM4": {"A": 48}, "SM5": {"N": 72, "H": 8}, "SM6": {"H": 10, "S": 4},
    "SM7": {"H": 28},
}


def _shaped(shape: dict[str, dict[str, int]]) -> Manifest:
    return Manifest([Utterance(f"{s}_{c}{k}", f"/x/{s}_{c}{k}.wav", s, c, 1.0, "t", gender=s[1].lower())
                     for s, per in shape.items() for c, n in per.items() for k in range(n)])


def test_stratified_group_kfold_keeps_every_class_in_every_test_fold():
    m = _shaped(URDU_SHAPE)
    assert len(m) == 400
    y, spk = np.array([u.label for u in m]), m.groups("speaker")
    # the plain grouped folds do lose a class from some test fold on this corpus
    plain = make_folds(m, "group-kfold", n_folds=4, seed=0)
    assert any(len(set(y[f.test])) < 4 for f in plain)
    folds = make_folds(m, "stratified-group-kfold", n_folds=4, seed=0)
    assert len(folds) == 4
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(m)))
    angry = set()
    for f in folds:
        assert set(y[f.test]) == {"A", "H", "N", "S"}
        assert set(y[np.concatenate([f.train, f.valid])]) == {"A", "H", "N", "S"}
        assert not set(spk[f.test]) & set(spk[np.concatenate([f.train, f.valid])])
        angry |= {s for s in set(spk[f.test]) if "A" in URDU_SHAPE[s]}
    assert angry == {"SM1", "SM2", "SM3", "SM4"}   # the 4 angry speakers, one per test fold
    again = make_folds(m, "stratified-group-kfold", n_folds=4, seed=0)
    assert [f.test.tolist() for f in again] == [f.test.tolist() for f in folds]   # deterministic
    assert describe("stratified-group-kfold", folds).startswith(
        "4-fold speaker-grouped k-fold with every class in every test fold, speaker-independent")
    with pytest.raises(ValueError, match=r"5 speaker-grouped folds .* need at least 5 speakers per class; "
                                         r"'A' has 4; use --folds 4 or fewer"):
        make_folds(m, "stratified-group-kfold", n_folds=5)


# ---- class selection: typos and tiny classes are errors, not silent 1-class or 1-utterance problems ---------

def _labelled(labels: dict[str, int], n_spk: int = 4) -> Manifest:
    us = []
    for label, n in labels.items():
        for k in range(n):
            us.append(Utterance(f"{label}_{k}", f"/c/{label}_{k}.wav", f"spk{k % n_spk}", label, 1.0, "t"))
    us.append(Utterance("nolabel", "/c/nolabel.wav", "spk0", None, 1.0, "t"))
    return Manifest(us)


def test_check_classes_keeps_the_requested_labelled_utterances():
    m = _labelled({"anger": 6, "joy": 5, "sad": 4})
    assert sorted(set(check_classes(m, None, n_folds=4).labels())) == ["anger", "joy", "sad"]
    kept = check_classes(m, ["anger", "joy", "anger"], n_folds=4)
    assert len(kept) == 11 and set(kept.labels()) == {"anger", "joy"}
    assert len(check_classes(m, [], n_folds=4)) == 15                  # empty = every class, unlabelled dropped


def test_unknown_class_lists_the_corpus_classes():
    m = _labelled({"anger": 6, "joy": 5})
    with pytest.raises(ValueError, match=r"unknown class\(es\) 'angerr'; the corpus has: anger \(6\), joy \(5\)"):
        check_classes(m, ["anger", "angerr"], n_folds=2)


def test_fewer_than_two_classes_is_an_error():
    m = _labelled({"anger": 6, "joy": 5})
    with pytest.raises(ValueError, match=r"1 class\(es\) selected \(anger\): classification needs at least 2"):
        check_classes(m, ["anger"], n_folds=2)
    with pytest.raises(ValueError, match="at least 2"):
        check_classes(_labelled({"anger": 6}), None, n_folds=2)


def test_tiny_class_names_its_rows_unless_the_minimum_is_lowered():
    m = _labelled({"anger": 6, "joy": 5, "jyo": 1})                    # one typo'd CSV row
    with pytest.raises(ValueError, match=r"fewer utterances than the 5 folds need \(5\).*'jyo': 1 utterance\(s\): "
                                         r"jyo_0 \(/c/jyo_0.wav\)\. Fix the rows") as e:
        check_classes(m, None, n_folds=5)
    assert "'joy'" not in str(e.value) and "\n" not in str(e.value)
    assert len(check_classes(m, None, n_folds=5, min_class_count=1)) == 12
    with pytest.raises(ValueError, match=r"min_class_count=6 \(6\).*'joy': 5 utterance\(s\): joy_0 .*joy_4 \(/c/joy_4"):
        check_classes(m, ["anger", "joy"], n_folds=2, min_class_count=6)
    with pytest.raises(ValueError, match=r"\+2 more"):
        check_classes(_labelled({"a": 20, "b": 7}), None, n_folds=10, show=5)
    with pytest.raises(ValueError, match="min_class_count must be an integer >= 1"):
        check_classes(m, None, min_class_count=0)


def _corpora(spk: dict[str, int], per: int = 6) -> Manifest:
    """A merged manifest: ``spk[corpus]`` speakers each (prefixed as merging does), classes a, b, c."""
    return Manifest(Utterance(f"{c}/s{s}_{k}", f"/{c}/s{s}_{k}.wav", f"{c}/s{s}", "abc"[k % 3], 1.0, c)
                    for c, n in spk.items() for s in range(n) for k in range(per))


def test_cross_corpus_fold_tests_one_corpus_and_validates_on_training_corpora_only():
    m = _corpora({"emodb": 4, "ravdess": 5, "casia": 3})
    (f,) = make_folds(m, "cross-corpus", test_corpora=["casia"], seed=0)
    corpus, spk = m.groups("corpus"), m.groups("speaker")
    assert set(corpus[f.test]) == {"casia"} and len(f.test) == 3 * 6
    assert set(corpus[f.train]) == set(corpus[f.valid]) == {"emodb", "ravdess"}
    assert f.train_corpora == ("emodb", "ravdess") and f.test_groups == ("casia",)
    # one held-out speaker per training corpus, never a training speaker, never the test corpus
    assert sorted({s.split("/")[0] for s in set(spk[f.valid])}) == ["emodb", "ravdess"] and len(set(spk[f.valid])) == 2
    assert not set(spk[f.valid]) & set(spk[f.train])
    assert len(f.train) + len(f.valid) + len(f.test) == len(m)
    assert f.valid_by == "speakers" and f.to_dict()["train_corpora"] == ["emodb", "ravdess"]
    line = describe("cross-corpus", [f])
    assert "trained on emodb + ravdess, tested on casia" in line and "never the test corpus" in line


def test_leave_one_corpus_out_one_fold_per_corpus():
    m = _corpora({"a": 3, "b": 2, "c": 1})
    folds = make_folds(m, "leave-one-corpus-out")
    corpus = m.groups("corpus")
    assert [f.test_groups for f in folds] == [("a",), ("b",), ("c",)]
    for f in folds:
        assert set(corpus[f.test]) == set(f.test_groups)
        assert not set(corpus[np.concatenate([f.train, f.valid])]) & set(f.test_groups)
    # corpus c has a single speaker: its validation share is a stratified 20 % of its utterances
    assert folds[0].valid_by == "utterances" and folds[2].valid_by == "speakers"
    assert "3-fold leave-one-corpus-out (a, b, c)" in describe("leave-one-corpus-out", folds)


def test_cross_corpus_refusals():
    m = _corpora({"a": 2, "b": 2})
    with pytest.raises(ValueError, match="test corpora among the merged ones"):
        make_folds(m, "cross-corpus", test_corpora=["zz"])
    with pytest.raises(ValueError, match="at least one left to train on"):
        make_folds(m, "cross-corpus", test_corpora=["a", "b"])
    with pytest.raises(ValueError, match="at least 2 corpora"):
        make_folds(_corpora({"a": 3}), "leave-one-corpus-out")
    with pytest.raises(LeakageError, match=r"corpus\(s\) \['a'\] appear in both"):
        check_disjoint(m, np.arange(0, 6), np.arange(6, 12), key="corpus")


@pytest.mark.parametrize("protocol, n_folds, message", [
    ("group-kfold", 12, "--folds 12: group-kfold folds are grouped by speaker and the corpus has 10 speaker(s); "
                        "use --folds 10 or fewer"),
    ("loso", 11, "--folds 11: loso folds are grouped by speaker and the corpus has 10 speaker(s)"),
    ("group-kfold", 1, "--folds 1: cross-validation needs at least 2 folds"),
    ("group-kfold", 0, "--folds 0: cross-validation needs at least 2 folds"),
    ("stratified-kfold", -2, "--folds -2: cross-validation needs at least 2 folds"),
    ("stratified-kfold", 30, "--folds 30: stratified k-fold puts every class in every fold, and class"),
])
def test_impossible_fold_counts_name_the_flag(protocol, n_folds, message):
    """scikit-learn's splitters said e.g. "Cannot have number of splits n_splits=12 greater than the number
    of groups: 10." (or took --folds 0 as the default); the line names --folds and what would work."""
    with pytest.raises(ValueError) as e:
        make_folds(_manifest(), protocol, n_folds=n_folds)
    assert str(e.value).startswith(message) and "n_splits" not in str(e.value)


def test_one_session_or_speaker_is_refused_in_our_words():
    one = Manifest([u for u in _manifest(sessions=True) if u.session == "S1"])
    with pytest.raises(ValueError, match="^leave-one-session-out needs at least 2 sessions; the corpus has 1$"):
        make_folds(one, "loso-session")
    solo = Manifest([u for u in _manifest() if u.speaker == "spk0"])
    with pytest.raises(ValueError, match="^leave-one-speaker-out needs at least 2 speakers; the corpus has 1$"):
        make_folds(solo, "loso")
