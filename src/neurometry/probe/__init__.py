"""Decode and predict: linear, sparse and control-task probes, class directions, and ridge encoding
models from activations to many targets (units, voxels, behaviour), all cross-validated without leaks
(standardisation inside folds, the rows of one input in one fold)."""

from neurometry.probe.control import SelectivityResult, control_task_labels, selectivity
from neurometry.probe.directions import direction, load_direction, save_direction
from neurometry.probe.encoding import (
    EncodingResult,
    best_points,
    encode,
    select_alphas,
    split_half_reliability,
)
from neurometry.probe.linear import LinearProbe, ProbeResult, probe
from neurometry.probe.sparse import rank_units, sparse_probe
from neurometry.ridge import DEFAULT_ALPHAS  # the penalty grid shared with linear predictivity

__all__ = [
    "DEFAULT_ALPHAS",
    "EncodingResult",
    "LinearProbe",
    "ProbeResult",
    "SelectivityResult",
    "best_points",
    "control_task_labels",
    "direction",
    "encode",
    "load_direction",
    "probe",
    "rank_units",
    "save_direction",
    "select_alphas",
    "selectivity",
    "sparse_probe",
    "split_half_reliability",
]
