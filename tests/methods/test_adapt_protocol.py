"""The adapt= protocols: names, and which clips form each utterance's speaker profile (test and training)."""

from __future__ import annotations

import numpy as np
import pytest

from emoboost.methods.adapt_protocol import Protocol, parse_adapt, plan, selection_sums, speaker_rng

GROUPS = np.array(["a"] * 12 + ["b"] * 9, dtype=object)
Y = np.array([i % 3 for i in range(12)] + [i % 3 for i in range(9)])


@pytest.mark.parametrize("text, want", [("none", Protocol()), ("loo", Protocol("loo")), ("enrol:5", Protocol("enrol", 5)),
                                        ("enrol:2:skewed", Protocol("enrol", 2, True)),
                                        ("online:skewed", Protocol("online", 0, True)), (None, Protocol())])
def test_parse_adapt(text, want):
    assert parse_adapt(text) == want
    assert parse_adapt(str(want)) == want  # str() round-trips


@pytest.mark.parametrize("bad", ["enrol", "enrol:0", "enrol:x", "loo:skewed", "speaker", "online:3"])
def test_parse_adapt_refuses_with_one_line(bad):
    with pytest.raises(ValueError, match="adapt must be") as e:
        parse_adapt(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["loo", "enrol", "online"])
def test_training_selections_follow_the_protocol(kind):
    rows = np.arange(10, 16)
    x = np.arange(60, dtype=float).reshape(30, 2)
    p = np.ones((30, 3))
    n, sx, sp = selection_sums(kind, rows, 2, speaker_rng(0, "s"), x, p)
    if kind == "loo":
        assert list(n) == [5] * 6 and np.allclose(sx, x[rows].sum(0) - x[rows])
    elif kind == "enrol":
        assert list(n) == [2] * 6 and np.allclose(sp, 2)
        assert all(not np.allclose(s, 2 * xi) for s, xi in zip(sx, x[rows]))  # never only itself
    else:
        assert sorted(n) == list(range(6)) and np.allclose(sx[np.argmin(n)], 0)


def test_loo_scores_everything_and_never_uses_the_scored_clip():
    p = plan(parse_adapt("loo"), GROUPS, Y, 0, 3)
    assert sorted(p.scored) == list(range(21))
    for i, src in zip(p.scored, p.sources):
        assert i not in src and set(GROUPS[src]) == {GROUPS[i]} and len(src) == (GROUPS == GROUPS[i]).sum() - 1


@pytest.mark.parametrize("k", [1, 5, 20])
def test_enrolment_clips_are_not_scored(k):
    p = plan(parse_adapt(f"enrol:{k}"), GROUPS, Y, 3, 3)
    for s, n in (("a", 12), ("b", 9)):
        src = {tuple(x) for i, x in zip(p.scored, p.sources) if GROUPS[i] == s}
        assert len(src) == 1  # one enrolment per speaker
        en = np.array(next(iter(src)))
        assert len(en) == min(k, n - 1) and set(GROUPS[en]) == {s}
        scored = [i for i in p.scored if GROUPS[i] == s]
        assert not set(scored) & set(en) and len(scored) + len(en) == n


def test_draws_differ_by_seed_and_not_by_the_other_speakers():
    a0, a1 = plan(parse_adapt("enrol:3"), GROUPS, Y, 0, 3), plan(parse_adapt("enrol:3"), GROUPS, Y, 1, 3)
    assert [list(s) for s in a0.sources] != [list(s) for s in a1.sources]
    only_b = plan(parse_adapt("enrol:3"), GROUPS[12:], Y[12:], 0, 3)
    both = [list(s) for i, s in zip(a0.scored, a0.sources) if GROUPS[i] == "b"]
    assert [list(s + 12) for s in only_b.sources] == both


def test_skewed_enrolment_is_one_emotion_then_the_next_every_emotion_in_turn():
    for seed in range(3):
        p = plan(parse_adapt("enrol:5:skewed"), GROUPS, Y, seed, 3)
        c = seed % 3
        for i, src in zip(p.scored, p.sources):
            assert set(Y[src]) <= {c, (c + 1) % 3}
            assert (Y[src] == c).sum() == min(5, (Y[GROUPS == GROUPS[i]] == c).sum())


def test_online_hears_the_clips_before_each_one():
    p = plan(parse_adapt("online"), GROUPS, Y, 2, 3)
    assert sorted(p.scored) == list(range(21))
    for s in ("a", "b"):
        order = [i for i in p.scored if GROUPS[i] == s]
        srcs = [list(src) for i, src in zip(p.scored, p.sources) if GROUPS[i] == s]
        assert srcs == [order[:j] for j in range(len(order))]
    assert sorted(p.positions[GROUPS[p.scored] == "b"]) == list(range(9))


def test_online_skewed_starts_with_one_or_two_emotions():
    p = plan(parse_adapt("online:skewed"), GROUPS, Y, 1, 3)
    first = [i for i in p.scored if GROUPS[i] == "a"][:8]
    assert list(Y[first]) == [1] * 4 + [2] * 4
