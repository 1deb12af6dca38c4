"""Linear probes for pretrained upstreams: frame-level phone classification and utterance classification.

Phone probe: the public TIMIT sample (16 speakers x 10 sentences, ``.phn`` boundaries in samples),
speaker-disjoint (12 train / 4 test speakers; 2 of the 12 pick the layer), 61 phones folded to the
standard 39 (Lee & Hon 1989; glottal stop ``q`` frames are dropped). Each upstream frame takes the
phone at its centre time ``(t + 0.5) / frame_rate`` -- within half a frame of every model's true
centre, small next to phone durations. Classifier: multinomial logistic regression on standardised
features, full-batch L-BFGS with a fixed small L2 penalty (no tuning on test speakers).

Utterance probe: mean-pooled frames of each layer + logistic regression, speaker-grouped k-fold, on
any labelled :class:`~emoboost.data.manifest.Manifest`; reports WA (accuracy) and UA (mean recall).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emoboost.audio import load_audio
from emoboost.upstreams.base import Upstream

FOLD_61_39 = {
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l", "em": "m",
    "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    "pcl": "sil", "tcl": "sil", "kcl": "sil", "bcl": "sil", "dcl": "sil", "gcl": "sil",
    "h#": "sil", "pau": "sil", "epi": "sil",
    "q": None,
}
PHONES_39 = (
    "aa", "ae", "ah", "aw", "ay", "b", "ch", "d", "dh", "dx", "eh", "er", "ey", "f", "g", "hh", "ih",
    "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "sil", "t", "th", "uh", "uw",
    "v", "w", "y", "z",
)
TIMIT_TEST_SPEAKERS = ("dr7-fblv0", "dr7-madd0", "dr8-fbcg1", "dr8-mbcg0")
TIMIT_VALID_SPEAKERS = ("dr6-fapb0", "dr6-mbma1")


def fold_phone(p: str) -> str | None:
    """61-phone TIMIT label -> 39-phone set (None = drop the frame)."""
    p = p.lower()
    q = FOLD_61_39.get(p, p)
    if q is not None and q not in PHONES_39:
        raise ValueError(f"unknown TIMIT phone {p!r}")
    return q


@dataclass
class PhoneUtterance:
    path: Path
    speaker: str
    segments: list[tuple[int, int, str]]  # (start sample, end sample, phone)


def load_timit_sample(root: str | Path) -> list[PhoneUtterance]:
    """Every ``<speaker>/<utt>.wav`` with a ``.phn`` beside it."""
    root = Path(root)
    utts = []
    for wav in sorted(root.glob("*/*.wav")):
        phn = wav.with_suffix(".phn")
        if not phn.exists():
            continue
        segs = []
        for n, line in enumerate(phn.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{phn}:{n}: expected 'start end phone', got {line!r}")
            segs.append((int(parts[0]), int(parts[1]), parts[2]))
        utts.append(PhoneUtterance(wav, wav.parent.name, segs))
    if not utts:
        raise FileNotFoundError(f"no TIMIT .wav/.phn pairs under {root}")
    return utts


def frame_labels(segments: list[tuple[int, int, str]], n_frames: int, frame_rate: float,
                 sample_rate: int = 16_000, fold: bool = True) -> np.ndarray:
    """Class index (into PHONES_39) of the phone at each frame centre; -1 where unlabelled."""
    idx = {p: i for i, p in enumerate(PHONES_39)}
    centres = (np.arange(n_frames) + 0.5) / frame_rate * sample_rate
    out = np.full(n_frames, -1, dtype=np.int64)
    for s, e, p in segments:
        q = fold_phone(p) if fold else p
        if q is None:
            continue
        sel = (centres >= s) & (centres < e)
        out[sel] = idx[q]
    return out


@torch.inference_mode()
def extract_layers(upstream: Upstream, path: str | Path, max_seconds: float | None = None) -> np.ndarray:
    wav = load_audio(path)
    if max_seconds is not None:
        wav = wav[: int(max_seconds * 16_000)]
    return upstream.extract(wav)


def fit_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-4, max_iter: int = 100,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise + multinomial logistic regression (full-batch L-BFGS): (mean, std, W, b)."""
    torch.manual_seed(seed)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Xt = torch.from_numpy(((X - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y)
    W = torch.zeros(X.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xt @ W + b, yt) + l2 * W.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mu, sd, W.detach().numpy(), b.detach().numpy()


def predict_softmax(params: tuple, X: np.ndarray) -> np.ndarray:
    mu, sd, W, b = params
    return (((X - mu) / sd) @ W + b).argmax(1)


def phone_probe(upstream: Upstream, root: str | Path, test_speakers: tuple[str, ...] = TIMIT_TEST_SPEAKERS,
                valid_speakers: tuple[str, ...] = TIMIT_VALID_SPEAKERS, layers: list[int] | None = None,
                l2: float = 1e-4, max_iter: int = 100, seed: int = 0) -> dict:
    """Frame phone accuracy (39 classes) per layer; the layer is chosen on validation speakers.

    Returns ``{"layers": {l: {"valid": acc, "test": acc}}, "best_layer", "test_accuracy" (best layer,
    probe retrained on all 12 training speakers), "n_frames": {...}}``.
    """
    utts = load_timit_sample(root)
    speakers = {u.speaker for u in utts}
    for s in tuple(test_speakers) + tuple(valid_speakers):
        if s not in speakers:
            raise ValueError(f"speaker {s!r} not in the TIMIT sample at {root} (have {sorted(speakers)})")
    if set(test_speakers) & set(valid_speakers):
        raise ValueError("validation and test speakers overlap")
    feats, labels, spk = [], [], []
    for u in utts:
        f = extract_layers(upstream, u.path)  # [L, T, D]
        feats.append(f)
        labels.append(frame_labels(u.segments, f.shape[1], upstream.frame_rate))
        spk.append(np.full(f.shape[1], u.speaker, dtype=object))
    F = np.concatenate(feats, axis=1)  # [L, N, D]
    y = np.concatenate(labels)
    s = np.concatenate(spk)
    keep = y >= 0
    F, y, s = F[:, keep], y[keep], s[keep]
    is_test = np.isin(s, list(test_speakers))
    is_valid = np.isin(s, list(valid_speakers))
    is_train = ~is_test & ~is_valid
    n_cls = len(PHONES_39)
    layer_ids = list(range(F.shape[0])) if layers is None else [int(x) % F.shape[0] for x in layers]
    res: dict = {"layers": {}}
    for li in layer_ids:
        p = fit_softmax(F[li][is_train], y[is_train], n_cls, l2, max_iter, seed)
        res["layers"][li] = {
            "valid": float((predict_softmax(p, F[li][is_valid]) == y[is_valid]).mean()),
            "test": float((predict_softmax(p, F[li][is_test]) == y[is_test]).mean()),
        }
    best = max(layer_ids, key=lambda li: res["layers"][li]["valid"])
    trv = is_train | is_valid
    p = fit_softmax(F[best][trv], y[trv], n_cls, l2, max_iter, seed)
    res["best_layer"] = best
    res["test_accuracy"] = float((predict_softmax(p, F[best][is_test]) == y[is_test]).mean())
    res["n_frames"] = {"train": int(is_train.sum()), "valid": int(is_valid.sum()), "test": int(is_test.sum())}
    res["test_speakers"] = list(test_speakers)
    return res


def utterance_probe(upstream: Upstream, manifest, n_folds: int = 5, layers: list[int] | None = None,
                    C: float = 1.0, max_seconds: float | None = 20.0, seed: int = 0) -> dict:
    """Mean-pooled features + logistic regression, speaker-grouped k-fold; WA/UA per layer.

    ``manifest`` is any labelled Manifest (``label`` and ``speaker`` used). The best layer is
    reported by mean UA across folds (this is a probe, not a tuned system).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    utts = [u for u in manifest if u.label is not None]
    if not utts:
        raise ValueError("manifest has no labelled utterances")
    classes = sorted({u.label for u in utts})
    y = np.array([classes.index(u.label) for u in utts])
    groups = np.array([u.speaker for u in utts])
    k = min(n_folds, len(set(groups)))
    if k < 2:
        raise ValueError("need at least two speakers for a speaker-grouped split")
    pooled = np.stack([extract_layers(upstream, u.path, max_seconds).mean(1) for u in utts], 1)  # [L, N, D]
    layer_ids = list(range(pooled.shape[0])) if layers is None else [int(x) % pooled.shape[0] for x in layers]
    res: dict = {"classes": classes, "n_folds": k, "layers": {}}
    for li in layer_ids:
        wa, ua = [], []
        for tr, te in GroupKFold(n_splits=k).split(pooled[li], y, groups):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
            clf.fit(pooled[li][tr], y[tr])
            pred = clf.predict(pooled[li][te])
            wa.append(accuracy_score(y[te], pred))
            ua.append(balanced_accuracy_score(y[te], pred))
        res["layers"][li] = {"WA": float(np.mean(wa)), "WA_std": float(np.std(wa)),
                             "UA": float(np.mean(ua)), "UA_std": float(np.std(ua))}
    best = max(layer_ids, key=lambda li: res["layers"][li]["UA"])
    res["best_layer"] = best
    res.update({k2: res["layers"][best][k2] for k2 in ("WA", "UA")})
    return res


class LogMelUpstream(Upstream):
    """Plain log-mel frames as a one-layer 'upstream': the no-pretraining baseline for probes."""

    name = "logmel"
    num_layers = 1

    def __init__(self, n_mels: int = 80):
        super().__init__()
        from emoboost.upstreams.frontend import FeatureConfig, LogMel

        self.frontend = LogMel(FeatureConfig(n_mels=n_mels, normalize="none"))
        self.hidden_size = n_mels
        self.frame_rate = self.frontend.cfg.frame_rate

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, flens = self.frontend(wavs, lengths)
        return mel[None], flens

    def config_dict(self) -> dict:
        return {"name": self.name, "feature": self.frontend.cfg.to_dict()}
