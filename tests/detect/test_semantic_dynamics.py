"""Layer-wise semantic dynamics: the trajectory features' closed forms (a straight line has no curvature and a
constant velocity; a right-angle turn has curvature pi/2), a truth signal planted only in how the trajectory
turns at one layer is read held out, and labels that carry nothing score at chance."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry.detect.semantic_dynamics import held_out_dynamics, trajectory_shape
from neurometry.errors import NeurometryError


def test_closed_forms_of_the_trajectory_shape():
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    line = np.stack([a + layer * b for layer in range(4)])[None]  # (1, 4, 3)
    shape = trajectory_shape(line)
    np.testing.assert_allclose(shape["curvature"], 0.0, atol=1e-7)
    norms = np.linalg.norm(line[0], axis=1)
    np.testing.assert_allclose(shape["velocity"][0], 1.0 / (0.5 * (norms[1:] + norms[:-1])), rtol=1e-12)
    np.testing.assert_allclose(shape["cosine"][0], (line[0, 1:] * line[0, :-1]).sum(1) / (norms[1:] * norms[:-1]))
    turn = np.array([[[1.0, 0, 0], [2.0, 0, 0], [2.0, 1.0, 0]]])
    assert trajectory_shape(turn)["curvature"][0, 0] == pytest.approx(np.pi / 2)
    with pytest.raises(NeurometryError, match="layers >= 3"):
        trajectory_shape(np.zeros((2, 2, 3)))


def planted(n: int, seed: int, signal: bool):
    """Trajectories of 6 layers in 8 dimensions: a shared path plus noise; with ``signal`` a true statement's
    path turns towards dimension 7 after layer 3 and a false one's away from it, by a small step."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    path = np.cumsum(rng.normal(size=(6, 8)), axis=0)
    states = path[None] + 0.3 * rng.normal(size=(n, 6, 8))
    if signal:
        states[:, 4:, 7] += np.where(truth == 1, 1.0, -1.0)[:, None]
    return states, truth


def test_a_planted_turn_is_read_and_noise_is_not():
    states, truth = planted(600, seed=0, signal=True)
    assert held_out_dynamics(states, truth).auroc > 0.95
    states, truth = planted(600, seed=1, signal=False)
    assert abs(held_out_dynamics(states, truth).auroc - 0.5) < 0.08
