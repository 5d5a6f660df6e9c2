"""Figures of `neurometry compare`."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_comparison(document: dict[str, Any], title: str, reference: tuple[str, float] | None = None) -> Figure:
    """Heatmap for a layer x layer matrix; a profile across depth (with CI bands) when one side is short.
    ``document`` is `neurometry compare`'s (``results``: records with ``point_a``, ``point_b``, ``metric``,
    ``value``, ``params``, ``ci_low``, ``ci_high``, ``p_value``; optional ``noise_ceiling``).
    ``reference``: (label, value) drawn as a dashed line on a profile, e.g. the agreement of two brains."""
    records = document["results"]
    rows_a = list(dict.fromkeys(r["point_a"] for r in records))
    cols_b = list(dict.fromkeys(r["point_b"] for r in records))
    metric = _describe(records[0])
    if min(len(rows_a), len(cols_b)) > 4:
        value = {(r["point_a"], r["point_b"]): r["value"] for r in records}
        grid = np.array([[_number(value.get((pa, pb))) for pb in cols_b] for pa in rows_a], dtype=float)
        fig = new_figure(max(6.0, 2.0 + 0.3 * len(cols_b)), max(5.0, 1.5 + 0.3 * len(rows_a)))
        ax = fig.subplots()
        image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        if grid.size <= 144:  # small enough to read the numbers
            middle = (np.nanmax(grid) + np.nanmin(grid)) / 2
            for (i, j), v in np.ndenumerate(grid):
                if np.isnan(v):
                    continue
                color = "black" if v > middle else "white"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(cols_b)), cols_b, rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows_a)), rows_a, fontsize=7)
        ax.set_xlabel("B")
        ax.set_ylabel("A")
        fig.colorbar(image, ax=ax, label=metric)
    else:
        long_side, short_side, key_long, key_short = (
            (rows_a, cols_b, "point_a", "point_b")
            if len(rows_a) >= len(cols_b)
            else (cols_b, rows_a, "point_b", "point_a")
        )
        fig = new_figure(max(6, 0.35 * len(long_side)), 4)
        ax = fig.subplots()
        x = np.arange(len(long_side))
        for short in short_side:
            sel = {r[key_long]: r for r in records if r[key_short] == short}
            ys = np.array([_number(sel.get(p, {}).get("value")) for p in long_side], dtype=float)
            (line,) = ax.plot(x, ys, marker="o", label=short)
            if all(sel.get(p, {}).get("ci_low") is not None for p in long_side):
                ax.fill_between(x, [sel[p]["ci_low"] for p in long_side], [sel[p]["ci_high"] for p in long_side],
                                color=line.get_color(), alpha=0.2)
            if all(sel.get(p, {}).get("p_value") is not None for p in long_side):
                sig = np.array([sel[p]["p_value"] < 0.05 for p in long_side])
                ax.plot(x[sig], ys[sig], "*", color=line.get_color(), markersize=10)
        if reference is not None:
            ax.axhline(reference[1], color="grey", linestyle="--", label=reference[0])
        ceiling = document.get("noise_ceiling")
        if ceiling:
            ax.axhspan(ceiling["lower"], ceiling["upper"], color="grey", alpha=0.25, label="noise ceiling")
        ax.set_xticks(x, long_side, rotation=60, fontsize=8, ha="right")
        ax.set_ylabel(metric)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _number(value: float | None) -> float:
    """A missing pair or value (another producer's record, an undefined metric) as NaN: a gap, not an error."""
    return np.nan if value is None else float(value)


def _describe(record: dict[str, Any]) -> str:
    """The metric with the parameters that change its meaning, for axis labels."""
    params = record["params"]
    if record["metric"] == "rsa":
        return f"rsa ({params['rdm']} RDMs, {params['compare']})"
    if record["metric"] == "cka":
        return f"cka ({params['kernel']}, {params['estimator']})"
    if record["metric"] == "procrustes":
        return f"procrustes distance (alpha {params['alpha']})"
    return record["metric"]
