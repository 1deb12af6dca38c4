"""Training the intensity ranking function: ordered pairs of RAVDESS utterances -> a RankSVM.

The order comes from RAVDESS labels, within each actor: ``strong > normal`` for the same emotion, and
``emotional > neutral`` (see :mod:`emoboost.pretrain.intensity` for the features and the model). Kept
apart from the model so that applying a trained model (``emoboost intensity``, EMS pretraining) never
loads the training code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emoboost.pretrain.intensity import (
    N_SCORED,
    IntensityConfig,
    IntensityModel,
    file_llds,
    speech_windows,
    voiced_share,
    window_features,
)


@dataclass
class RankItem:
    """One labelled utterance's LLDs (the unit of pairing)."""

    id: str
    speaker: str
    label: str
    intensity: str | None
    times: np.ndarray
    llds: np.ndarray
    names: list[str]


def items_from_manifest(manifest: Iterable, lld_cache: str | Path | None = None, progress: bool = False,
                        level_normalize: bool = False) -> list[RankItem]:
    """LLDs for every utterance of a manifest (``label``, ``intensity`` and ``speaker`` are used)."""
    utts = list(manifest)
    it = utts
    if progress:
        from tqdm import tqdm

        it = tqdm(utts, desc="eGeMAPS LLDs", unit="file")
    out = []
    for u in it:
        t, x, n = file_llds(u.path, lld_cache, level_normalize)
        out.append(RankItem(u.id, str(u.speaker), str(u.label), u.intensity, t, x, n))
    return out


def level(item: RankItem, cfg: IntensityConfig) -> int | None:
    """Ordinal level: 0 neutral, 1 emotional-normal, 2 emotional-strong (None = unknown)."""
    if item.label == cfg.neutral_label:
        return 0
    if item.intensity == cfg.strong:
        return 2
    if item.intensity in (cfg.normal, None):
        return 1
    return None


def ordered_pairs(items: list[RankItem], cfg: IntensityConfig, within_speaker: bool = True) -> list[tuple[int, int, str]]:
    """(higher, lower, kind) index pairs: same-emotion strong > normal, emotional > neutral."""
    pairs = []
    for i, a in enumerate(items):
        la = level(a, cfg)
        for j, b in enumerate(items):
            if i == j or (within_speaker and a.speaker != b.speaker):
                continue
            lb = level(b, cfg)
            if la is None or lb is None or la <= lb:
                continue
            if lb == 0:
                if a.label in cfg.exclude_from_neutral_pairs:
                    continue
                pairs.append((i, j, "strong>neutral" if la == 2 else "normal>neutral"))
            elif a.label == b.label:
                pairs.append((i, j, "strong>normal"))
    return pairs


def _utterance_features(items: list[RankItem], cfg: IntensityConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(mean speech-window features per utterance [N, D], all window features [M, D], names)."""
    utt, allw = [], []
    names: list[str] = []
    for it in items:
        _, f, names = window_features(it.times, it.llds, it.names, cfg.window, cfg.hop)
        speech = speech_windows(f, cfg)
        scored = voiced_share(f) >= cfg.min_voiced
        f = f[:, :N_SCORED]
        utt.append(f[speech].mean(0) if speech.any() else f.mean(0))
        allw.append(f[scored] if scored.any() else f)
    return np.stack(utt), np.concatenate(allw), names[:N_SCORED]


def _fit_ranksvm(X: np.ndarray, pairs: list[tuple[int, int, str]], C: float, seed: int = 0) -> np.ndarray:
    from sklearn.svm import LinearSVC

    hi = np.array([p[0] for p in pairs])
    lo = np.array([p[1] for p in pairs])
    d = X[hi] - X[lo]
    Xd = np.concatenate([d, -d])
    y = np.concatenate([np.ones(len(d)), -np.ones(len(d))])
    svm = LinearSVC(C=C, fit_intercept=False, loss="squared_hinge", max_iter=20000, random_state=seed)
    svm.fit(Xd, y)
    return svm.coef_.ravel().astype(np.float64)


def _pair_accuracy(scores: np.ndarray, pairs: list[tuple[int, int, str]]) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for i, j, kind in pairs:
        ok = 1.0 if scores[i] > scores[j] else (0.5 if scores[i] == scores[j] else 0.0)
        out.setdefault(kind, []).append(ok)
        out.setdefault("all", []).append(ok)
    res = {k: float(np.mean(v)) for k, v in out.items()}
    res.update({f"n_{k}": len(v) for k, v in out.items()})
    return res


def train_intensity_model(items: list[RankItem], cfg: IntensityConfig | None = None, seed: int = 0) -> IntensityModel:
    """Fit the RankSVM on within-speaker ordered pairs of ``items`` and calibrate it."""
    cfg = cfg or IntensityConfig()
    if not items:
        raise ValueError("no training utterances")
    Xu, Xw, names = _utterance_features(items, cfg)
    mean, std = Xw.mean(0), Xw.std(0)
    std = np.where(std < 1e-8, 1.0, std)
    Z = (Xu - mean) / std
    pairs = ordered_pairs(items, cfg)
    if not pairs:
        raise ValueError("no ordered pairs: need neutral and emotional (normal/strong) utterances of the same speakers")
    C, cv = cfg.C, {}
    if C is None:
        speakers = sorted({it.speaker for it in items})
        k = min(4, len(speakers))
        if k < 2:
            C = cfg.C_grid[len(cfg.C_grid) // 2]
        else:
            fold_of = {s: i % k for i, s in enumerate(speakers)}
            for c in cfg.C_grid:
                accs = []
                for f in range(k):
                    tr = [p for p in pairs if fold_of[items[p[0]].speaker] != f]
                    te = [p for p in pairs if fold_of[items[p[0]].speaker] == f]
                    if not tr or not te:
                        continue
                    w = _fit_ranksvm(Z, tr, c, seed)
                    accs.append(_pair_accuracy(Z @ w, te)["all"])
                cv[str(c)] = float(np.mean(accs)) if accs else float("nan")
            C = max(cfg.C_grid, key=lambda c: cv.get(str(c), -1.0))
    w = _fit_ranksvm(Z, pairs, C, seed)
    model = IntensityModel(config=cfg, feature_names=names, weights=w, mean=mean, std=std)
    s = model.score_features(Xw)
    p10, p90 = np.percentile(s, [10, 90])
    model.centre = float((p10 + p90) / 2)
    model.scale = float(max((p90 - p10) / (2 * np.log(9.0)), 1e-6))
    train_acc = _pair_accuracy(Z @ w, pairs)
    model.info = {"C": C, "cv_pair_accuracy": cv, "train_pair_accuracy": train_acc["all"],
                  "n_train_utterances": len(items), "n_train_pairs": len(pairs),
                  "train_speakers": sorted({it.speaker for it in items}), "seed": seed}
    return model


def evaluate_ranking(model: IntensityModel, items: list[RankItem]) -> dict:
    """Pairwise accuracy on ``items`` (held-out speakers).

    ``within``: pairs of the same speaker (the relative-attribute setting); ``across``: the same
    pair kinds across all speakers. ``*_intensity`` use the mean of the calibrated, smoothed frame
    intensity over the utterance (what EMS masking sees) instead of the raw ranking score.
    """
    cfg = model.config
    raw = np.array([model.utterance_score(it.times, it.llds, it.names) for it in items])
    inten = np.array([float(model.intensity_from_llds(it.times, it.llds, it.names)[1].mean()) for it in items])
    within, across = ordered_pairs(items, cfg, True), ordered_pairs(items, cfg, False)
    incl_calm = IntensityConfig(**{**asdict(cfg), "exclude_from_neutral_pairs": ()})
    by_emotion: dict[str, float] = {}
    for emo in sorted({it.label for it in items} - {cfg.neutral_label}):
        ps = [p for p in ordered_pairs(items, incl_calm, True) if items[p[0]].label == emo]
        if ps:
            by_emotion[emo] = _pair_accuracy(raw, ps)["all"]
    return {
        "within": _pair_accuracy(raw, within),
        "across": _pair_accuracy(raw, across),
        "within_intensity": _pair_accuracy(inten, within),
        "by_emotion_within": by_emotion,
        "speakers": sorted({it.speaker for it in items}),
        "n_utterances": len(items),
    }


_RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                     "06": "fearful", "07": "disgust", "08": "surprised"}


def actor_number(speaker: str) -> int:
    """'Actor_07', '07', 'ravdess-7' -> 7 (RAVDESS speaker ids in any spelling)."""
    import re

    nums = re.findall(r"\d+", str(speaker))
    if not nums:
        raise ValueError(f"cannot read an actor number from speaker id {speaker!r}")
    return int(nums[-1])


def ravdess_manifest(root: str | Path):
    """RAVDESS speech via the corpus registry; a minimal filename parser if that loader is absent."""
    from emoboost.data.manifest import Manifest, Utterance

    root = Path(root)
    try:
        from emoboost.data.corpora import get_corpus

        return get_corpus("ravdess").prepare(root)
    except (ImportError, KeyError):
        pass
    files = sorted(p for p in root.glob("Actor_*/*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise FileNotFoundError(f"no RAVDESS files (Actor_NN/*.wav|flac) under {root}")
    utts = []
    for p in files:
        parts = p.stem.split("-")
        if len(parts) != 7 or parts[0] != "03":  # audio-only speech/song files only
            continue
        utts.append(Utterance(id=p.stem, path=str(p), speaker=parts[6], label=_RAVDESS_EMOTIONS[parts[2]],
                              duration=0.0, corpus="ravdess",
                              intensity="normal" if parts[3] == "01" else "strong"))
    return Manifest(utts)


def split_by_actor(items: list[RankItem], test_actors: Iterable[int | str]) -> tuple[list[RankItem], list[RankItem]]:
    test = {int(a) for a in test_actors}
    tr = [it for it in items if actor_number(it.speaker) not in test]
    te = [it for it in items if actor_number(it.speaker) in test]
    if not tr or not te:
        raise ValueError(f"actor split left an empty side (test actors {sorted(test)})")
    return tr, te


def actor_cross_validation(items: list[RankItem], n_folds: int = 4, cfg: IntensityConfig | None = None,
                           seed: int = 0) -> list[dict]:
    """Contiguous actor blocks as folds (RAVDESS: 6 actors, 3 male + 3 female, per fold)."""
    actors = sorted({actor_number(it.speaker) for it in items})
    blocks = np.array_split(np.asarray(actors), n_folds)
    out = []
    for b in blocks:
        tr, te = split_by_actor(items, b.tolist())
        m = train_intensity_model(tr, cfg, seed)
        r = evaluate_ranking(m, te)
        r["C"] = m.info["C"]
        out.append(r)
    return out


def train_on_ravdess(root: str | Path, test_actors: Iterable[int | str] = (19, 20, 21, 22, 23, 24),
                     cfg: IntensityConfig | None = None, cache_dir: str | Path | None = None,
                     progress: bool = False, seed: int = 0) -> tuple[IntensityModel, dict]:
    """Train on the other actors, evaluate on ``test_actors``: (model, held-out report)."""
    cfg = cfg or IntensityConfig()
    items = items_from_manifest(ravdess_manifest(root), cache_dir, progress, cfg.level_normalize)
    tr, te = split_by_actor(items, test_actors)
    model = train_intensity_model(tr, cfg, seed)
    report = evaluate_ranking(model, te)
    model.info["heldout"] = {"speakers": report["speakers"], "within": report["within"]["all"],
                             "across": report["across"]["all"]}
    return model, report
