"""What one extraction did, for both engines (:mod:`emoboost.features.extract`, :mod:`emoboost.features.ray_engine`).

One class and one definition of speed: ``x_real_time`` is the audio this call encoded (seconds of
the entries it computed) over the wall seconds of that encoding (``encode_s``: from the first
missing clip read to the last entry written, encoder construction included; on Ray, the pipeline's
wall time, so concurrent actors count once). Store checks, corpus scans and start-up before the
first clip are in ``wall_s`` only. A call that computed nothing has no speed (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from emoboost.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from emoboost.data.manifest import Manifest
    from emoboost.features.store import FeatureStore, Stats


@dataclass
class ExtractReport:
    """Entries per utterance, what was skipped and what it cost; memory grows by a few bytes per utterance."""

    files: int = 0  # utterances asked for (plus files the corpus scan refused, when the caller lists them)
    hashes: dict[str, str] = field(default_factory=dict)  # utt id -> audio hash, entries complete now
    samples: dict[str, int] = field(default_factory=dict)  # utt id -> samples of audio (at SAMPLE_RATE)
    frames: dict[str, int] = field(default_factory=dict)  # utt id -> stored frames
    # with keep_layers: utt id -> (mean, std) [k, D] float32 of those layers only, so memory is N × k × D
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    computed: int = 0
    reused: int = 0
    audio_seconds: float = 0.0  # of every complete entry
    computed_seconds: float = 0.0  # of the entries this call computed
    bytes: int = 0
    wall_s: float = 0.0  # the whole call
    encode_s: float = 0.0  # wall seconds of the encoding (see the module docstring)
    engine: str = "local"
    shard: tuple[int, int] | None = None
    keep_layers: list[int] | None = None  # the layers whose pooled statistics ``kept`` holds

    def add(self, uid: str, h: str, st: Stats | None, computed: bool) -> None:
        """A complete entry: its hash and sizes (``st``; None for entries written elsewhere, read at
        :meth:`finish`), and the kept layers' statistics."""
        self.hashes[uid] = h
        if computed:
            self.computed += 1
        else:
            self.reused += 1
        if st is not None:
            self.samples[uid], self.frames[uid] = st.num_samples, st.num_frames
            if self.keep_layers:  # fancy indexing copies: the [L, D] arrays are freed
                self.kept[uid] = (st.mean[self.keep_layers], st.std[self.keep_layers])
            if computed:
                self.computed_seconds += st.num_samples / SAMPLE_RATE

    def finish(self, manifest: Manifest, store: FeatureStore, wall_s: float) -> ExtractReport:
        """Totals over the complete entries, everything in manifest order."""
        self.hashes = {u.id: self.hashes[u.id] for u in manifest if u.id in self.hashes}
        self.kept = {u: self.kept[u] for u in self.hashes if u in self.kept}
        self.audio_seconds, self.bytes = 0.0, 0
        for uid, h in self.hashes.items():
            if uid not in self.samples:  # written by Ray workers: read here, once
                st = store.read_stats(h)
                if st is not None:
                    self.samples[uid], self.frames[uid] = st.num_samples, st.num_frames
                    self.computed_seconds += st.num_samples / SAMPLE_RATE
            self.audio_seconds += self.samples.get(uid, 0) / SAMPLE_RATE
            self.bytes += store.entry_bytes(h)
        self.wall_s = wall_s
        return self

    @property
    def x_real_time(self) -> float | None:
        """Seconds of audio encoded per wall second of the encoding; None when nothing was encoded."""
        return self.computed_seconds / self.encode_s if self.computed and self.encode_s > 0 else None

    def summary(self) -> dict:
        """The report as plain data (``emoboost extract --report``, a run's ``extraction`` record)."""
        hours = self.audio_seconds / 3600
        xrt = self.x_real_time
        return {
            "files": self.files, "computed": self.computed, "reused": self.reused, "skipped": len(self.skipped),
            "audio_hours": round(hours, 4), "computed_audio_hours": round(self.computed_seconds / 3600, 4),
            "bytes": self.bytes, "bytes_per_audio_hour": int(self.bytes / hours) if hours else 0,
            "wall_s": round(self.wall_s, 2), "encode_s": round(self.encode_s, 2),
            "x_real_time": round(xrt, 1) if xrt is not None else None,
            "engine": self.engine, "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "skipped_files": [{"path": p, "problem": m} for p, m in self.skipped],
        }
