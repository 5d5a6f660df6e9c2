"""Figures of the sparse-autoencoder stage."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from neurometry.plots.figure import new_figure


def plot_latent_frequencies(frequency: np.ndarray) -> Figure:
    """Histogram of log10 activation frequency over an SAE's latents; ``frequency``: (latents,) in [0, 1]."""
    fig = new_figure(6, 2.6, dpi=110)
    ax = fig.subplots()
    ax.hist(np.log10(np.clip(frequency, 1e-7, None)), bins=50, color="#d0781f")
    ax.set_xlabel("log10 activation frequency")
    ax.set_ylabel("latents")
    fig.tight_layout()
    return fig
