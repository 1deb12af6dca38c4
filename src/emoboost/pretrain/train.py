"""Resumable self-supervised pretraining of Mockingjay / NPC with random or EMS masking.

``pretrain(config, sources, out_dir)`` reads unlabelled audio (manifests, folders or files),
computes raw log-mel for every file once (and, for EMS, the per-file emotion intensity, cached on
disk and aligned to the 10 ms mel grid), then trains on random crops. Every random draw of step
``s`` comes from generators seeded with ``(seed, s)``, so a run resumed from a checkpoint (model +
Adam state + loss history) reproduces the uninterrupted run bit for bit on the same machine.

The output directory is an upstream: ``model.safetensors`` + ``emoboost_upstream.json`` (model
type, model/feature config, pretraining provenance), loadable with
:func:`emoboost.upstreams.local.load_local_upstream`. Also written: ``loss.csv``,
``loss_curve.png`` and ``checkpoints/step_XXXXXXX.pt``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoboost.audio import AudioError, load_audio
from emoboost.pretrain.losses import pretrain_loss
from emoboost.pretrain.masking import MaskConfig
from emoboost.upstreams.local import MODEL_TYPES, build_model
from emoboost.utils import atomic_write_bytes, atomic_write_text, bound_threads

log = logging.getLogger(__name__)

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".opus")
UPSTREAM_FILE = "emoboost_upstream.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "emoboost-pretrained"
FORMAT_VERSION = 1
# Settings that do not change the numbers a run produces (allowed to differ on resume).
_NON_IDENTITY = ("steps", "checkpoint_every", "keep_checkpoints", "threads", "log_every", "intensity_cache", "device")


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (YAML keys are the field names)."""

    model: str = "mockingjay"
    model_config: dict = field(default_factory=dict)
    feature: dict = field(default_factory=dict)
    masking: dict = field(default_factory=dict)  # MaskConfig fields; 'strategy': random | ems
    steps: int = 600
    batch_size: int = 16
    crop_seconds: float = 3.0
    lr: float = 5e-4
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    threads: int = 1
    device: str = "cpu"  # cpu | cuda | auto (cuda when available)
    min_seconds: float = 0.5
    max_files: int | None = None
    intensity_model: str | None = None  # directory of a saved IntensityModel (needed for EMS)
    intensity_cache: str | None = None  # default: <out_dir>/intensity_cache

    def __post_init__(self) -> None:
        if self.model not in MODEL_TYPES:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(MODEL_TYPES)}")
        MaskConfig.from_dict(self.masking)  # validate early
        if self.steps < 1 or self.batch_size < 1 or self.crop_seconds <= 0:
            raise ValueError("steps, batch_size and crop_seconds must be positive")

    @property
    def mask(self) -> MaskConfig:
        return MaskConfig.from_dict(self.masking)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown pretraining config key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PretrainConfig:
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"pretraining config {path} does not exist")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def with_overrides(self, overrides: dict[str, Any]) -> PretrainConfig:
        """Dotted keys (``masking.strategy``, ``model_config.hidden_size``) -> new config."""
        d = self.to_dict()
        for key, value in overrides.items():
            node = d
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        return PretrainConfig.from_dict(d)

    def identity(self) -> dict:
        d = self.to_dict()
        for k in _NON_IDENTITY:
            d.pop(k, None)
        return d


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def collect_audio(sources: Iterable[str | Path]) -> list[Path]:
    """Audio files from manifests (.jsonl/.csv), folders (recursive) or single files; sorted, unique."""
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTS))
        elif p.suffix.lower() in (".jsonl", ".csv"):
            from emoboost.data.manifest import Manifest

            out.extend(Path(u.path) for u in Manifest.read(p))
        elif p.suffix.lower() in AUDIO_EXTS:
            if not p.exists():
                raise AudioError(p, "file does not exist")
            out.append(p)
        elif not p.exists():
            raise FileNotFoundError(f"pretraining source {p} does not exist")
        else:
            raise ValueError(f"pretraining source {p}: expected a folder, a manifest (.jsonl/.csv) or an audio file")
    seen: set[str] = set()
    uniq = []
    for f in out:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            uniq.append(f)
    if not uniq:
        raise ValueError(f"no audio files found in {[str(s) for s in sources]}")
    return uniq


@dataclass
class PretrainData:
    files: list[Path]
    mels: list[torch.Tensor]  # raw log-mel [T, n_mels] per file
    intensity: list[np.ndarray] | None  # per file, on the mel frame grid
    skipped: list[str]

    @property
    def frames(self) -> np.ndarray:
        return np.array([len(m) for m in self.mels])

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f, m in zip(self.files, self.mels):
            h.update(f"{f.name}:{len(m)}".encode())
        return h.hexdigest()[:16]


def load_pretrain_data(files: list[Path], model: torch.nn.Module, config: PretrainConfig, out_dir: Path,
                       progress: bool = True) -> PretrainData:
    """Decode every file once, compute raw log-mel (and EMS intensity), skipping unusable audio."""
    from tqdm import tqdm

    from emoboost.pretrain.align import align_to_times

    frontend = model.frontend
    mels, kept, skipped = [], [], []
    if config.max_files is not None:
        files = files[: config.max_files]
    for f in tqdm(files, desc="log-mel", unit="file", disable=not progress, leave=False):
        try:
            wav = load_audio(f, min_duration=config.min_seconds)
        except AudioError as e:
            skipped.append(str(e))
            log.warning("skipping %s", e)
            continue
        with torch.no_grad():
            mel, _ = frontend.raw(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
        mels.append(mel[0].contiguous())
        kept.append(f)
    if not mels:
        raise ValueError(f"none of the {len(files)} pretraining files is usable: {skipped[:3]}")
    intensity = None
    if config.mask.strategy == "ems":
        from emoboost.pretrain.intensity import IntensityModel, cached_file_intensity

        if not config.intensity_model:
            raise ValueError("masking strategy 'ems' needs `intensity_model` (a directory saved by "
                             "`emoboost intensity --train DIR`)")
        imodel = IntensityModel.load(config.intensity_model)
        cache = Path(config.intensity_cache) if config.intensity_cache else out_dir / "intensity_cache"
        intensity = []
        rate = frontend.cfg.frame_rate
        for f, m in tqdm(list(zip(kept, mels)), desc="intensity", unit="file", disable=not progress, leave=False):
            times, values = cached_file_intensity(f, imodel, cache)
            intensity.append(align_to_times(times, values, np.arange(len(m)) / rate))
    return PretrainData(kept, mels, intensity, skipped)


def sample_batch(data: PretrainData, config: PretrainConfig, frame_rate: float, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray] | None]:
    """Random crops: files drawn with probability proportional to length, uniform crop start."""
    lens = data.frames
    crop = max(1, int(round(config.crop_seconds * frame_rate)))
    idx = rng.choice(len(lens), size=config.batch_size, p=lens / lens.sum())
    n_mels = data.mels[0].shape[1]
    crops, inten, sizes = [], [], []
    for i in idx:
        n = int(min(crop, lens[i]))
        s = int(rng.integers(0, lens[i] - n + 1))
        crops.append(data.mels[i][s: s + n])
        sizes.append(n)
        if data.intensity is not None:
            inten.append(data.intensity[i][s: s + n])
    T = max(sizes)
    mel = torch.zeros(len(idx), T, n_mels)
    for b, c in enumerate(crops):
        mel[b, : len(c)] = c
    return mel, torch.tensor(sizes), (inten if data.intensity is not None else None)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def _ckpt_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def save_checkpoint(out_dir: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    history: list[tuple[int, float, float]], config: PretrainConfig, data_fp: str,
                    elapsed: float, keep: int) -> Path:
    """Atomic write of model + optimizer + history; keeps the newest ``keep`` checkpoints."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "history": torch.tensor(history, dtype=torch.float64) if history else torch.zeros(0, 3, dtype=torch.float64),
        "config": json.dumps(config.identity(), sort_keys=True),
        "data": data_fp,
        "elapsed": float(elapsed),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    path = atomic_write_bytes(_ckpt_dir(out_dir) / f"step_{step:07d}.pt", buf.getvalue())
    old = sorted(_ckpt_dir(out_dir).glob("step_*.pt"))[: -max(1, keep)]
    for p in old:
        p.unlink(missing_ok=True)
    return path


def latest_checkpoint(out_dir: Path) -> dict | None:
    """The newest loadable checkpoint (a corrupt newest one falls back to the previous)."""
    for p in sorted(_ckpt_dir(out_dir).glob("step_*.pt"), reverse=True):
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped, loudly
            log.warning("ignoring unreadable checkpoint %s (%s)", p, e)
    return None


def lr_at(step: int, config: PretrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr`` (a pure function of the step)."""
    warm = max(1, int(round(config.warmup_fraction * config.steps)))
    if step < warm:
        return config.lr * (step + 1) / warm
    frac = (step - warm) / max(1, config.steps - warm)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cos)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def write_loss_files(out_dir: Path, history: list[tuple[int, float, float]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "loss", "lr"])
    for s, loss, lr in history:
        w.writerow([int(s), f"{loss:.6f}", f"{lr:.3e}"])
    atomic_write_text(out_dir / "loss.csv", buf.getvalue())
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = np.asarray(history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(h[:, 0], h[:, 1], lw=0.6, alpha=0.5, label="step loss")
    k = max(1, len(h) // 30)
    if k > 1:
        sm = np.convolve(h[:, 1], np.ones(k) / k, mode="valid")
        ax.plot(h[k - 1:, 0], sm, lw=1.5, label=f"moving mean ({k})")
    ax.set_xlabel("step")
    ax.set_ylabel("L1 loss")
    ax.set_title(out_dir.name)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_dir / "loss_curve.png", png.getvalue())


def export_upstream(out_dir: Path, model: torch.nn.Module, config: PretrainConfig, extra: dict) -> Path:
    """``model.safetensors`` + ``emoboost_upstream.json``: what the spine loads by path."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / WEIGHTS_FILE, save(state))
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_type": config.model,
        "model_config": model.cfg.to_dict(),
        "feature": model.feature_cfg.to_dict(),
        "frame_rate": model.frame_rate,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_hidden_states,
        "pretrain": {"config": config.to_dict(), **extra},
    }
    atomic_write_text(out_dir / UPSTREAM_FILE, json.dumps(meta, indent=2))
    return out_dir


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def pretrain(config: PretrainConfig | dict | str | Path, sources: Iterable[str | Path], out_dir: str | Path,
             resume: bool = True, progress: bool = True, stop_after: int | None = None) -> Path:
    """Pretrain and export an upstream directory; returns ``out_dir``.

    ``resume``: continue from the newest checkpoint in ``out_dir`` (its config and data must match;
    a finished run is returned untouched). ``stop_after``: stop once this many steps are done
    (after checkpointing) -- simulates an interruption, used by tests.
    """
    from tqdm import tqdm

    if isinstance(config, (str, Path)):
        config = PretrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = PretrainConfig.from_dict(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done_marker = out_dir / UPSTREAM_FILE
    if resume and done_marker.exists() and (out_dir / WEIGHTS_FILE).exists():
        meta = json.loads(done_marker.read_text())
        prev = PretrainConfig.from_dict(meta["pretrain"]["config"])
        if prev.identity() == config.identity() and prev.steps == config.steps:
            log.info("%s is already pretrained; nothing to do", out_dir)
            return out_dir
    if not resume:
        for p in _ckpt_dir(out_dir).glob("step_*.pt"):
            p.unlink()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(bound_threads(config.threads, "threads"))
    try:
        return _pretrain(config, list(sources), out_dir, resume, progress, stop_after, tqdm)
    finally:
        torch.set_num_threads(prev_threads)


def _pretrain(config: PretrainConfig, sources: list, out_dir: Path, resume: bool, progress: bool,
              stop_after: int | None, tqdm) -> Path:  # noqa: ANN001 - tqdm class
    t_setup = time.time()
    torch.manual_seed(config.seed)
    model = build_model(config.model, config.model_config, config.feature)
    files = collect_audio(sources)
    data = load_pretrain_data(files, model, config, out_dir, progress)
    if model.feature_cfg.normalize == "global":
        model.frontend.set_stats(data.mels)
    frame_rate = model.feature_cfg.frame_rate
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if config.device == "auto" else config.device))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[tuple[int, float, float]] = []
    start, elapsed = 0, 0.0
    data_fp = data.fingerprint()
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        saved_cfg = json.loads(ckpt["config"])
        if saved_cfg != json.loads(json.dumps(config.identity(), sort_keys=True)):
            diff = sorted(k for k in set(saved_cfg) | set(config.identity())
                          if saved_cfg.get(k) != config.identity().get(k))
            raise ValueError(f"{out_dir}: checkpoint was made with a different config (differs in {diff}); "
                             "use a new output folder or resume=False")
        if ckpt["data"] != data_fp:
            raise ValueError(f"{out_dir}: checkpoint was made on different pretraining audio; "
                             "use a new output folder or resume=False")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        history = [(int(s), float(v), float(lr)) for s, v, lr in ckpt["history"].tolist()]
        elapsed = float(ckpt["elapsed"])
        log.info("resuming %s from step %d", out_dir, start)
    setup_s = time.time() - t_setup
    mask_cfg = config.mask
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    model.train()
    bar = tqdm(total=config.steps, initial=start, desc=f"pretrain {out_dir.name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    run_start_elapsed = elapsed
    ema = None
    try:
        for step in range(start, end):
            rng = np.random.default_rng([config.seed, step])
            torch.manual_seed(config.seed * 1_000_003 + step)
            mel, lengths, inten = sample_batch(data, config, frame_rate, rng)
            mel, lengths = mel.to(device), lengths.to(device)
            lr = lr_at(step, config)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = pretrain_loss(model, mel, lengths, mask_cfg, rng, inten)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{out_dir}: loss became {loss.item()} at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            value = float(loss.detach())
            history.append((step + 1, value, lr))
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.update(1)
            if (step + 1) % max(1, config.log_every) == 0:
                bar.set_postfix(loss=f"{ema:.4f}", lr=f"{lr:.1e}")
            elapsed = run_start_elapsed + time.time() - t0
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
                save_checkpoint(out_dir, step + 1, model, opt, history, config, data_fp, elapsed,
                                config.keep_checkpoints)
                write_loss_files(out_dir, history)
    finally:
        bar.close()
    if end < config.steps:
        return out_dir
    model.eval().to("cpu")
    tail = [v for _, v, _ in history[-max(1, config.steps // 20):]]
    extra = {
        "steps_done": config.steps,
        "final_loss": float(np.mean(tail)) if tail else None,
        "train_seconds": round(elapsed, 1),
        "setup_seconds_last_run": round(setup_s, 1),
        "n_files": len(data.files),
        "hours": round(float(data.frames.sum()) / frame_rate / 3600, 3),
        "skipped": data.skipped,
        "data_fingerprint": data_fp,
        "sources": [str(s) for s in sources],
        "torch_threads": torch.get_num_threads(),
    }
    if config.mask.strategy == "ems":
        from emoboost.pretrain.intensity import IntensityModel

        extra["intensity_model_fingerprint"] = IntensityModel.load(config.intensity_model).fingerprint()
    write_loss_files(out_dir, history)
    export_upstream(out_dir, model, config, extra)
    return out_dir
