"""Inner CV on the training speakers: splits, the single-speaker fallback, and layer=auto's choice."""

from __future__ import annotations

import numpy as np
import pytest

from builders import speakers_by_class
from emoboost.methods.inner_cv import choose, inner_splits, select
from emoboost.methods.layer_choice import auto_candidates, is_auto, layers_text


def test_auto_candidates_are_runs_of_adjacent_layers_growing_linearly_with_depth():
    assert auto_candidates(3) == [[0], [1], [2], [0, 1], [1, 2], [0, 1, 2]]
    for n in (5, 7, 13, 25):
        cands = auto_candidates(n)
        assert len(cands) == 3 * n - 3 and len({tuple(c) for c in cands}) == len(cands)
        assert all(c == list(range(c[0], c[-1] + 1)) and 1 <= len(c) <= 3 and c[-1] < n for c in cands)
    assert auto_candidates(1) == [[0]] and auto_candidates(2, max_run=3) == [[0], [1], [0, 1]]
    with pytest.raises(ValueError):
        auto_candidates(0)
    assert is_auto("auto") and is_auto(" AUTO ") and not is_auto(3) and not is_auto("weighted")
    assert layers_text([2, 3, 4]) == "2,3,4"


def test_splits_hold_out_whole_training_speakers():
    groups = np.repeat(["a", "b", "c", "d"], 5)
    y = np.tile(np.arange(5) % 2, 4)
    sp = inner_splits(y, groups, np.arange(20), 3)
    assert len(sp.splits) == 3 and "speaker-grouped" in sp.how
    for tr, va in sp.splits:
        assert not set(groups[tr]) & set(groups[va])
    assert len(inner_splits(y[:10], groups[:10], np.arange(10), 3).splits) == 2  # two speakers: two folds


def test_one_speaker_falls_back_to_stratified_folds_of_whole_utterances():
    y = np.repeat(np.arange(3), 8)  # one speaker, 24 utterances ...
    seg_utt = np.repeat(np.arange(24), 2)  # ... of two segments each
    sp = inner_splits(y[seg_utt], np.full(48, "only"), seg_utt, 3, seed=1)
    assert len(sp.splits) == 3 and "single training speaker" in sp.how
    for tr, va in sp.splits:
        assert not set(seg_utt[tr]) & set(seg_utt[va])  # an utterance's segments stay on one side
        per_class = np.bincount(y[seg_utt][va], minlength=3) // 2  # utterances of each class held out
        assert set(per_class) <= {2, 3}  # stratified: 8 per class over 3 folds
    assert inner_splits(np.array([0]), np.array(["a"]), np.array([0]), 3) is None


def test_choose_finds_the_informative_run_and_ties_go_to_fewer_layers():
    data = speakers_by_class(informative=(2, 3))
    x = data.ssl_view().pooled(list(range(5)))
    choice, splits = select(x, data.y, data.groups, np.arange(len(data)), auto_candidates(5), [0.1, 1.0], 3)
    assert set(choice.layers) <= {2, 3} and choice.scores[(tuple(choice.layers), choice.c)] > 0.9
    mean = choice.mean_over_c()
    assert mean[(0,)] < 0.7  # the test can fail: a noise layer scores near chance
    committee = choice.committee(3)
    assert len(committee) == 3 and all(set(lay) & {2, 3} for lay, _ in committee)
    assert [mean[tuple(lay)] for lay, _ in committee] == sorted((mean[tuple(lay)] for lay, _ in committee), reverse=True)
    for lay, c in committee:  # each member at its own best C
        assert choice.scores[(tuple(lay), c)] == max(choice.scores[(tuple(lay), cc)] for cc in (0.1, 1.0))
    # identical columns: every candidate scores the same, the first (a single layer, smallest C) wins
    same = np.repeat(x[:, 2:3], 5, axis=1)
    xs = (same - same.mean(0)) / (same.std(0) + 1e-5)
    tie = choose(xs, data.y, np.arange(len(data)), splits, auto_candidates(5), [0.1, 1.0], 3)
    assert tie.layers == [0] and tie.c == 0.1
