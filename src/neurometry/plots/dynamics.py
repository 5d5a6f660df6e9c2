"""Figures of recurrent dynamics: trajectories in their top principal components with the fixed points over
them, coloured by stability, and each point's eigenvalues against the unit circle (or the imaginary axis)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from neurometry.linalg import principal_plane
from neurometry.plots.figure import new_figure

STABILITY_COLOURS = {"stable": "#1b7837", "saddle": "#e08214", "unstable": "#b2182b"}


def plot_fixed_points(trajectories: np.ndarray | None, states: np.ndarray, stability: list[str],
                      eigenvalues: np.ndarray, continuous: bool, title: str, max_trials: int = 40) -> Figure:
    """Left: up to ``max_trials`` of ``trajectories`` (trials, time, state) in the plane of their top two
    principal components, with the fixed points ``states`` (k, state) drawn over them (slow points too), coloured
    by ``stability`` (without trajectories, the points in their own top components). Right: every point's
    ``eigenvalues`` (k, state), complex, against the unit circle for a map or the imaginary axis for a flow."""
    drawn = trajectories if trajectories is not None else np.zeros((0, 0, states.shape[1]))
    centre, basis = principal_plane((trajectories if trajectories is not None else states[None]).reshape(-1, states.shape[1]))
    fig = new_figure(10, 4.4, dpi=120)
    plane, spectrum = fig.subplots(1, 2)
    for trial in drawn[:max_trials]:
        projected = (trial - centre) @ basis
        plane.plot(projected[:, 0], projected[:, 1], color="0.7", lw=0.6, zorder=1)
    for kind, colour in STABILITY_COLOURS.items():
        chosen = [i for i, s in enumerate(stability) if s == kind]
        if chosen:
            projected = (states[chosen] - centre) @ basis
            plane.scatter(projected[:, 0], projected[:, 1], s=28, color=colour, edgecolor="black", lw=0.4,
                          label=f"{kind} ({len(chosen)})", zorder=3)
            values = eigenvalues[chosen].ravel()
            spectrum.scatter(values.real, values.imag, s=8, color=colour, alpha=0.6, label=kind)
    plane.set_xlabel("PC 1")
    plane.set_ylabel("PC 2")
    plane.set_title("trajectories and fixed points", fontsize=10)
    plane.legend(fontsize=7)
    if continuous:
        spectrum.axvline(0, color="black", lw=0.8)
    else:
        angle = np.linspace(0, 2 * np.pi, 200)
        spectrum.plot(np.cos(angle), np.sin(angle), color="black", lw=0.8)
        spectrum.set_aspect("equal", adjustable="datalim")
    spectrum.set_xlabel("Re lambda")
    spectrum.set_ylabel("Im lambda")
    spectrum.set_title("Jacobian eigenvalues at each point", fontsize=10)
    spectrum.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_trajectories(trajectories: dict[str, np.ndarray], title: str, max_trials: int = 40) -> Figure:
    """One panel per point: up to ``max_trials`` of its trajectories (trials, time, width) in the plane of their
    top two principal components, each trial a line from a circle (its first step) to a dot (its last),
    coloured by trial."""
    fig = new_figure(4.2 * len(trajectories), 4.2, dpi=110)
    axes = np.atleast_1d(fig.subplots(1, len(trajectories)))
    colours = matplotlib_colours(max_trials)
    for ax, (point, paths) in zip(axes, trajectories.items(), strict=True):
        centre, basis = principal_plane(paths.reshape(-1, paths.shape[-1]))
        for trial, path in enumerate(paths[:max_trials]):
            projected = (path - centre) @ basis
            colour = colours[trial % len(colours)]
            ax.plot(projected[:, 0], projected[:, 1], color=colour, lw=0.8, alpha=0.8)
            ax.scatter(*projected[0], s=12, facecolor="none", edgecolor=colour)
            ax.scatter(*projected[-1], s=12, color=colour)
        ax.set_title(f"{point}: {len(paths)} trials x {paths.shape[1]} steps", fontsize=9)
        ax.set_xlabel("PC 1", fontsize=8)
        ax.set_ylabel("PC 2", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def matplotlib_colours(count: int) -> list:
    """``count`` colours of matplotlib's tab20 cycle."""
    from matplotlib import colormaps

    cycle = colormaps["tab20"].colors
    return [cycle[i % len(cycle)] for i in range(count)]
