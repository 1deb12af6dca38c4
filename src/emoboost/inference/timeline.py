"""Timelines of (start, end, label, probabilities): duration-weighted file label, CSV rows and a PNG plot.

A timeline is the list of dicts that :class:`emoboost.inference.engine.Prediction` carries
(``{"start", "end", "label", "probabilities": {class: p}}``, seconds). Gaps between entries are
unclassified time (silence when the timeline comes from VAD regions) and stay blank in the plot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

# matplotlib's tab10, also used by the server page, so a class has one colour everywhere.
CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def class_color(i: int) -> str:
    return CLASS_COLORS[i % len(CLASS_COLORS)]


def weighted_probabilities(timeline: Sequence[dict], classes: Sequence[str]) -> dict[str, float]:
    """Mean class probabilities weighted by each entry's duration (a 0.5 s tail counts a sixth of 3 s).

    Raises ``ValueError`` for an empty timeline or one with no duration: there is nothing to label.
    """
    total = 0.0
    acc = dict.fromkeys(classes, 0.0)
    for t in timeline:
        d = float(t["end"]) - float(t["start"])
        if d < 0:
            raise ValueError(f"timeline entry ends before it starts: {t}")
        total += d
        for c in classes:
            acc[c] += d * float(t["probabilities"].get(c, 0.0))
    if total <= 0:
        raise ValueError("timeline is empty (no classified time): no file label")
    return {c: v / total for c, v in acc.items()}


def weighted_label(timeline: Sequence[dict], classes: Sequence[str]) -> tuple[str, dict[str, float]]:
    """(label, probabilities) of a whole file from its timeline, by :func:`weighted_probabilities`."""
    p = weighted_probabilities(timeline, classes)
    return max(classes, key=lambda c: p[c]), p


def csv_fields(classes: Sequence[str], with_path: bool = True) -> list[str]:
    """Column names of :func:`to_csv_rows`: ``[path,] start, end, label, p_<class>...``."""
    return (["path"] if with_path else []) + ["start", "end", "label"] + [f"p_{c}" for c in classes]


def to_csv_rows(timeline: Iterable[dict], classes: Sequence[str], path: str | None = None) -> list[dict]:
    """One flat dict per timeline entry, keyed by :func:`csv_fields` (``path`` only when given)."""
    rows = []
    for t in timeline:
        row: dict = {"path": path} if path is not None else {}
        row.update(start=t["start"], end=t["end"], label=t["label"])
        row.update({f"p_{c}": t["probabilities"].get(c, "") for c in classes})
        rows.append(row)
    return rows


def plot_timeline(
    timeline: Sequence[dict],
    classes: Sequence[str],
    path: str | Path,
    duration: float | None = None,
    title: str | None = None,
) -> Path:
    """PNG of a timeline: a band coloured by each entry's label over the class probabilities as stacked bars.

    ``duration`` (seconds) sets the x range, so trailing silence shows; default: the last entry's end.
    An empty timeline (no speech found) still gives a plot that says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    end = max([float(t["end"]) for t in timeline], default=0.0)
    xmax = max(duration or 0.0, end) or 1.0
    fig, (band, ax) = plt.subplots(2, 1, figsize=(10, 3.4), sharex=True,
                                   gridspec_kw={"height_ratios": [1, 3], "hspace": 0.08})
    try:
        for t in timeline:
            a, b = float(t["start"]), float(t["end"])
            k = classes.index(t["label"]) if t["label"] in classes else -1
            band.axvspan(a, b, color=class_color(k) if k >= 0 else "#999999", lw=0)
            if (b - a) / xmax > 0.04:
                band.text((a + b) / 2, 0.5, t["label"], ha="center", va="center", fontsize=8, color="white",
                          clip_on=True)
            bottom = 0.0
            for i, c in enumerate(classes):
                p = float(t["probabilities"].get(c, 0.0))
                ax.bar(a, p, width=b - a, bottom=bottom, align="edge", color=class_color(i), lw=0)
                bottom += p
        if not timeline:
            ax.text(xmax / 2, 0.5, "no speech found", ha="center", va="center", color="#555555")
        band.set_yticks([])
        band.set_ylim(0, 1)
        ax.set_xlim(0, xmax)
        ax.set_ylim(0, 1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("probability")
        ax.legend(handles=[Patch(color=class_color(i), label=c) for i, c in enumerate(classes)],
                  loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
        if title:
            band.set_title(title, fontsize=10)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
