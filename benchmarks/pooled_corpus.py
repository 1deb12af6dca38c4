"""A corpus's pooled encoder statistics, labels, speakers and default speaker-independent folds, from the store.

For benchmarks that fit small models on pooled inputs directly (no run directory): the same manifest,
store and folds an ``emoboost run --store pooled`` of that corpus uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PooledCorpus:
    manifest: Any
    view: Any  # the store's pooled view, rows in manifest order
    classes: list[str]
    y: np.ndarray
    groups: np.ndarray
    folds: list  # emoboost.protocols folds (train, valid, test row indices)

    def x(self, layers: list[int]) -> np.ndarray:
        """[N, len(layers) * F] float64: the pooled means of ``layers``, concatenated."""
        return self.view.pooled(layers).reshape(len(self.y), -1).astype(np.float64)


def load_pooled(corpus: str, upstream: str, layers: list[int], data_root: str | None = None) -> PooledCorpus:
    """Extracts what the store lacks (as ``emoboost run`` would); files that cannot be read are left out."""
    from emoboost.experiment.run import ExperimentConfig, align_to_view, load_manifest, prepare_ssl
    from emoboost.methods import get_method
    from emoboost.protocols import make_folds

    cfg = ExperimentConfig(corpus=corpus, upstream=upstream, method="logreg", data_root=data_root,
                           method_params={"layer": list(layers)}, out_dir="", progress=False)
    manifest, _, info = load_manifest(cfg)
    classes = sorted(set(manifest.labels()))
    view, bad, _ = prepare_ssl(cfg, manifest, get_method("logreg")(classes, layer=list(layers)))
    bad_paths = {p for p, _ in bad}
    manifest = manifest.filter(lambda u: u.path not in bad_paths)
    manifest, view = align_to_view(manifest, view)
    protocol = info.get("default_protocol", "loso")
    folds = make_folds(manifest, protocol, n_folds=info.get("default_folds") if protocol != "loso" else None)
    return PooledCorpus(manifest, view, classes, np.array([classes.index(u.label) for u in manifest]),
                        np.array([u.speaker for u in manifest]), folds)
