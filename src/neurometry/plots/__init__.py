"""Every figure neurometry draws: one module per stage, each function turning results (or arrays) into a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes one. This is the only package that imports
matplotlib. Figures are built without pyplot, so drawing keeps no global state and works in threads."""

from matplotlib.figure import Figure

from neurometry.plots.compare import plot_comparison
from neurometry.plots.detect import plot_ood, plot_ood_series, plot_truth
from neurometry.plots.dynamics import plot_fixed_points, plot_trajectories
from neurometry.plots.features import plot_latent_frequencies
from neurometry.plots.figure import figure_png, save_figure
from neurometry.plots.language import plot_reading_fit
from neurometry.plots.measure import plot_profiles
from neurometry.plots.probe import plot_encode, plot_probe, plot_probe_tasks
from neurometry.plots.steer import plot_patching, plot_sweep
from neurometry.plots.training import (
    plot_curves_with_phases,
    plot_lab,
    plot_series_measures,
    plot_series_similarity,
    plot_step_matrix,
)

__all__ = [
    "Figure", "figure_png", "plot_comparison", "plot_fixed_points", "plot_trajectories", "plot_encode", "plot_latent_frequencies", "plot_patching", "plot_reading_fit", "plot_probe",
    "plot_probe_tasks", "plot_profiles", "plot_sweep", "save_figure", "plot_curves_with_phases", "plot_lab",
    "plot_series_measures", "plot_series_similarity", "plot_step_matrix", "plot_ood", "plot_ood_series", "plot_truth",
]
