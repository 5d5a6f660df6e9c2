"""The training axis: change points (phases) in curves over training steps."""

from neurometry.training.phases import Phase, Phases, find_phases

__all__ = ["Phase", "Phases", "find_phases"]
