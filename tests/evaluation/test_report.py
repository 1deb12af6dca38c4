import json

import numpy as np
import pytest

from emoboost.evaluation import report
from emoboost.evaluation.report import FoldResult, plot_tsne, summarise, tsne_2d, write_report


def _blobs(n_per: int, dim: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated Gaussian clusters in ``dim`` dimensions (signal in a few directions, noise elsewhere)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 8.0
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), n_per)


def _nn_agreement(z: np.ndarray, y: np.ndarray) -> float:
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def test_tsne_keeps_clusters_through_the_pca_step():
    x, y = _blobs(20, 120)  # 120 dims > 50: PCA runs first
    z = tsne_2d(x, seed=0)
    assert z.shape == (60, 2) and np.isfinite(z).all()
    assert _nn_agreement(z, y) >= 0.95
    # the map is a picture of neighbourhoods: shuffling labels destroys the agreement
    assert _nn_agreement(z, np.random.default_rng(1).permutation(y)) < 0.7


def test_tsne_is_deterministic_for_a_seed_and_handles_small_sets():
    x, y = _blobs(4, 80, k=3)  # 12 points: perplexity and PCA size shrink to fit
    a, b = tsne_2d(x, seed=3), tsne_2d(x, seed=3)
    np.testing.assert_allclose(a, b)
    low = tsne_2d(x[:, :5], seed=0)  # fewer dims than the PCA target: used as they are
    assert low.shape == (12, 2) and np.isfinite(low).all()


def test_tsne_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 4"):
        tsne_2d(np.zeros((3, 10)))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        tsne_2d(np.zeros(10))


def test_plot_tsne_subsamples_large_sets(tmp_path, monkeypatch):
    x, y = _blobs(20, 60)
    seen: list[int] = []
    real = report.tsne_2d

    def spy(emb, seed=0, **kw):
        seen.append(len(emb))
        return real(emb, seed=seed, **kw)

    monkeypatch.setattr(report, "tsne_2d", spy)
    out = plot_tsne(x, y, ["a", "b", "c"], tmp_path / "t.png", max_points=30)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen == [30]
    plot_tsne(x, y, ["a", "b", "c"], tmp_path / "u.png")
    assert seen == [30, 60]
    with pytest.raises(ValueError, match="60 embeddings but 59 labels"):
        plot_tsne(x, y[:-1], ["a", "b", "c"], tmp_path / "v.png")


def test_summary_pools_folds_and_writes_the_report(tmp_path):
    # fold 0: 2 of 3 right; fold 1: 1 of 1 right -> pooled WA 3/4, per-fold mean (2/3 + 1) / 2
    r0 = FoldResult(0, 0, ["s1"], ["a", "b", "c"], [0, 1, 1], [0, 1, 0], [[1, 0]] * 3, {"fit_s": 1.5})
    r1 = FoldResult(1, 0, ["s2"], ["d"], [0], [0], [[1, 0]], {"fit_s": 0.5})
    rep = summarise([r0, r1], ["x", "y"])
    s = rep["summary"]
    assert s["pooled"]["0"]["WA"] == pytest.approx(3 / 4)
    assert s["WA"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["confusion"] == [[2, 0], [1, 1]]
    assert s["timings_total_s"] == {"fit_s": 2.0}
    write_report(tmp_path, [r0, r1], ["x", "y"], {"corpus": "toy"})
    assert json.loads((tmp_path / "summary.json").read_text())["protocol"] == {"corpus": "toy"}
    md = (tmp_path / "summary.md").read_text()
    assert "**corpus**: toy" in md
    assert "| x | 2 | 0 | 100.0 |" in md and "| y | 1 | 1 | 50.0 |" in md  # the confusion table, rows = true
    assert not (tmp_path / "confusion.png").exists()  # plots are opt-in
    write_report(tmp_path, [r0, r1], ["x", "y"], {"corpus": "toy"}, plots=True)
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    back = FoldResult.from_json(r0.to_json())
    assert back == r0


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import numpy as np, matplotlib\n"
            "from emoboost.evaluation.report import plot_confusion\n"
            "plot_confusion(np.eye(2), ['a', 'b'], __import__('pathlib').Path(r'%s'))\n"
            "print(matplotlib.get_backend())\n") % (tmp_path / "c.png")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MPLBACKEND": "svg"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().lower() == "svg"  # a notebook's backend survives a run's report
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_merge_descriptions_lists_each_folds_choice_not_the_last_ones():
    from emoboost.evaluation.report import merge_descriptions

    def res(fold: int, seed: int, layers: str, c: float) -> FoldResult:
        return FoldResult(fold, seed, [f"s{fold}"], [], [], [], [], info={"method": {
            "pooling": "utterance (mean)", "layers": layers, "C": c}})

    merged = merge_descriptions([res(0, 0, "3", 0.1), res(1, 0, "2,3,4", 0.1), res(2, 0, "3", 0.1)])
    assert merged["pooling"] == "utterance (mean)" and merged["C"] == 0.1  # shared: said once
    assert merged["layers"] == "3 in 2 of 3 folds, 2,3,4 in 1; per fold: 0: 3; 1: 2,3,4; 2: 3"
    two_seeds = merge_descriptions([res(0, 0, "3", 0.1), res(0, 1, "2,3", 0.1)])
    assert two_seeds["layers"] == "per fold: 0/seed 0: 3; 0/seed 1: 2,3"  # no value repeats: no counts
    assert merge_descriptions([]) == {}
