"""The SSL feature store: each clip's own frames on disk, memory-mapped, with pooled statistics beside them.

Why this layout
---------------
* **One entry per (encoder, encoding, audio content)**, under the content-addressed cache root
  (``<root>/<key>/<hash[:2]>/<hash>.*``): renaming audio keeps its entries, changing any weight or
  option starts a new key, and N processes or machines can fill one store without coordination
  (each entry is written to a temp file and renamed into place; last writer wins, both are valid).
* **Pooled statistics** (``<hash>.stats.npz``: per-layer frame mean and std ``[L, D]`` float32, the
  clip's sample and frame counts) are written for every utterance. Pooled methods (linear, logreg)
  read only these, a few KB per utterance, and never touch frames.
* **Frames** (``<hash>.npy``: ``[L_kept, T, D]`` float16) are plain ``.npy`` files opened with
  ``np.load(mmap_mode="r")`` and sliced on demand. We chose ``.npy`` over safetensors/zarr because a
  per-utterance file is the natural unit of content addressing and atomic replacement, numpy maps it
  without a dependency, and a layer slice ``[l, t0:t1]`` is one contiguous read. Mappings are opened
  per access and dropped, so neither the address space nor RSS grows with the corpus.
* ``frames=None`` (``--store pooled``) keeps statistics only; ``frames=(2, 3, 4)`` keeps those layers.

Encodings: ``utterance`` runs the encoder on the whole clip (no zero padding), in windows of
``window`` seconds (Whisper's 30 s limit) whose frames are concatenated. ``segment`` encodes each
fixed segment (3 s, last zero-padded) on its own, as MS-EmoBoost's paper does, and stores the
segments' frames back to back, so segment ``s`` is frames ``[s*T', (s+1)*T')``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoboost.audio import SAMPLE_RATE, AudioError, Segmenting, content_hash, load_audio, segment
from emoboost.features.cache import feature_key, to_float16, warn_skipped
from emoboost.utils import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from emoboost.data.manifest import Manifest, Utterance
    from emoboost.upstreams.base import Upstream

log = logging.getLogger(__name__)

STORE_VERSION = 1


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreSpec:
    """What an SSL store holds: how clips are encoded and which layers keep their frames."""

    encoding: str = "utterance"  # "utterance" | "segment"
    frames: tuple[int, ...] | str | None = "all"  # "all", a tuple of layer indices, or None (pooled only)
    window: float = 30.0  # utterance encoding: encoder window in seconds
    segmenting: Segmenting = field(default_factory=Segmenting)  # segment encoding: the segments

    def __post_init__(self) -> None:
        if self.encoding not in ("utterance", "segment"):
            raise ValueError(f"segment_encoding must be 'utterance' or 'segment', got {self.encoding!r}")
        if isinstance(self.frames, (list, tuple)):
            layers = tuple(sorted({int(i) for i in self.frames}))
            if not layers or min(layers) < 0:
                raise ValueError(f"store layers must be non-negative layer indices, got {self.frames!r}")
            object.__setattr__(self, "frames", layers)
        elif self.frames not in ("all", None):
            raise ValueError(f"store frames must be 'all', a list of layers or None, got {self.frames!r}")
        if self.window <= 0:
            raise ValueError(f"encoder window must be positive, got {self.window}")

    @property
    def keeps_frames(self) -> bool:
        return self.frames is not None

    def encoding_key(self) -> str:
        if self.encoding == "segment":
            return f"segenc-{self.segmenting.key()}"
        return f"uttenc-w{self.window:g}"

    def frame_layers(self, num_layers: int) -> tuple[int, ...]:
        """Layer indices whose frames are stored, for an upstream with ``num_layers`` hidden states."""
        if self.frames is None:
            return ()
        if self.frames == "all":
            return tuple(range(num_layers))
        bad = [i for i in self.frames if i >= num_layers]
        if bad:
            raise ValueError(f"store layers {bad} out of range for an upstream with {num_layers} hidden states")
        return tuple(self.frames)

    def describe(self) -> str:
        kept = "pooled statistics only" if self.frames is None else (
            "frames of all layers" if self.frames == "all" else f"frames of layers {','.join(map(str, self.frames))}")
        enc = (f"each {self.segmenting.length:g} s segment encoded on its own (last zero-padded)"
               if self.encoding == "segment" else f"whole clip encoded on its own frames ({self.window:g} s windows)")
        return f"{enc}; {kept}"


def parse_kept_layers(value: Any) -> tuple[int, ...] | str:
    """The layers whose frames the store keeps (``--layers`` / ``store_layers``) -> ``StoreSpec.frames``.

    None/"all" -> "all"; "2,3,4", [2, 3, 4] or 3 -> a tuple of hidden-state indices (the layer syntax of
    :mod:`emoboost.methods.layer_choice`, without negative indices or ``weighted``: a stored layer is
    one fixed hidden state, whatever the method later picks among them).
    """
    if value is None or value == "all":
        return "all"
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError as e:
            raise ValueError(f"layers must be 'all' or comma-separated integers, got {value!r}") from e
    return tuple(int(v) for v in value)


# ------------------------------------------------------------------------------------------------
# atomic file helpers
# ------------------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Pooled statistics of one clip: frame mean/std per layer and the clip's sizes."""

    mean: np.ndarray  # [L, D] float32
    std: np.ndarray  # [L, D] float32
    num_samples: int
    num_frames: int
    frame_rate: float = 50.0  # encoder frames per second
    segment_frames: int = 0  # segment encoding: frames per segment (0: utterance encoding)

    @classmethod
    def of(cls, frames: np.ndarray, num_samples: int, frame_rate: float = 50.0, segment_frames: int = 0) -> Stats:
        """From float32 frames [L, T, D] (before float16 rounding, so statistics are exact)."""
        x = np.asarray(frames, dtype=np.float32)
        mean = x.mean(axis=1, dtype=np.float64)
        std = np.sqrt(np.maximum(np.square(x, dtype=np.float64).mean(axis=1) - mean**2, 0.0))
        return cls(mean.astype(np.float32), std.astype(np.float32), int(num_samples), int(x.shape[1]),
                   float(frame_rate), int(segment_frames))


# ------------------------------------------------------------------------------------------------
# the store
# ------------------------------------------------------------------------------------------------
class FeatureStore:
    """SSL entries of one (upstream fingerprint, StoreSpec) under a cache root."""

    def __init__(self, root: str | Path, fingerprint: str, spec: StoreSpec, num_layers: int | None = None):
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.spec = spec
        self.num_layers = num_layers
        enc = spec.encoding_key()
        self.stats_key = feature_key("sslstats", fingerprint, None) + f"__{enc}__v{STORE_VERSION}"
        self.frames_key: str | None = None
        if spec.keeps_frames:
            lay = "Lall" if spec.frames == "all" else "L" + ".".join(map(str, spec.frames))  # type: ignore[arg-type]
            self.frames_key = feature_key("sslframes", fingerprint, None) + f"__{enc}__{lay}__v{STORE_VERSION}"

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, {self.fingerprint!r}, {self.spec})"

    # -- paths ------------------------------------------------------------------------------------
    @staticmethod
    def _check_hash(h: str) -> None:
        if not (4 <= len(h) <= 128 and all(c.isalnum() or c in "_-" for c in h)):
            raise ValueError(f"invalid audio hash {h!r}")

    def stats_path(self, h: str) -> Path:
        self._check_hash(h)
        return self.root / self.stats_key / h[:2] / f"{h}.stats.npz"

    def frames_path(self, h: str) -> Path:
        self._check_hash(h)
        if self.frames_key is None:
            raise ValueError("this store keeps pooled statistics only (no frames)")
        return self.root / self.frames_key / h[:2] / f"{h}.npy"

    # -- reading ----------------------------------------------------------------------------------
    def read_stats(self, h: str) -> Stats | None:
        """The entry's statistics, or None when absent; damaged entries are reported and treated as absent."""
        p = self.stats_path(h)
        try:
            with np.load(p, allow_pickle=False) as z:
                st = Stats(z["mean"], z["std"], int(z["num_samples"]), int(z["num_frames"]),
                           float(z["frame_rate"]), int(z["segment_frames"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError) as e:
            log.warning("store entry %s is unreadable (%s); recomputing", p, e)
            return None
        problem = self._stats_problem(st)
        if problem:
            log.warning("store entry %s is invalid (%s); recomputing", p, problem)
            return None
        return st

    def _stats_problem(self, st: Stats) -> str | None:
        if st.mean.ndim != 2 or st.mean.shape != st.std.shape:
            return f"statistics have shapes {st.mean.shape} / {st.std.shape}, expected [L, D]"
        if self.num_layers is not None and st.mean.shape[0] != self.num_layers:
            return f"{st.mean.shape[0]} layers, the encoder has {self.num_layers}"
        if st.mean.dtype != np.float32 or st.std.dtype != np.float32:
            return f"dtype {st.mean.dtype}, expected float32"
        if not (np.isfinite(st.mean).all() and np.isfinite(st.std).all()):
            return "non-finite values"
        if st.num_frames < 1 or st.num_samples < 1:
            return "empty clip"
        return None

    def frames_ok(self, h: str, st: Stats) -> bool:
        """Cheap check that the frames entry exists and its header matches the statistics."""
        if self.frames_key is None:
            return True
        p = self.frames_path(h)
        try:
            a = np.load(p, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, EOFError) as e:
            log.warning("store entry %s is unreadable (%s); recomputing", p, e)
            return False
        want = (len(self.spec.frame_layers(st.mean.shape[0])), st.num_frames, st.mean.shape[1])
        if a.dtype != np.float16 or a.shape != want:
            log.warning("store entry %s has shape %s %s, expected %s float16; recomputing", p, a.shape, a.dtype, want)
            return False
        return True

    def open_frames(self, h: str) -> np.ndarray:
        """Memory-mapped ``[L_kept, T, D]`` float16 frames (read-only; nothing is loaded until sliced)."""
        return np.load(self.frames_path(h), mmap_mode="r", allow_pickle=False)

    # -- writing ----------------------------------------------------------------------------------
    def write(self, h: str, frames: np.ndarray, num_samples: int, frame_rate: float, segment_frames: int = 0) -> Stats:
        """Store one clip's float32 frames [L, T, D]: frames first, statistics last (the completion mark)."""
        st = Stats.of(frames, num_samples, frame_rate, segment_frames)
        if self.frames_key is not None:
            keep = list(self.spec.frame_layers(frames.shape[0]))
            arr = np.ascontiguousarray(to_float16(np.asarray(frames)[keep]))
            atomic_write(self.frames_path(h), lambda f: np.save(f, arr, allow_pickle=False))
        atomic_write(self.stats_path(h), lambda f: np.savez(
            f, mean=st.mean, std=st.std, num_samples=np.int64(st.num_samples), num_frames=np.int64(st.num_frames),
            frame_rate=np.float64(st.frame_rate), segment_frames=np.int64(st.segment_frames)))
        return st

    def write_info(self, info: dict) -> None:
        """``info.json`` describing each key; skipped (with a warning) when the store is read-only."""
        for key in filter(None, (self.stats_key, self.frames_key)):
            p = self.root / key / "info.json"
            text = json.dumps({**info, "key": key, "store": self.spec.describe()}, indent=2, sort_keys=True, default=str)
            try:
                if p.is_file() and p.read_text() == text:
                    continue
                atomic_write_text(p, text)
            except OSError as e:
                log.warning("cannot write %s (%s); continuing read-only", p, e.strerror or e)

    def entry_bytes(self, h: str) -> int:
        n = 0
        for p in (self.stats_path(h), self.frames_path(h) if self.frames_key else None):
            if p is not None and p.is_file():
                n += p.stat().st_size
        return n


# ------------------------------------------------------------------------------------------------
# encoding one clip
# ------------------------------------------------------------------------------------------------
def encode_clip(upstream: Upstream, wav: np.ndarray, spec: StoreSpec) -> tuple[np.ndarray, int]:
    """One clip -> (float32 frames [L, T, D] as the store keeps them, frames per segment or 0)."""
    import torch

    wav = np.asarray(wav, dtype=np.float32)
    with torch.inference_mode():
        if spec.encoding == "segment":
            segs = segment(wav, spec.segmenting)
            x = torch.from_numpy(segs)
            layers, lens = upstream(x, torch.full((len(x),), x.shape[1], dtype=torch.long))
            t = int(lens.max())
            a = layers[:, :, :t].float().cpu().numpy()  # [L, S, T', D]
            return a.reshape(a.shape[0], -1, a.shape[-1]), t
        win = int(round(spec.window * upstream.sample_rate))
        parts = []
        for s in range(0, len(wav), win):
            chunk = wav[s : s + win]
            if s > 0 and len(chunk) < _min_chunk(upstream):
                break  # a tail shorter than one encoder frame adds nothing
            x = torch.from_numpy(np.ascontiguousarray(chunk))[None]
            layers, lens = upstream(x, torch.tensor([len(chunk)]))
            parts.append(layers[:, 0, : int(lens[0])].float().cpu().numpy())
        return (np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]), 0


def _min_chunk(upstream: Upstream) -> int:
    return int(np.ceil(upstream.sample_rate / upstream.frame_rate)) + 1


def shard_of(utt_id: str, n: int) -> int:
    """Deterministic shard of an utterance (independent of manifest order): sha256(id) mod n."""
    return int(hashlib.sha256(utt_id.encode()).hexdigest()[:12], 16) % n


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (0-based i) -> (i, N)."""
    if not value:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError as e:
        raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {value!r}") from e
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {value}: need 0 <= i < N")
    return i, n


# ------------------------------------------------------------------------------------------------
# filling a store for a corpus
# ------------------------------------------------------------------------------------------------
@dataclass
class ExtractReport:
    """What one extraction did: entries per utterance, what was skipped and what it cost."""

    hashes: dict[str, str] = field(default_factory=dict)  # utt id -> audio hash, for entries now complete
    samples: dict[str, int] = field(default_factory=dict)  # utt id -> samples of audio (always; a few bytes each)
    frames: dict[str, int] = field(default_factory=dict)  # utt id -> stored frames (always)
    # with keep_layers: utt id -> (mean, std) [k, D] float32 of those layers only, so memory is N × k × D
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    computed: int = 0
    reused: int = 0
    audio_seconds: float = 0.0
    bytes: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0

    def summary(self) -> dict:
        hours = self.audio_seconds / 3600
        return {"files": len(self.hashes), "computed": self.computed, "reused": self.reused,
                "skipped": len(self.skipped), "audio_hours": round(hours, 4), "bytes": self.bytes,
                "bytes_per_audio_hour": int(self.bytes / hours) if hours else 0,
                "wall_s": round(self.wall_s, 2), "encode_s": round(self.encode_s, 2),
                "x_real_time": round(self.audio_seconds / self.encode_s, 1) if self.encode_s else None}


def _hash_entries(manifest: Manifest, skipped: list[tuple[str, str]], min_duration: float,
                  progress: bool, desc: str) -> Iterator[tuple[Utterance, str]]:
    from tqdm.auto import tqdm

    for utt in tqdm(list(manifest), desc=desc, disable=not progress, unit="utt"):
        if utt.duration and utt.duration < min_duration:
            skipped.append((utt.path, f"too short: {utt.duration:.3f} s < minimum {min_duration:.3f} s"))
            continue
        try:
            h = content_hash(utt.path)
        except AudioError as e:
            skipped.append((e.path, e.problem))
            continue
        except OSError as e:
            skipped.append((utt.path, f"cannot read file ({e.strerror or e})"))
            continue
        yield utt, h


def missing_entries(manifest: Manifest, store: FeatureStore, progress: bool = False,
                    min_duration: float = 0.0, on_entry: Callable[[str, Stats], None] | None = None,
                    ) -> tuple[dict[str, str], list[Utterance], list[tuple[str, str]]]:
    """-> (complete entries {utt id: hash}, utterances still to encode, unreadable files).

    ``on_entry(utt id, stats)`` sees the statistics of each complete entry (read here anyway), so
    callers never open the same entry twice; it should keep only what it needs (sizes, a few layers),
    so that memory does not grow with the corpus by [L, D] per utterance.
    """
    done: dict[str, str] = {}
    todo: list[Utterance] = []
    skipped: list[tuple[str, str]] = []
    for utt, h in _hash_entries(manifest, skipped, min_duration, progress, "store check"):
        st = store.read_stats(h)
        if st is not None and store.frames_ok(h, st):
            done[utt.id] = h
            if on_entry is not None:
                on_entry(utt.id, st)
        else:
            todo.append(utt)
    return done, todo, skipped


def extract_to_store(
    manifest: Manifest,
    store: FeatureStore,
    upstream: Upstream | Callable[[], Upstream],
    progress: bool = True,
    min_duration: float = 0.0,
    shard: tuple[int, int] | None = None,
    reject_silence: bool = False,
    keep_layers: Sequence[int] | None = None,
) -> ExtractReport:
    """Fill ``store`` for every utterance of ``manifest`` (or of one shard); resumable and idempotent.

    ``upstream`` may be a zero-argument factory: the encoder is then built only when some entry is
    missing, so a fully cached corpus never loads weights. Unusable audio is listed in the report's
    ``skipped`` and never stops the run. The report keeps each entry's sizes and, with ``keep_layers``,
    the pooled mean/std of those layers only (``run`` hands them to its source, so the statistics
    are read once); memory grows by a few bytes per utterance plus N × k × D for the kept layers.
    """
    t0 = time.perf_counter()
    rep = ExtractReport()
    keep = [int(v) for v in keep_layers] if keep_layers is not None else None

    def note(uid: str, st: Stats) -> None:
        rep.samples[uid], rep.frames[uid] = st.num_samples, st.num_frames
        if keep:
            rep.kept[uid] = (st.mean[keep], st.std[keep])  # fancy indexing copies: the [L, D] arrays are freed

    if shard is not None:
        i, n = shard
        manifest = manifest.filter(lambda u: shard_of(u.id, n) == i)
    done, todo, rep.skipped = missing_entries(manifest, store, progress=False, min_duration=min_duration,
                                              on_entry=note)
    rep.reused = len(done)
    for uid, h in done.items():
        rep.hashes[uid] = h
    enc: Upstream | None = None
    if todo:
        from tqdm.auto import tqdm

        for utt in tqdm(todo, desc="extract", disable=not progress, unit="utt"):
            try:
                h = content_hash(utt.path)
                wav = load_audio(utt.path, min_duration=min_duration, reject_silence=reject_silence)
            except AudioError as e:
                rep.skipped.append((e.path, e.problem))
                continue
            except OSError as e:
                rep.skipped.append((utt.path, f"cannot read file ({e.strerror or e})"))
                continue
            if enc is None:  # built at the first clip that decodes: broken files alone never load weights
                enc = upstream() if callable(upstream) and not hasattr(upstream, "forward") else upstream  # type: ignore[assignment]
                enc.eval()  # type: ignore[union-attr]
                store.num_layers = enc.num_layers  # type: ignore[union-attr]
                store.write_info({"kind": "ssl", "upstream": enc.config_dict(), "layout": {  # type: ignore[union-attr]
                    "stats": "<hash>.stats.npz: mean/std [L, D] float32, num_samples, num_frames",
                    "frames": "<hash>.npy: [L_kept, T, D] float16"}})
            t1 = time.perf_counter()
            try:
                frames, seg_frames = encode_clip(enc, wav, store.spec)  # type: ignore[arg-type]
            except ValueError as e:
                rep.skipped.append((utt.path, f"encoder refused the clip ({e})"))
                continue
            rep.encode_s += time.perf_counter() - t1
            if not np.isfinite(frames).all():
                rep.skipped.append((utt.path, "encoder produced non-finite features"))
                continue
            st = store.write(h, frames, len(wav), enc.frame_rate, seg_frames)  # type: ignore[union-attr]
            del frames
            note(utt.id, st)
            rep.hashes[utt.id] = h
            rep.computed += 1
    for utt in manifest:
        if utt.id in rep.hashes:
            rep.audio_seconds += rep.samples.get(utt.id, 0) / SAMPLE_RATE
            rep.bytes += store.entry_bytes(rep.hashes[utt.id])
    rep.hashes = {u.id: rep.hashes[u.id] for u in manifest if u.id in rep.hashes}  # manifest order
    rep.kept = {u: rep.kept[u] for u in rep.hashes if u in rep.kept}
    rep.wall_s = time.perf_counter() - t0
    warn_skipped(rep.skipped)
    return rep


# ------------------------------------------------------------------------------------------------
# views used by methods
# ------------------------------------------------------------------------------------------------
class SSLSource:
    """SSL features of a set of utterances, as methods see them: pooled statistics or frame windows.

    Subclasses hold the data (memory-mapped store entries, in-memory arrays, or statistics only).
    ``frame_layers`` are the hidden-state indices whose frames are available (empty: pooled only).
    """

    num_layers: int
    hidden_size: int
    frame_rate: float
    sample_rate: int = SAMPLE_RATE
    encoding: str = "utterance"
    segment_frames: int | None = None  # segment encoding: frames per stored segment
    frame_layers: tuple[int, ...] = ()
    segmenting: Segmenting = Segmenting()  # how segment-based methods cut windows (the run's segmenting)

    def __len__(self) -> int:
        raise NotImplementedError

    def stats(self, i: int) -> Stats:
        raise NotImplementedError

    def num_samples(self, i: int) -> int:
        return self.stats(i).num_samples

    def num_frames(self, i: int) -> int:
        return self.stats(i).num_frames

    def raw_frames(self, i: int) -> np.ndarray:
        """[L_kept, T, D] float16 (possibly memory-mapped)."""
        raise NotImplementedError

    # -- pooled -----------------------------------------------------------------------------------
    def pooled(self, idx: Sequence[int] | np.ndarray, layers: Sequence[int], std: bool = False) -> np.ndarray:
        """[n, k, D] (or [n, k, 2D] with the std concatenated) float32 for utterances ``idx``."""
        idx = np.asarray(idx, dtype=int)
        layers = [int(v) for v in layers]
        out = np.empty((len(idx), len(layers), self.hidden_size * (2 if std else 1)), dtype=np.float32)
        for j, i in enumerate(idx):
            st = self.stats(int(i))
            out[j, :, : self.hidden_size] = st.mean[layers]
            if std:
                out[j, :, self.hidden_size :] = st.std[layers]
        return out

    # -- frames -----------------------------------------------------------------------------------
    def _rows(self, layers: Sequence[int]) -> list[int]:
        missing = [v for v in layers if v not in self.frame_layers]
        if missing:
            have = ",".join(map(str, self.frame_layers)) or "none (pooled statistics only)"
            raise ValueError(f"frames of layer(s) {missing} are not in the feature store (stored: {have}); "
                             f"extract with --layers including them or --store frames")
        return [self.frame_layers.index(v) for v in layers]

    def frames(self, i: int, layers: Sequence[int]) -> np.ndarray:
        """[k, T, D] float16 frames of utterance ``i`` (a copy of the needed rows only)."""
        a = self.raw_frames(i)
        return np.asarray(a[self._rows(layers)])

    def segment_index(self, seg: Segmenting) -> tuple[np.ndarray, np.ndarray]:
        """Windows per utterance: (seg_utt [N_seg], start frame [N_seg]) for fixed-length segments."""
        seg_utt, starts = [], []
        for i in range(len(self)):
            if self.encoding == "segment":
                n = self.num_frames(i) // int(self.segment_frames or 1)
                s0 = np.arange(n) * int(self.segment_frames or 1)
            else:
                n = seg.num_segments(self.num_samples(i))
                s0 = np.round(np.arange(n) * seg.hop_samples / self.sample_rate * self.frame_rate).astype(int)
            seg_utt.append(np.full(n, i))
            starts.append(s0)
        return np.concatenate(seg_utt).astype(int), np.concatenate(starts).astype(int)

    def window_frames(self, seg: Segmenting) -> int:
        if self.encoding == "segment":
            return int(self.segment_frames or 0)
        return int(round(seg.length * self.frame_rate))


class StoreSource(SSLSource):
    """Utterances backed by store entries, in memory that does not grow by [L, D] per utterance.

    The source keeps each entry's sizes (two integers) and, when given, the pooled mean/std of the
    few layers the run's method reads (``kept_layers``, e.g. an extraction report's ``kept``).
    Anything else (other layers' statistics, frames) is read from the store on demand: statistics
    file by file, frames memory-mapped per access.
    """

    def __init__(self, store: FeatureStore, hashes: Sequence[str], segmenting: Segmenting | None = None,
                 num_samples: Sequence[int] | None = None, num_frames: Sequence[int] | None = None,
                 kept_layers: Sequence[int] = (), kept: Sequence[tuple[np.ndarray, np.ndarray]] | None = None):
        self.store = store
        self.hashes = list(hashes)
        if not self.hashes:
            raise ValueError("no utterances have SSL features in the store")
        for name, v in (("sizes", num_samples), ("sizes", num_frames), ("kept statistics", kept)):
            if v is not None and len(v) != len(self.hashes):
                raise ValueError(f"{len(v)} {name} given for {len(self.hashes)} entries")
        first = self.stats(0)  # sizes come from the entries: a cached run never builds the encoder
        self.num_layers, self.hidden_size = first.mean.shape
        self.frame_rate = first.frame_rate
        self.encoding = store.spec.encoding
        self.segment_frames = first.segment_frames or None
        self.frame_layers = store.spec.frame_layers(self.num_layers)
        if segmenting is not None:
            self.segmenting = segmenting
        if num_samples is None or num_frames is None:  # read one entry at a time; only its sizes are kept
            sizes = [(st.num_samples, st.num_frames) for st in map(self.stats, range(len(self.hashes)))]
            num_samples, num_frames = [n for n, _ in sizes], [t for _, t in sizes]
        self._samples = np.asarray(num_samples, dtype=np.int64)
        self._frames = np.asarray(num_frames, dtype=np.int64)
        self.kept_layers = tuple(int(v) for v in kept_layers) if kept else ()
        if kept:
            self._kept_mean = np.stack([m for m, _ in kept]).astype(np.float32, copy=False)  # [N, k, D]
            self._kept_std = np.stack([s for _, s in kept]).astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.hashes)

    def stats(self, i: int) -> Stats:
        """The entry's full statistics, read from the store (not kept)."""
        st = self.store.read_stats(self.hashes[i])
        if st is None:
            raise ValueError(f"store entry {self.store.stats_path(self.hashes[i])} is missing or invalid; "
                             f"rerun extraction")
        return st

    def num_samples(self, i: int) -> int:
        return int(self._samples[i])

    def num_frames(self, i: int) -> int:
        return int(self._frames[i])

    def pooled(self, idx: Sequence[int] | np.ndarray, layers: Sequence[int], std: bool = False) -> np.ndarray:
        layers = [int(v) for v in layers]
        if not self.kept_layers or not set(layers) <= set(self.kept_layers):
            return super().pooled(idx, layers, std)  # reads the entries' statistics one by one
        idx = np.asarray(idx, dtype=int)
        rows = [self.kept_layers.index(v) for v in layers]
        mean = self._kept_mean[idx][:, rows]
        return np.concatenate([mean, self._kept_std[idx][:, rows]], axis=-1) if std else mean

    def raw_frames(self, i: int) -> np.ndarray:
        return self.store.open_frames(self.hashes[i])

    def frames(self, i: int, layers: Sequence[int]) -> np.ndarray:
        rows = self._rows(layers)
        a = self.raw_frames(i)
        out = np.array(a[rows]) if rows != list(range(a.shape[0])) else np.array(a)
        del a  # drop the mapping now: RSS must not grow with the corpus
        return out


class ArraySource(SSLSource):
    """In-memory frames ``[L, T, D]`` per utterance (predict, tests); statistics computed from them."""

    def __init__(self, frames: Sequence[np.ndarray], num_samples: Sequence[int] | None = None,
                 frame_rate: float = 50.0, encoding: str = "utterance", segment_frames: int | None = None,
                 sample_rate: int = SAMPLE_RATE):
        self._frames = [np.asarray(a) for a in frames]
        if not self._frames:
            raise ValueError("no utterances given")
        shapes = {(a.ndim, a.shape[0], a.shape[-1]) for a in self._frames}
        if len(shapes) != 1 or next(iter(shapes))[0] != 3:
            raise ValueError(f"ssl frames must all be [L, T, D] with the same L and D, got {sorted(shapes)}")
        self.num_layers, self.hidden_size = self._frames[0].shape[0], self._frames[0].shape[2]
        self.frame_rate, self.sample_rate = frame_rate, sample_rate
        self.encoding, self.segment_frames = encoding, segment_frames
        self.frame_layers = tuple(range(self.num_layers))
        if num_samples is None:
            num_samples = [int(round(a.shape[1] / frame_rate * sample_rate)) for a in self._frames]
        self._stats = [Stats.of(a, n, frame_rate, segment_frames or 0) for a, n in zip(self._frames, num_samples)]

    @classmethod
    def from_segments(cls, arrays: Sequence[np.ndarray], seg: Segmenting | None = None,
                      frame_rate: float = 50.0) -> ArraySource:
        """Segment-encoded ``[S, L, T', D]`` arrays (the old layout) as a segment-encoding source."""
        seg = seg or Segmenting()
        t = int(np.asarray(arrays[0]).shape[2])
        frames = [np.asarray(a).transpose(1, 0, 2, 3).reshape(a.shape[1], -1, a.shape[3]) for a in arrays]
        samples = [len(a) * seg.hop_samples for a in arrays]
        return cls(frames, samples, frame_rate=frame_rate, encoding="segment", segment_frames=t)

    def __len__(self) -> int:
        return len(self._frames)

    def stats(self, i: int) -> Stats:
        return self._stats[i]

    def raw_frames(self, i: int) -> np.ndarray:
        return self._frames[i]


class StatsSource(SSLSource):
    """Pooled statistics only (predict's streamed whole-file pooling); no frames."""

    def __init__(self, stats: Sequence[Stats], frame_rate: float = 50.0):
        self._stats = list(stats)
        self.num_layers, self.hidden_size = self._stats[0].mean.shape
        self.frame_rate = frame_rate
        self.frame_layers = ()

    def __len__(self) -> int:
        return len(self._stats)

    def stats(self, i: int) -> Stats:
        return self._stats[i]


class SSLView:
    """A subset (index list) of an :class:`SSLSource`: what :class:`UtteranceSet` carries per split.

    Pooled features are cached on the source per layer choice, so folds, seeds and models share one
    computation ("pool once").
    """

    def __init__(self, source: SSLSource, idx: Sequence[int] | np.ndarray | None = None):
        self.source = source
        self.idx = np.arange(len(source)) if idx is None else np.asarray(idx, dtype=int)

    def __len__(self) -> int:
        return len(self.idx)

    def subset(self, idx: Sequence[int] | np.ndarray) -> SSLView:
        return SSLView(self.source, self.idx[np.asarray(idx, dtype=int)])

    @property
    def num_layers(self) -> int:
        return self.source.num_layers

    @property
    def hidden_size(self) -> int:
        return self.source.hidden_size

    def pooled(self, layers: Sequence[int], std: bool = False) -> np.ndarray:
        """[n, k, D] float32 mean-pooled frames of the listed layers (``std``: [n, k, 2D] mean ‖ std)."""
        key = (tuple(int(v) for v in layers), bool(std))
        cache = self.source.__dict__.setdefault("_pooled_cache", {})
        if key not in cache:
            cache.clear()  # keep one layer choice at a time: memory stays N × k × D
            cache[key] = self.source.pooled(np.arange(len(self.source)), key[0], std)
        return cache[key][self.idx]

    def segments(self, layers: Sequence[int], squeeze: bool = False, max_per_utt: int | None = None,
                 seg: Segmenting | None = None) -> tuple[WindowArray, np.ndarray]:
        """Lazy fixed-length windows [N_seg, k, T', D] drawn from the stored frames, and seg_utt [N_seg].

        ``max_per_utt`` keeps at most that many windows per utterance (evenly spaced), so one very
        long clip cannot dominate training.
        """
        seg = seg or self.source.segmenting
        seg_utt_all, starts_all = self.source.segment_index(seg)
        # segment_index lists each utterance's windows contiguously, in source order: utterance u owns
        # rows first[u] .. first[u] + count[u] (linear in the corpus, however many utterances a view has)
        count = np.bincount(seg_utt_all, minlength=len(self.source))
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        order = []
        for u in self.idx:
            o = first[u] + np.arange(count[u])
            if max_per_utt and len(o) > max_per_utt:
                o = o[np.linspace(0, len(o) - 1, max_per_utt).round().astype(int)]
            order.append(o)
        sel = np.concatenate(order).astype(int) if order else np.zeros(0, dtype=int)
        owner = np.repeat(np.arange(len(self.idx)), [len(o) for o in order]) if order else np.zeros(0, dtype=int)
        win = WindowArray(self.source, seg_utt_all[sel], starts_all[sel], self.source.window_frames(seg),
                          list(layers), squeeze)
        return win, owner.astype(int)


class WindowArray:
    """Array-like [N, k, T', D] (or [N, T', D] squeezed) of frame windows, materialised per batch.

    Windows running past the clip's end are zero-padded (the old last-segment padding, now in
    feature space); ``valid_frames`` says how many frames of each window are real.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, source: SSLSource, utt: np.ndarray, starts: np.ndarray, length: int,
                 layers: list[int], squeeze: bool):
        self.source, self.utt, self.starts, self.length = source, utt, starts, int(length)
        self.layers, self.squeeze = layers, squeeze
        self.ndim = 3 if squeeze else 4

    @property
    def shape(self) -> tuple[int, ...]:
        tail = (self.length, self.source.hidden_size)
        return (len(self.utt), *tail) if self.squeeze else (len(self.utt), len(self.layers), *tail)

    def __len__(self) -> int:
        return len(self.utt)

    def valid_frames(self) -> np.ndarray:
        n = np.array([self.source.num_frames(int(u)) for u in self.utt])
        return np.clip(n - self.starts, 0, self.length)

    def astype(self, dtype: Any) -> np.ndarray:
        """The whole array, materialised (tests and small sets only; training reads batches)."""
        return np.asarray(self).astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            return self[key[0]][(slice(None), *key[1:])] if not isinstance(key[0], (int, np.integer)) \
                else self[key[0]][key[1:]]
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        idx = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key, dtype=int)
        out = np.zeros((len(idx), len(self.layers), self.length, self.source.hidden_size), dtype=np.float32)
        by_utt: dict[int, list[int]] = {}
        for j, i in enumerate(idx):
            by_utt.setdefault(int(self.utt[i]), []).append(j)
        rows = self.source._rows(self.layers)
        for u, js in by_utt.items():
            # only the windows' own frames are read: the utterance stays memory-mapped (or in memory),
            # so a long recording costs its windows, not a copy of the whole clip per batch
            f = self.source.raw_frames(u)  # [L_kept, T, D] float16
            for j in js:
                s = int(self.starts[idx[j]])
                chunk = f[rows, s : s + self.length]
                out[j, :, : chunk.shape[1]] = chunk
            del f  # drop the mapping now: RSS must not grow with the corpus
        if not np.isfinite(out).all():
            bad = sorted({int(self.utt[i]) for i in idx})
            raise ValueError(f"non-finite values in stored frames of utterance(s) {bad}; delete the entries and "
                             f"rerun extraction")
        return out[:, 0] if self.squeeze else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[np.arange(len(self))]
        return a.astype(dtype) if dtype is not None else a
