"""Figures of the detectors: held-out truth decoding against depth, one line per method; ROC curves of the
out-of-distribution scores; their AUROC over training against NC1."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_truth(records: list[dict[str, Any]], title: str) -> Figure:
    """Held-out accuracy (left) and AUROC (right) of each truth method against the points in depth order, with
    chance at 0.5. ``records``: `neurometry detect truth` records (``point``, ``method``, ``accuracy``,
    ``auroc``)."""
    points = list(dict.fromkeys(r["point"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    cells = {(r["point"], r["method"]): r for r in records}
    fig = new_figure(11, 4, dpi=120)
    axes = fig.subplots(1, 2)
    x = np.arange(len(points))
    for ax, key, label in zip(axes, ("accuracy", "auroc"), ("held-out accuracy", "held-out AUROC"), strict=True):
        for method in methods:
            ax.plot(x, [cells[p, method][key] if (p, method) in cells else np.nan for p in points], marker="o", ms=3,
                    label=method)
        ax.axhline(0.5, color="grey", linestyle="--", lw=0.8)
        ax.set_xticks(x, points, rotation=60, fontsize=7, ha="right")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_ood(records: list[dict[str, Any]], title: str) -> Figure:
    """The ROC curve of each out-of-distribution score (true positive rate, OOD rows flagged, against false
    positive rate, ID rows flagged), its AUROC and FPR at 95% TPR in the legend, chance on the diagonal.
    ``records``: `neurometry detect ood` records (``score``, ``auroc``, ``fpr95``, ``roc`` with ``fpr`` and
    ``tpr`` lists); a record without ``roc`` (saved before curves were) is listed but not drawn."""
    fig = new_figure(5.5, 4.8, dpi=120)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", lw=0.8)
    for r in sorted(records, key=lambda r: -r["auroc"]):
        label = f"{r['score']}  AUROC {r['auroc']:.3f}  FPR95 {r['fpr95']:.3f}"
        if r.get("roc"):
            ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], lw=1.4, label=label)
        else:
            ax.plot([], [], lw=0, label=label + " (no curve saved)")
    ax.axhline(0.95, color="grey", lw=0.5, alpha=0.6)
    ax.set_xlabel("false positive rate (ID rows flagged)")
    ax.set_ylabel("true positive rate (OOD rows flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_ood_series(steps: list[float], nc1: list[float], records: list[dict[str, Any]], title: str) -> Figure:
    """Each score's AUROC (left axis) and NC1 of the fitting rows (right axis, log scale, dashed) against the
    training step (log scale when every step is positive). ``records``: `detect ood --series` records
    (``score``, ``auroc`` per step, ``spearman``)."""
    fig = new_figure(7, 4.2, dpi=120)
    ax = fig.subplots()
    for r in records:
        rho = "" if r["spearman"] is None else f"  Spearman with NC1 {r['spearman']:+.2f}"
        ax.plot(steps, r["auroc"], marker="o", ms=3, label=f"{r['score']}{rho}")
    ax.set_xlabel("training step")
    ax.set_ylabel("AUROC (OOD against held-out ID)")
    ax.grid(alpha=0.3)
    collapse = ax.twinx()
    collapse.plot(steps, nc1, color="black", linestyle="--", lw=1, label="NC1 (right)")
    collapse.set_yscale("log")
    collapse.set_ylabel("NC1 of the fitting rows")
    if min(steps) > 0:
        ax.set_xscale("log")
    lines = ax.get_legend_handles_labels()
    more = collapse.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig

