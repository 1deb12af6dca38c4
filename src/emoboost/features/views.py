"""How methods read SSL features: pooled statistics or lazy frame windows, from the store or memory.

:class:`SSLView` (a subset of an :class:`SSLSource`) is what :class:`emoboost.methods.UtteranceSet`
carries. Sources: :class:`StoreSource` (store entries, memory-mapped per access),
:class:`ArraySource` (frames in memory: predict, tests), :class:`StatsSource` (statistics only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from emoboost.audio import SAMPLE_RATE, Segmenting
from emoboost.features.store import Stats

if TYPE_CHECKING:
    from emoboost.features.store import FeatureStore


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

    def damaged(self, utts: Sequence[int], problem: str) -> ValueError:
        """The error for utterances whose features are unusable (e.g. non-finite frames), in one line."""
        return ValueError(f"{problem} in the features of utterance(s) {sorted(set(utts))}")

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
                 kept_layers: Sequence[int] = (), kept: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                 paths: Sequence[str] | None = None):
        self.store = store
        self.hashes = list(hashes)
        self.paths = list(paths) if paths is not None else None  # the audio files, for messages
        if not self.hashes:
            raise ValueError("no utterances have SSL features in the store")
        for name, v in (("sizes", num_samples), ("sizes", num_frames), ("kept statistics", kept), ("paths", paths)):
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
            raise ValueError(f"{self._audio(i)}store entry {self.store.stats_path(self.hashes[i])} is missing or "
                             f"damaged; rerun the command (or emoboost extract) to recompute it")
        return st

    def _audio(self, i: int) -> str:
        return f"{self.paths[i]}: " if self.paths is not None else ""

    def damaged(self, utts: Sequence[int], problem: str) -> ValueError:
        """Names each audio file and its store entry, and removes the entries' completion marks
        (:meth:`FeatureStore.invalidate`), so that rerunning the command recomputes them."""
        bad = sorted(set(int(i) for i in utts))
        for i in bad:
            self.store.invalidate(self.hashes[i], problem)
        where = self.store.frames_path(self.hashes[bad[0]]) if self.store.frames_key else \
            self.store.stats_path(self.hashes[bad[0]])
        more = f" (and {len(bad) - 1} other entr{'y' if len(bad) == 2 else 'ies'})" if len(bad) > 1 else ""
        return ValueError(f"{self._audio(bad[0])}store entry {where} {problem}{more}; removed from the store: "
                          f"rerun the command (or emoboost extract) to recompute it")

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
            bad = [int(self.utt[idx[j]]) for j in range(len(idx)) if not np.isfinite(out[j]).all()]
            raise self.source.damaged(bad, "holds non-finite frames")
        return out[:, 0] if self.squeeze else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[np.arange(len(self))]
        return a.astype(dtype) if dtype is not None else a
