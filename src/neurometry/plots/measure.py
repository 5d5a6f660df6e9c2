"""Figures of `neurometry measure`."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_profiles(records: list[dict], title: str) -> Figure:
    """Each measure against depth (the order points were measured in), one panel per measure. ``records``
    are `neurometry measure` records: ``point``, ``measure``, ``value``."""
    points = list(dict.fromkeys(r["point"] for r in records))
    names = list(dict.fromkeys(r["measure"] for r in records))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = new_figure(3.6 * cols, 2.7 * rows, dpi=120)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        pts = [r["point"] for r in records if r["measure"] == name]
        vals = [np.nan if r["value"] is None else r["value"] for r in records if r["measure"] == name]
        xs = [points.index(p) for p in pts]
        ax.plot(xs, vals, marker="o", ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(pts, rotation=60, fontsize=6, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
