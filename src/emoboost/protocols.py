"""Evaluation protocols: speaker-independent fold construction, in code rather than prose.

Every fold carries train / valid / test indices into the manifest. Validation (early stopping,
model selection) is always drawn from training speakers, never from the test fold, and every fold
is checked for speaker leakage before it is returned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from emoboost.data.manifest import Manifest

PROTOCOLS = ("loso", "loso-session", "group-kfold", "stratified-group-kfold", "stratified-kfold", "cross-corpus",
             "leave-one-corpus-out")
CORPUS_PROTOCOLS = ("cross-corpus", "leave-one-corpus-out")
"""Protocols whose folds are whole corpora (a merged manifest, :mod:`emoboost.data.crosscorpus`)."""


class LeakageError(RuntimeError):
    """A speaker appears on both sides of a train/test (or train/valid) split."""


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    test_groups: tuple[str, ...]
    speaker_independent: bool = True
    valid_by: str = "speakers"  # "speakers" (held-out training speakers) or "utterances" (too few speakers)
    train_corpora: tuple[str, ...] = ()  # corpus protocols: the corpora trained (and validated) on

    def to_dict(self, ids: list[str] | None = None) -> dict:
        d = {
            "index": self.index,
            "test_groups": list(self.test_groups),
            "n_train": int(len(self.train)),
            "n_valid": int(len(self.valid)),
            "n_test": int(len(self.test)),
            "speaker_independent": self.speaker_independent,
            "valid_by": self.valid_by,
        }
        if self.train_corpora:
            d["train_corpora"] = list(self.train_corpora)
        if ids is not None:
            d["test_ids"] = [ids[i] for i in self.test]
        return d


def check_disjoint(manifest: Manifest, a: np.ndarray, b: np.ndarray, what: str = "train/test",
                   key: str = "speaker") -> None:
    """Raise :class:`LeakageError` if any speaker (or other ``key``: ``corpus``) occurs in both index sets."""
    spk = manifest.groups(key)
    overlap = set(spk[a]) & set(spk[b])
    if overlap:
        raise LeakageError(f"{key}(s) {sorted(map(str, overlap))} appear in both {what}; refusing to run")


def _valid_split(
    manifest: Manifest, train: np.ndarray, valid_speakers: int, seed: int, speaker_independent: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation set out of the training indices: whole speakers when speaker-independent."""
    if valid_speakers <= 0:
        return train, np.array([], dtype=int)
    rng = np.random.default_rng(seed)
    if not speaker_independent:
        y = np.array([u.label for u in manifest])[train]
        try:
            tr, va = train_test_split(train, test_size=0.1, random_state=seed, stratify=y)
        except ValueError:
            tr, va = train_test_split(train, test_size=0.1, random_state=seed)
        return np.sort(tr), np.sort(va)
    spk = manifest.groups("speaker")
    speakers = np.unique(spk[train])
    if len(speakers) <= valid_speakers:
        # Too few training speakers to hold whole ones out (e.g. a 2-speaker corpus under LOSO): early
        # stopping uses a stratified 20 % of the training speakers' utterances. The test speaker stays
        # unseen, so the fold is still speaker-independent; the report says which validation was used.
        y = np.array([u.label for u in manifest])[train]
        try:
            tr, va = train_test_split(train, test_size=0.2, random_state=seed, stratify=y)
        except ValueError:
            tr, va = train_test_split(train, test_size=0.2, random_state=seed)
        return np.sort(tr), np.sort(va)
    chosen = rng.choice(speakers, size=valid_speakers, replace=False)
    is_valid = np.isin(spk[train], chosen)
    return train[~is_valid], train[is_valid]


def _grouped_kfold(manifest: Manifest, idx: np.ndarray, spk: np.ndarray, n_folds: int, seed: int):
    """Speaker-grouped k-fold; balanced by gender when every utterance has one (RAVDESS: 2 F + 2 M per fold)."""
    genders = [u.gender for u in manifest]
    if all(g is not None for g in genders) and len(set(genders)) > 1:
        return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(idx, np.array(genders), spk)
    return GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(idx, None, spk)


def _every_class_grouped_kfold(y: np.ndarray, spk: np.ndarray, n_folds: int, seed: int):
    """Speaker-grouped k folds in which every test fold holds every class, classes spread evenly.

    For corpora whose speakers each cover few classes (URDU: most talk-show speakers appear in one
    emotion only), grouped folds, even ``StratifiedGroupKFold``'s, can leave a class out of a test
    fold, whose UA then averages over fewer classes. Speakers are therefore placed in two passes:

    1. class by class, rarest (fewest speakers) first, each fold still lacking the class gets one of
       its unplaced speakers (the largest speaker goes to the smallest fold);
    2. every other speaker, largest first, goes to the fold holding the smallest share of its classes.

    Ties are broken by a ``seed``-shuffled speaker order, so the folds are deterministic. Every class
    then also has training speakers in every fold.
    """
    classes = [str(c) for c in np.unique(y)]
    speakers_per_class = {c: len(np.unique(spk[y == c])) for c in classes}
    short = sorted((n, c) for c, n in speakers_per_class.items() if n < n_folds)
    if short:
        raise ValueError(f"{n_folds} speaker-grouped folds with every class in every test fold need at least "
                         f"{n_folds} speakers per class; " + ", ".join(f"{c!r} has {n}" for n, c in short)
                         + f"; use --folds {min(speakers_per_class.values())} or fewer")
    order = np.random.default_rng(seed).permutation(np.unique(spk))
    counts = {s: Counter(y[spk == s]) for s in order}
    total = Counter(y)
    fold_counts = [Counter() for _ in range(n_folds)]
    fold_of: dict[str, int] = {}

    def place(s: str, k: int) -> None:
        fold_of[s] = k
        fold_counts[k].update(counts[s])

    def size(s: str) -> int:
        return sum(counts[s].values())

    for c in sorted(classes, key=lambda c: (speakers_per_class[c], c)):
        lacking = sorted((k for k in range(n_folds) if fold_counts[k][c] == 0),
                         key=lambda k: sum(fold_counts[k].values()))
        free = sorted((s for s in order if s not in fold_of and counts[s][c]), key=size, reverse=True)
        if len(free) < len(lacking):
            raise ValueError(f"cannot give every one of {n_folds} speaker-grouped test folds a speaker of class "
                             f"{c!r}: too many of its speakers were placed for rarer classes; use fewer --folds")
        for k, s in zip(lacking, free):
            place(s, k)
    for s in sorted((s for s in order if s not in fold_of), key=size, reverse=True):
        share = [sum(n * fold_counts[k][c] / total[c] for c, n in counts[s].items()) for k in range(n_folds)]
        place(s, min(range(n_folds), key=lambda k: (share[k], sum(fold_counts[k].values()), k)))
    folds = np.array([fold_of[s] for s in spk])
    idx = np.arange(len(y))
    return [(idx[folds != k], idx[folds == k]) for k in range(n_folds)]


def _corpus_folds(manifest: Manifest, protocol: str, test_corpora: Iterable[str] | None, valid_speakers: int,
                  seed: int) -> list[Fold]:
    """Folds whose test side is whole corpora; validation = held-out speakers of each training corpus."""
    corpus, spk = manifest.groups("corpus"), manifest.groups("speaker")
    present = list(dict.fromkeys(corpus))
    if len(present) < 2:
        raise ValueError(f"{protocol} needs utterances of at least 2 corpora, got {', '.join(present) or 'none'}")
    if protocol == "cross-corpus":
        tests = list(dict.fromkeys([test_corpora] if isinstance(test_corpora, str) else (test_corpora or [])))
        unknown = [c for c in tests if c not in present]
        if not tests or unknown or len(tests) == len(present):
            raise ValueError(f"cross-corpus needs test corpora among the merged ones ({', '.join(present)}) with at "
                             f"least one left to train on; got {tests or 'none'}")
        plan = [tests]
    else:
        plan = [[c] for c in present]
    folds = []
    for k, tests in enumerate(plan):
        is_test = np.isin(corpus, tests)
        train_corpora = tuple(c for c in present if c not in tests)
        parts = [_valid_split(manifest, np.flatnonzero(corpus == c), valid_speakers, seed + k, True)
                 for c in train_corpora]
        train = np.sort(np.concatenate([tr for tr, _ in parts]))
        valid = np.sort(np.concatenate([va for _, va in parts]))
        test = np.flatnonzero(is_test)
        check_disjoint(manifest, np.concatenate([train, valid]), test, "train/test", key="corpus")
        check_disjoint(manifest, np.concatenate([train, valid]), test, "train/test")
        by_speakers = all(not set(spk[tr]) & set(spk[va]) for tr, va in parts)
        folds.append(Fold(k, train, valid, test, tuple(tests), True, "speakers" if by_speakers else "utterances",
                          train_corpora))
    return folds


DEFAULT_FOLDS = 5


def _check_fold_count(protocol: str, n_folds: int | None, y: np.ndarray, spk: np.ndarray, manifest: Manifest) -> None:
    """Fold counts the data cannot give, in one line naming ``--folds`` (scikit-learn's splitters would say
    "n_splits=10 greater than the number of groups", in their own terms, or later)."""
    if protocol == "loso-session":
        sessions = np.unique(manifest.groups("session"))
        if len(sessions) < 2:
            raise ValueError(f"leave-one-session-out needs at least 2 sessions; the corpus has {len(sessions)}")
        return
    if protocol == "loso" and n_folds is None:
        n_spk = len(np.unique(spk))
        if n_spk < 2:
            raise ValueError(f"leave-one-speaker-out needs at least 2 speakers; the corpus has {n_spk}")
        return
    k = DEFAULT_FOLDS if n_folds is None else n_folds
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"--folds {k}: cross-validation needs at least 2 folds")
    if protocol == "stratified-kfold":
        counts = Counter(y.tolist())
        label, least = min(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
        if k > least:
            raise ValueError(f"--folds {k}: stratified k-fold puts every class in every fold, and class {label!r} has "
                             f"{least} utterance(s); use --folds {least} or fewer")
        return
    n_spk = len(np.unique(spk))
    if k > n_spk:
        raise ValueError(f"--folds {k}: {protocol} folds are grouped by speaker and the corpus has {n_spk} speaker(s); "
                         f"use --folds {n_spk} or fewer")


def make_folds(
    manifest: Manifest,
    protocol: str = "loso",
    n_folds: int | None = None,
    valid_speakers: int = 1,
    seed: int = 0,
    test_corpora: Iterable[str] | None = None,
) -> list[Fold]:
    """Build folds for ``protocol``.

    - ``loso``: leave-one-speaker-out (EmoDB: 10 folds). With ``n_folds`` < #speakers, speakers are
      grouped into ``n_folds`` folds (GroupKFold), still speaker-independent.
    - ``loso-session``: leave-one-session-out (IEMOCAP); validation from training speakers.
    - ``group-kfold``: ``n_folds`` folds grouped by speaker (default 5), shuffled with ``seed`` and
      balanced by gender when known (a fold of only female actors would confound the comparison).
    - ``stratified-group-kfold``: ``n_folds`` folds grouped by speaker (default 5) in which every test
      fold holds every class (corpora with unbalanced speakers, such as URDU); deterministic.
    - ``stratified-kfold``: plain stratified k-fold, SPEAKER-DEPENDENT: only when asked for explicitly.
    - ``cross-corpus``: one fold testing on ``test_corpora``, training on the other corpora of a merged
      manifest; ``leave-one-corpus-out``: each corpus in turn. Validation = ``valid_speakers`` held-out
      speakers of *each training corpus*, never the test corpus.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    if protocol in CORPUS_PROTOCOLS:
        return _corpus_folds(manifest, protocol, test_corpora, valid_speakers, seed)
    n = len(manifest)
    idx = np.arange(n)
    y = np.array([u.label for u in manifest])
    spk = manifest.groups("speaker")
    speaker_independent = protocol != "stratified-kfold"
    _check_fold_count(protocol, n_folds, y, spk, manifest)
    k_folds = DEFAULT_FOLDS if n_folds is None else n_folds  # the k-fold protocols' count
    if protocol == "loso":
        n_spk = len(np.unique(spk))
        if n_folds in (None, n_spk):
            splits = LeaveOneGroupOut().split(idx, y, spk)
        else:
            splits = _grouped_kfold(manifest, idx, spk, n_folds, seed)
        groups = spk
    elif protocol == "loso-session":
        groups = manifest.groups("session")
        splits = LeaveOneGroupOut().split(idx, y, groups)
    elif protocol == "group-kfold":
        groups = spk
        splits = _grouped_kfold(manifest, idx, spk, k_folds, seed)
    elif protocol == "stratified-group-kfold":
        groups = spk
        splits = _every_class_grouped_kfold(y, spk, k_folds, seed)
    else:
        groups = spk
        splits = StratifiedKFold(n_splits=k_folds, shuffle=True, random_state=seed).split(idx, y)

    folds = []
    for k, (train, test) in enumerate(splits):
        train, valid = _valid_split(manifest, np.asarray(train), valid_speakers, seed + k, speaker_independent)
        valid_by_speaker = bool(len(valid)) and not (set(spk[train]) & set(spk[valid]))
        if speaker_independent:
            check_disjoint(manifest, np.concatenate([train, valid]), test, "train/test")
            if len(valid) and len(np.unique(spk[train])) > valid_speakers and valid_speakers > 0:
                check_disjoint(manifest, train, valid, "train/valid")
        test_groups = tuple(sorted(set(groups[test]))) if speaker_independent else (f"fold{k}",)
        folds.append(Fold(k, np.sort(train), np.sort(valid), np.sort(test), test_groups, speaker_independent,
                          "speakers" if valid_by_speaker or not len(valid) else "utterances"))
    return folds


def describe(protocol: str, folds: list[Fold]) -> str:
    """Human-readable protocol line printed beside every number."""
    if protocol == "stratified-kfold":
        return f"{len(folds)}-fold stratified k-fold, SPEAKER-DEPENDENT (speakers shared between train and test)"
    if protocol in CORPUS_PROTOCOLS:
        valid = ("validation = held-out speakers of each training corpus" if all(f.valid_by == "speakers" for f in folds)
                 else "validation = training-corpus speakers held out, or a stratified 20 % of the utterances of a "
                      "training corpus with a single speaker")
        if protocol == "cross-corpus":
            f = folds[0]
            return (f"cross-corpus: trained on {' + '.join(f.train_corpora)}, tested on {' + '.join(f.test_groups)} "
                    f"(1 fold), speaker-independent (disjoint corpora); {valid}; never the test corpus")
        names = ", ".join(g for f in folds for g in f.test_groups)
        return (f"{len(folds)}-fold leave-one-corpus-out ({names}): each corpus tested by a model trained on the "
                f"others, speaker-independent (disjoint corpora); {valid}; never the test corpus")
    names = {
        "loso": "leave-one-speaker-out" if all(len(f.test_groups) == 1 for f in folds) else "speaker-grouped",
        "loso-session": "leave-one-session-out",
        "group-kfold": "speaker-grouped k-fold",
        "stratified-group-kfold": "speaker-grouped k-fold with every class in every test fold",
    }
    if any(f.valid_by == "utterances" for f in folds):
        valid = ("validation = a stratified 20 % of the training speakers' utterances (too few training "
                 "speakers to hold one out; the test speaker stays unseen)")
    else:
        valid = "validation = held-out training speakers"
    return f"{len(folds)}-fold {names[protocol]}, speaker-independent; {valid}"


def check_classes(
    manifest: Manifest,
    classes: Iterable[str] | None = None,
    n_folds: int = 2,
    min_class_count: int | None = None,
    show: int = 5,
) -> Manifest:
    """The labelled utterances of ``classes`` (None or empty: every class), or an error saying why not.

    Refused, each with one line that lets the user fix it:

    - a requested class that no utterance has (a typo such as ``angerr`` would otherwise just
      filter everything of that class away); the message lists the manifest's classes and counts;
    - fewer than 2 classes (a 1-class problem "scores" 100 %);
    - a class with fewer than ``min_class_count`` utterances (default: ``n_folds``, as every fold
      needs a chance to see the class in training and in testing). A typo'd label in one CSV row
      becomes such a class; the message names its rows (id and path).
    """
    if min_class_count is not None and (isinstance(min_class_count, bool) or not isinstance(min_class_count, int)
                                        or min_class_count < 1):
        raise ValueError(f"min_class_count must be an integer >= 1, got {min_class_count!r}")
    labelled = manifest.filter(lambda u: u.label is not None)
    counts = Counter(u.label for u in labelled)
    have = ", ".join(f"{c} ({n})" for c, n in sorted(counts.items())) or "none"
    wanted = list(dict.fromkeys([classes] if isinstance(classes, str) else (classes or [])))
    if wanted:
        unknown = [c for c in wanted if c not in counts]
        if unknown:
            raise ValueError(f"unknown class(es) {', '.join(map(repr, unknown))}; the corpus has: {have}")
        keep = set(wanted)
        labelled = labelled.filter(lambda u: u.label in keep)
        counts = Counter({c: counts[c] for c in wanted})
    if len(counts) < 2:
        raise ValueError(f"{len(counts)} class(es) selected ({', '.join(counts) or 'none'}): classification needs "
                         f"at least 2; the corpus has: {have}")
    need = int(min_class_count) if min_class_count is not None else int(n_folds)
    small = sorted(c for c, n in counts.items() if n < need)
    if small:
        why = f"min_class_count={need}" if min_class_count is not None else f"the {n_folds} folds need"
        parts = []
        for c in small:
            rows = [u for u in labelled if u.label == c]
            listed = ", ".join(f"{u.id} ({u.path})" for u in rows[:show])
            more = f" +{len(rows) - show} more" if len(rows) > show else ""
            parts.append(f"{c!r}: {len(rows)} utterance(s): {listed}{more}")
        raise ValueError(f"class(es) with fewer utterances than {why} ({need}), a typo'd label? "
                         f"{'; '.join(parts)}. Fix the rows, leave the class out with --classes, or lower "
                         "--min-class-count")
    return labelled
