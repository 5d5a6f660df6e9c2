"""Figures of `neurometry probe`, `neurometry encode` and the demo's probing tasks."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_probe(document: dict[str, Any], title: str) -> Figure:
    """Score against depth with its interval and the baseline; sparse probes: score against k per point.
    ``document["results"]``: `neurometry probe` records (``point``, ``kind``, ``score``, ``ci_low``,
    ``ci_high``, ``baseline``, and ``k`` for sparse probes)."""
    records = document["results"]
    fig = new_figure(7, 4)
    ax = fig.subplots()
    if records and records[0]["kind"] == "sparse":
        for point in dict.fromkeys(r["point"] for r in records):
            sel = [r for r in records if r["point"] == point]
            ax.plot([r["k"] for r in sel], [r["score"] for r in sel], marker="o", ms=3, label=point)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("units kept (k)")
        ax.legend(fontsize=7, ncol=2)
    else:
        x = np.arange(len(records))
        ax.plot(x, [r["score"] for r in records], marker="o", label="probe")
        ax.fill_between(x, [r["ci_low"] for r in records], [r["ci_high"] for r in records], alpha=0.2)
        ax.plot(x, [r["baseline"] for r in records], linestyle="--", color="grey", label="baseline")
        if any("control_score" in r for r in records):
            ax.plot(x, [r["control_score"] for r in records], linestyle=":", label="control task")
        ax.set_xticks(x, [r["point"] for r in records], rotation=60, fontsize=7, ha="right")
        ax.legend(fontsize=8)
    ax.set_ylabel("held-out accuracy" if records and records[0]["kind"] != "ridge" else "held-out R^2")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_encode(document: dict[str, Any], title: str) -> Figure:
    """Mean held-out r over targets against depth, with the targets' interquartile range.
    ``document["results"]``: `neurometry encode` records (``point``, ``target_scores``)."""
    records = document["results"]
    x = np.arange(len(records))
    fig = new_figure(7, 4)
    ax = fig.subplots()
    scores = [np.asarray(r["target_scores"]) for r in records]
    ax.plot(x, [s.mean() for s in scores], marker="o", label="mean r")
    ax.fill_between(
        x, [np.percentile(s, 25) for s in scores], [np.percentile(s, 75) for s in scores], alpha=0.2,
        label="targets' interquartile range",
    )
    ax.set_xticks(x, [r["point"] for r in records], rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("held-out Pearson r")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_probe_tasks(groups: dict[tuple[str, str], list[dict]]) -> Figure:
    """One panel per task: score against relative depth for each model, with its fold interval and chance
    baseline. ``groups``: (model, task) -> probe records in depth order."""
    tasks = list(dict.fromkeys(task for _, task in groups))
    fig = new_figure(3.4 * len(tasks), 3.2)
    axes = fig.subplots(1, len(tasks), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for (model, t), group in groups.items():
            if t != task:
                continue
            depth = [i / (len(group) - 1) for i in range(len(group))]
            (line,) = ax.plot(depth, [r["score"] for r in group], marker="o", ms=2.5, label=model)
            ax.fill_between(depth, [r["ci_low"] for r in group], [r["ci_high"] for r in group],
                            color=line.get_color(), alpha=0.2)
            ax.axhline(group[0]["baseline"], color=line.get_color(), linestyle=":", linewidth=0.8)
        kind = next(g[0]["kind"] for (_, t), g in groups.items() if t == task)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("relative depth (embeddings = 0)", fontsize=8)
        ax.set_ylabel("held-out accuracy" if kind == "logistic" else "held-out R^2", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
