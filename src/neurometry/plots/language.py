"""Figures of reading-time fits: the layer profile of the held-out gain over the baseline, and word surprisal
against reading time with the fitted slope."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_reading_fit(records: list[dict[str, Any]], target: str, title: str) -> Figure:
    """Left: held-out delta log-likelihood per word (nats) of each surprisal source, the lens layers in depth
    order with the model's output (``final``) as a line across them. Right: the output's word surprisal against
    ``target`` over the kept words (``records``' ``final`` entry holds ``scatter``), with the in-sample slope
    drawn through the means. ``records``: `neurometry fit` records (``source``, ``delta_loglik_per_word``,
    ``slope_ms_per_bit``, ``p_value``)."""
    fig = new_figure(11, 4.2, dpi=120)
    profile, scatter = fig.subplots(1, 2)
    final = next((r for r in records if r["source"] == "final"), None)
    layers = [r for r in records if r["source"] != "final"]
    if layers:
        x = np.arange(len(layers))
        profile.plot(x, [r["delta_loglik_per_word"] for r in layers], marker="o", ms=3, label="logit lens")
        profile.set_xticks(x, [r["source"] for r in layers], rotation=60, fontsize=7, ha="right")
    if final is not None:
        profile.axhline(final["delta_loglik_per_word"], color="#b2182b", lw=1.2, label="model output")
    profile.axhline(0, color="black", lw=0.6)
    profile.set_ylabel("held-out delta log-likelihood per word (nats)")
    profile.set_title("gain over the baseline, by source", fontsize=10)
    profile.legend(fontsize=8)
    profile.grid(alpha=0.3)
    if final is not None and final.get("scatter"):
        surprisal = np.asarray(final["scatter"]["surprisal"], dtype=float)
        values = np.asarray(final["scatter"]["target"], dtype=float)
        scatter.scatter(surprisal, values, s=4, alpha=0.25, color="#2166ac", lw=0)
        grid = np.linspace(surprisal.min(), surprisal.max(), 50)
        slope = final["slope_ms_per_bit"]
        scatter.plot(grid, values.mean() + slope * (grid - surprisal.mean()), color="#b2182b",
                     label=f"{slope:.2f} ms/bit (baseline held fixed)")
        scatter.set_xlabel("surprisal (bits)")
        scatter.set_ylabel(target)
        scatter.legend(fontsize=8)
        scatter.set_title(f"{len(surprisal)} words", fontsize=10)
        scatter.grid(alpha=0.3)
    else:
        scatter.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
