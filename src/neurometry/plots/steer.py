"""Figures of `neurometry steer eval` and `neurometry patch`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_sweep(rows: Sequence[Any], title: str) -> Figure:
    """A steering sweep's three measures against alpha, side by side. ``rows``:
    :class:`neurometry.steer.SweepRow` (``alpha``, ``target_logprob_shift``, ``kl``, ``perplexity``)."""
    alphas = [r.alpha for r in rows]
    fig = new_figure(11, 3.2)
    axes = fig.subplots(1, 3)
    panels = (
        ("target_logprob_shift", "log p(target) - log p(opposite), shift"),
        ("kl", "KL from unsteered (neutral text)"),
        ("perplexity", "perplexity (neutral text)"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(alphas, [getattr(r, key) for r in rows], marker="o")
        ax.set_xlabel("alpha")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_patching(result: Any) -> Figure:
    """Heatmap of a :class:`neurometry.steer.PatchResult`'s ``scores`` (points down, positions across,
    labelled with the clean tokens, the corrupted token under it where they differ); a second panel of
    ``head_scores`` (layers x heads) when present."""
    has_heads = result.head_scores is not None
    n_pts, n_pos = result.scores.shape
    width = max(5.0, 0.6 * n_pos + 2.5) + (4.0 if has_heads else 0.0)
    height = max(3.0, 0.22 * n_pts + 1.8)
    fig = new_figure(width, height, dpi=120)
    ratios = [max(n_pos, 1), 0.6 * result.head_scores.shape[1]] if has_heads else [1]
    axes = fig.subplots(1, 2 if has_heads else 1, squeeze=False, gridspec_kw={"width_ratios": ratios})
    lim = max(1.0, float(np.nanmax(np.abs(result.scores))))
    ax = axes[0, 0]
    im = ax.imshow(result.scores, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    labels = []
    for p in result.positions:
        a, b = result.tokens[p], result.corrupted_tokens[p]
        labels.append(repr(a)[1:-1] if a == b else f"{repr(a)[1:-1]}\n/{repr(b)[1:-1]}")
    ax.set_xticks(range(n_pos), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_pts), result.points, fontsize=7)
    ax.set_title(f"patching {result.correct!r} vs {result.wrong!r}", fontsize=9)
    fig.colorbar(im, ax=ax, label="normalised logit difference")
    if has_heads:
        hx = axes[0, 1]
        hl = max(1.0, float(np.nanmax(np.abs(result.head_scores))))
        im2 = hx.imshow(result.head_scores, aspect="auto", cmap="RdBu_r", vmin=-hl, vmax=hl, interpolation="nearest")
        hx.set_xlabel("head")
        hx.set_yticks(range(len(result.head_layers)), result.head_layers, fontsize=7)
        hx.set_title("per-head (all positions)", fontsize=9)
        fig.colorbar(im2, ax=hx)
    fig.tight_layout()
    return fig
