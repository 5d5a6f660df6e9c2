"""Layer-wise semantic dynamics: a statement's representation read as a trajectory through depth, and its shape
as the features of a truth (or hallucination) detector ("The Geometry of Truth: Layer-wise Semantic Dynamics
for Hallucination Detection").

For states (n, layers, d) of n statements at successive residual points, per statement:

- ``cosine``: the cosine between consecutive layers' states (layers - 1): how much each layer turns it;
- ``velocity``: the norm of each step h_{l+1} - h_l over the mean norm of the two (layers - 1);
- ``curvature``: the angle (radians) between consecutive steps (layers - 2);
- ``centroid_margin``: per layer, the distance to the false class's centroid less the distance to the true
  class's (layers), the centroids taken from the training statements only.

Each feature is standardised on the training statements and a logistic regression reads them all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurometry.detect.truth import TruthScore, held_out_detector, truth_classes
from neurometry.errors import NeurometryError

EPSILON = 1e-12


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), EPSILON)


def trajectory_shape(states: np.ndarray) -> dict[str, np.ndarray]:
    """The label-free features of trajectories (n, layers, d): ``cosine`` and ``velocity`` (n, layers - 1) and
    ``curvature`` (n, layers - 2), as the module docstring defines them."""
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 3 or states.shape[1] < 3:
        raise NeurometryError(f"trajectories have shape {states.shape}; give (statements, layers >= 3, d)")
    unit = _unit(states)
    cosine = (unit[:, 1:] * unit[:, :-1]).sum(axis=-1)
    steps = np.diff(states, axis=1)
    norms = np.linalg.norm(states, axis=-1)
    velocity = np.linalg.norm(steps, axis=-1) / np.maximum(0.5 * (norms[:, 1:] + norms[:, :-1]), EPSILON)
    turn = (_unit(steps[:, 1:]) * _unit(steps[:, :-1])).sum(axis=-1)
    curvature = np.arccos(np.clip(turn, -1.0, 1.0))
    return {"cosine": cosine, "velocity": velocity, "curvature": curvature}


class SemanticDynamicsDetector:
    """Logistic regression on the trajectory features (and the per-layer centroid margins) of statements
    ``states`` (n, layers, d) with labels ``truth`` (n,); the larger label (as numpy sorts) is "true"."""

    def fit(self, states: Any, truth: Any) -> SemanticDynamicsDetector:
        from sklearn.linear_model import LogisticRegression

        states = np.asarray(states, dtype=np.float64)
        self.classes_, is_true = truth_classes(truth)
        self.centroids_ = (states[is_true].mean(axis=0), states[~is_true].mean(axis=0))  # (layers, d) each
        features = self.features(states)
        self.mean_, self.scale_ = features.mean(axis=0), np.maximum(features.std(axis=0), EPSILON)
        self.model_ = LogisticRegression(max_iter=2000).fit((features - self.mean_) / self.scale_, is_true)
        return self

    def features(self, states: np.ndarray) -> np.ndarray:
        """(n, 4 layers - 4): cosine, velocity, curvature and the centroid margins, side by side."""
        shape = trajectory_shape(states)
        margin = (np.linalg.norm(states - self.centroids_[1], axis=-1)
                  - np.linalg.norm(states - self.centroids_[0], axis=-1))
        return np.concatenate([shape["cosine"], shape["velocity"], shape["curvature"], margin], axis=1)

    def score(self, states: Any) -> np.ndarray:
        """(n,) the detector's log-odds that each statement is true."""
        features = (self.features(np.asarray(states, dtype=np.float64)) - self.mean_) / self.scale_
        return self.model_.decision_function(features)


def held_out_dynamics(states: Any, truth: Any, *, folds: int = 5, groups: Any = None, seed: int = 0) -> TruthScore:
    """Held-out accuracy and AUROC of :class:`SemanticDynamicsDetector` on trajectories (n, layers, d), on the
    folds :func:`neurometry.detect.truth.held_out_truth` uses (same ``folds``, ``groups`` and ``seed``)."""
    return held_out_detector(np.asarray(states, dtype=np.float64), truth, SemanticDynamicsDetector,
                             "semantic_dynamics", folds=folds, groups=groups, seed=seed)
