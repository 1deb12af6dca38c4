import numpy as np
import pytest

from emoboost.data.manifest import Manifest, Utterance
from emoboost.protocols import LeakageError, check_disjoint, describe, make_folds


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
