"""Figures of the training axis: measures over steps and depth, similarity to the final step, step x step
similarity, and curves with their detected phases shaded."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure

PHASE_COLOURS = ("#dbe9f6", "#fde3c8", "#dcefd9", "#f3d9e8", "#e9e4f4", "#f6f2c9")


def _log_x(ax, steps: list[float]) -> None:
    positive = [s for s in steps if s > 0]
    if positive and max(positive) / max(min(positive), 1e-12) >= 100:
        ax.set_xscale("symlog", linthresh=max(min(positive), 1.0))
        ax.set_xlim(left=0)  # steps are never negative: no ticks left of 0


def plot_series_measures(records: list[dict], title: str) -> Figure:
    """Per measure, a step x depth heatmap (left) and one curve per point over steps (right). ``records``:
    ``step``, ``point``, ``measure``, ``value`` (as ``neurometry measure --series`` gives)."""
    names = list(dict.fromkeys(r["measure"] for r in records))
    points = list(dict.fromkeys(r["point"] for r in records))
    steps = sorted({r["step"] for r in records})
    fig = new_figure(10, 2.8 * len(names), dpi=110)
    axes = fig.subplots(len(names), 2, squeeze=False)
    for (heat, curves), name in zip(axes, names, strict=True):
        grid = np.full((len(points), len(steps)), np.nan)
        for r in records:
            if r["measure"] == name and r["value"] is not None:
                grid[points.index(r["point"]), steps.index(r["step"])] = r["value"]
        image = heat.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=heat, fraction=0.04)
        heat.set_yticks(range(len(points)))
        heat.set_yticklabels(points, fontsize=7)
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(6, len(steps))).astype(int))
        heat.set_xticks(ticks)
        heat.set_xticklabels([f"{steps[i]:g}" for i in ticks], fontsize=7)
        heat.set_title(f"{name}: step x depth", fontsize=9)
        for row, point in enumerate(points):
            curves.plot(steps, grid[row], marker="o", ms=2, label=point)
        _log_x(curves, steps)
        curves.set_title(f"{name} over training", fontsize=9)
        curves.set_xlabel("step", fontsize=8)
        curves.tick_params(labelsize=7)
        curves.grid(alpha=0.3)
        curves.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_series_similarity(document: dict, title: str) -> Figure:
    """Similarity of each step with the reference step, one curve per point (``neurometry compare --series``)."""
    fig = new_figure(6.5, 3.6, dpi=120)
    ax = fig.subplots()
    points = list(dict.fromkeys(r["point"] for r in document["results"]))
    for point in points:
        rows = [r for r in document["results"] if r["point"] == point]
        ax.plot([r["step"] for r in rows], [np.nan if r["value"] is None else r["value"] for r in rows],
                marker="o", ms=2, label=point)
    _log_x(ax, [r["step"] for r in document["results"]])
    ax.set_xlabel("step")
    ax.set_ylabel(f"{document['metric']} with step {document['reference_step']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_step_matrix(document: dict, title: str) -> Figure:
    """The step x step similarity matrix at one point (``neurometry compare --series --pairwise``)."""
    steps = document["steps"]
    fig = new_figure(5.4, 4.6, dpi=120)
    ax = fig.subplots()
    image = ax.imshow(np.array(document["matrix"], dtype=float), origin="lower", cmap="magma", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, label=document["metric"])
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(8, len(steps))).astype(int))
    for setter in (ax.set_xticks, ax.set_yticks):
        setter(ticks)
    ax.set_xticklabels([f"{steps[i]:g}" for i in ticks], fontsize=7, rotation=45)
    ax.set_yticklabels([f"{steps[i]:g}" for i in ticks], fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("step")
    ax.set_title(f"{title} at {document['point']}", fontsize=10)
    fig.tight_layout()
    return fig


def shade_phases(ax, phases: list[dict]) -> None:
    """Shade each phase's step range (phases as ``Phase.__dict__``: ``start_step``, ``end_step``)."""
    for i, phase in enumerate(phases):
        end = phases[i + 1]["start_step"] if i + 1 < len(phases) else phase["end_step"]
        ax.axvspan(phase["start_step"], end, color=PHASE_COLOURS[i % len(PHASE_COLOURS)], alpha=0.8, lw=0,
                   zorder=0)
        if i:
            ax.axvline(phase["start_step"], color="0.35", lw=0.8, ls="--", zorder=1)


def plot_curves_with_phases(steps: list[float], curves: dict[str, list[float]], phases: list[dict], title: str,
                            log_y: bool = False) -> Figure:
    """Curves over training (``curves``: name -> values at ``steps``) over the shaded ``phases``."""
    fig = new_figure(7, 3.8, dpi=120)
    ax = fig.subplots()
    shade_phases(ax, phases)
    for name, values in curves.items():
        ax.plot(steps, [np.nan if v is None else v for v in values], marker="o", ms=2, label=name, zorder=2)
    _log_x(ax, steps)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_lab(document: dict) -> Figure:
    """A lab's run: losses (log scale) and accuracies over training with the phases shaded, then effective
    rank of each point over training."""
    results = document["results"]
    steps = [r["step"] for r in results]
    phases = document["phases"]["phases"]
    fig = new_figure(12, 3.6, dpi=110)
    losses, accuracies, rank = fig.subplots(1, 3)
    for ax, keys, log_y in ((losses, ("train_loss", "test_loss"), True),
                            (accuracies, ("train_accuracy", "test_accuracy"), False)):
        shade_phases(ax, phases)
        drawn = False
        for key in keys:
            values = [r.get(key) for r in results]
            if any(v is not None for v in values):
                ax.plot(steps, [np.nan if v is None else v for v in values], label=key, zorder=2)
                drawn = True
        if drawn and log_y and all(r.get(keys[0], 1) > 0 for r in results):
            ax.set_yscale("log")
        _log_x(ax, steps)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
    losses.set_title(f"loss (phases of {document['phases']['curve']})", fontsize=9)
    accuracies.set_title("accuracy", fontsize=9)
    geometry = [g for g in document["geometry"] if g["measure"] == "effective_rank"]
    for point in dict.fromkeys(g["point"] for g in geometry):
        rows = [g for g in geometry if g["point"] == point]
        rank.plot([g["step"] for g in rows], [np.nan if g["value"] is None else g["value"] for g in rows], label=point)
    _log_x(rank, steps)
    rank.set_title("effective rank per point", fontsize=9)
    rank.set_xlabel("step")
    rank.grid(alpha=0.3)
    rank.legend(fontsize=7)
    fig.suptitle(f"lab {document['lab']}: {document['title']}", fontsize=10)
    fig.tight_layout()
    return fig
