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
  per access and dropped, so neither the address space nor RSS grows with the corpus. float16 halves
  the disk and keeps ~3 significant digits, far below the run-to-run noise of the classifiers trained
  on them; values beyond the float16 range (+-65504) are clipped, not inf.
* ``frames=None`` (``--store pooled``) keeps statistics only; ``frames=(2, 3, 4)`` keeps those layers.

This module holds the entries (spec, keys, reading, validation, atomic writing). How a clip becomes
frames is :mod:`emoboost.features.encode`; how methods read entries, :mod:`emoboost.features.views`;
filling a store for a corpus, :mod:`emoboost.features.extract` (and :mod:`emoboost.features.ray_engine`).
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.audio import Segmenting
from emoboost.features.cache import feature_key
from emoboost.utils import atomic_write, atomic_write_text, try_lock

log = logging.getLogger(__name__)

STORE_VERSION = 1
FP16_MAX = float(np.finfo(np.float16).max)


def to_float16(array: np.ndarray) -> np.ndarray:
    """float16 copy, clipped to the float16 range (never inf)."""
    a = np.asarray(array)
    if a.dtype == np.float16:
        return a
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16)


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


def store_info(upstream: Any) -> dict:
    """``info.json`` of a store key: the encoder's config and the entry layout (every engine writes it)."""
    return {"kind": "ssl", "upstream": upstream.config_dict(), "layout": {
        "stats": "<hash>.stats.npz: mean/std [L, D] float32, num_samples, num_frames",
        "frames": "<hash>.npy: [L_kept, T, D] float16"}}


# ------------------------------------------------------------------------------------------------
# one entry
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
        sums = FrameSums()
        sums.add(np.asarray(frames, dtype=np.float32))
        return sums.stats(num_samples, frame_rate, segment_frames)


class FrameSums:
    """Running per-layer sums of frames (float64), so statistics of any number of windows need one window in
    memory: the store's entries and the inference engine's pooled heads both accumulate here.

    For a single window the result is bit-identical to numpy's ``mean``/``std`` over the frames (the same
    float64 row-by-row accumulation); over several windows it differs only in float64 rounding."""

    def __init__(self) -> None:
        self.s1: np.ndarray | None = None
        self.s2: np.ndarray | None = None
        self.frames = 0

    def add(self, frames: np.ndarray) -> None:
        """Add float32 frames [L, T, D], one layer in float64 at a time (no [L, T, D] float64 copy)."""
        s1 = np.empty((frames.shape[0], frames.shape[2]))
        s2 = np.empty_like(s1)
        for li, layer in enumerate(frames):
            x = layer.astype(np.float64)
            s1[li], s2[li] = x.sum(axis=0), np.square(x).sum(axis=0)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.frames += frames.shape[1]

    def stats(self, num_samples: int, frame_rate: float, segment_frames: int = 0) -> Stats:
        """The clip's :class:`Stats` (frame mean and std per layer)."""
        if self.s1 is None or self.s2 is None or not self.frames:
            raise ValueError("no frames were added")
        mean = self.s1 / self.frames
        std = np.sqrt(np.maximum(self.s2 / self.frames - mean**2, 0.0))
        return Stats(mean.astype(np.float32), std.astype(np.float32), int(num_samples), self.frames,
                     float(frame_rate), int(segment_frames))


class NonFiniteFrames(ValueError):
    """The encoder produced NaN or infinite features for a clip: nothing of it is stored."""


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
    def read_stats(self, h: str, audio: str | None = None) -> Stats | None:
        """The entry's statistics, or None when absent; damaged entries are reported (one line naming the entry
        and, when given, its ``audio`` file) and treated as absent, so extraction recomputes them."""
        p = self.stats_path(h)
        where = f"{p} ({audio})" if audio else str(p)
        try:
            with np.load(p, allow_pickle=False) as z:
                st = Stats(z["mean"], z["std"], int(z["num_samples"]), int(z["num_frames"]),
                           float(z["frame_rate"]), int(z["segment_frames"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated, overwritten
            log.warning("store entry %s is unreadable (%s); recomputing", where, e)
            return None
        problem = self._stats_problem(st)
        if problem:
            log.warning("store entry %s is invalid (%s); recomputing", where, problem)
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

    def frames_finite(self, h: str, chunk: int = 1 << 16) -> bool:
        """Whether every stored frame value is finite: a full read of the entry, layer by layer in chunks of
        ``chunk`` frames (memory stays a few MB whatever the clip's length). The header check
        (:meth:`frames_ok`) cannot see a NaN written into the data; ``emoboost extract`` calls this."""
        if self.frames_key is None:
            return True
        try:
            a = self.open_frames(h)
            for layer in a:
                for t in range(0, layer.shape[0], chunk):
                    if not np.isfinite(layer[t : t + chunk]).all():
                        return False
        except (OSError, ValueError, EOFError):
            return False
        return True

    def invalidate(self, h: str, problem: str | None = None) -> None:
        """Remove a damaged entry's statistics, its completion mark, so the next extraction (``emoboost
        extract`` or a run) recomputes it; its frames are overwritten then. Only this entry's own files
        are touched, and a store that cannot be written is left as it is (the error still names it).
        ``problem=None``: the damage was reported already (by :meth:`read_stats`), nothing is logged."""
        try:
            self.stats_path(h).unlink(missing_ok=True)
            if problem is not None:
                log.warning("store entry %s %s; removed, to be recomputed", self.stats_path(h), problem)
        except OSError as e:
            if problem is not None:
                log.warning("store entry %s %s, and cannot be removed (%s)", self.stats_path(h), problem,
                            e.strerror or e)

    @contextmanager
    def claim(self, h: str) -> Iterator[bool]:
        """Hold the right to compute entry ``h`` while the block runs: yields True, or False at once when
        another live process computes it now (then that process's entry is the one to use).

        An OS lock on a small ``.<hash>.claim`` file beside the statistics: two extractions of one corpus
        (two shells, two shards overlapping, a run beside an extract) split the work instead of both
        doing all of it, and a process that dies (``kill -9`` included) releases its claims with it, so a
        stale claim never blocks. The file is removed after the entry is written. Without a writable
        store (a read-only cache) every claim is granted: the writes themselves will say what is wrong."""
        path = self.stats_path(h).with_name(f".{h}.claim")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield True
            return
        try:
            if not try_lock(fd):
                yield False
                return
            try:
                yield True
            finally:
                with suppress(OSError):
                    path.unlink()  # under the lock: a later claimer creates a fresh file
        finally:
            os.close(fd)

    def open_frames(self, h: str) -> np.ndarray:
        """Memory-mapped ``[L_kept, T, D]`` float16 frames (read-only; nothing is loaded until sliced)."""
        return np.load(self.frames_path(h), mmap_mode="r", allow_pickle=False)

    # -- writing ----------------------------------------------------------------------------------
    def write(self, h: str, frames: np.ndarray, num_samples: int, frame_rate: float, segment_frames: int = 0) -> Stats:
        """Store one clip's float32 frames [L, T, D]: frames first, statistics last (the completion mark)."""
        return self.write_windows(h, [(frames, segment_frames)], num_samples, frame_rate)

    def write_windows(self, h: str, windows: Iterable[tuple[np.ndarray, int]], num_samples: int,
                      frame_rate: float) -> Stats:
        """Store one clip given window by window (float32 frames [L, T_w, D] and the frames per segment, as
        :func:`emoboost.features.encode.encode_windows` yields them), holding one window in memory.

        Statistics accumulate in :class:`FrameSums`; kept frames go, as float16, to an unnamed temporary
        file beside the entry (gone with the process, whatever kills it), and are copied layer by layer
        into the ``.npy`` once the clip's length is known. Frames first, statistics last (the completion
        mark). A window with NaN or infinite values raises :class:`NonFiniteFrames` and writes nothing."""
        import tempfile

        sums, seg_frames, sizes = FrameSums(), 0, []
        path = self.frames_path(h) if self.frames_key is not None else None
        raw = None
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                raw = tempfile.TemporaryFile(dir=path.parent)
            keep: list[int] = []
            for frames, seg_frames in windows:  # noqa: B007 - the last window's count is the clip's
                if not np.isfinite(frames).all():
                    raise NonFiniteFrames("encoder produced non-finite features")
                sums.add(frames)
                if raw is not None:
                    keep = list(self.spec.frame_layers(frames.shape[0]))
                    part = np.ascontiguousarray(to_float16(np.asarray(frames)[keep]))  # [L_kept, T_w, D]
                    raw.write(memoryview(part).cast("B"))
                    sizes.append(part.shape[1:])
            st = sums.stats(num_samples, frame_rate, seg_frames)
            if raw is not None and path is not None:
                atomic_write(path, lambda f: _assemble_npy(f, raw, len(keep), sizes))
        finally:
            if raw is not None:
                raw.close()
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


def _assemble_npy(f: Any, raw: Any, layers: int, sizes: list[tuple[int, int]]) -> None:
    """Write ``[layers, T, D]`` float16 as ``.npy`` into ``f`` from ``raw``, which holds the windows one
    after the other, each ``[layers, T_w, D]``: per layer, each window's rows are read and appended (one
    window's layer in memory at a time). The header is the one ``np.save`` writes."""
    d = sizes[0][1]
    total = sum(t for t, _ in sizes)
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                             "fortran_order": False, "shape": (layers, total, d)})
    for li in range(layers):
        offset = 0
        for t, _ in sizes:
            raw.seek(offset + li * t * d * 2)
            f.write(raw.read(t * d * 2))
            offset += layers * t * d * 2
