"""Lyapunov spectra against closed forms: a linear map h' = A h has exponents log|eig(A)| sorted (exactly
for a symmetric A, to the QR method's convergence for a non-normal one); a rotation-scaling pair shares
log r; a linear flow has Re(eig(M)); a GRU resting at a fixed point has log|eig(J*)|; the Kaplan-Yorke
dimension follows its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurometry.dynamics.fixed_points import find_fixed_points
from neurometry.dynamics.lyapunov import kaplan_yorke_dimension, lyapunov_spectrum
from neurometry.dynamics.recurrent import recurrent_map
from neurometry.errors import NeurometryError


def linear(matrix: np.ndarray, continuous: bool = False):
    a = torch.as_tensor(matrix, dtype=torch.float64)
    return recurrent_map(lambda h, x: h @ a.T, state_size=len(a), input_size=1, continuous=continuous,
                         dtype=torch.float64)


def test_a_symmetric_linear_maps_exponents_are_the_log_eigenvalue_magnitudes():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    eigenvalues = np.array([1.3, -0.9, 0.6, 0.25, -0.05])
    # the frame turns onto the eigenvectors as fast as (0.9 / 1.3)^t: after 100 discarded steps it is there
    spectrum = lyapunov_spectrum(linear(q @ np.diag(eigenvalues) @ q.T), np.zeros((3, 300, 1)),
                                 rng.normal(size=(3, 5)), discard=100)
    np.testing.assert_allclose(spectrum.exponents, np.sort(np.log(np.abs(eigenvalues)))[::-1], atol=1e-10)
    assert spectrum.per_trial.shape == (3, 5) and spectrum.steps == 200


def test_a_non_normal_maps_exponents_converge_to_the_log_eigenvalue_magnitudes():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(4, 4))  # not orthogonal: A is far from normal
    eigenvalues = np.array([1.1, 0.8, -0.5, 0.2])
    matrix = basis @ np.diag(eigenvalues) @ np.linalg.inv(basis)
    spectrum = lyapunov_spectrum(linear(matrix), np.zeros((1, 600, 1)), discard=100)
    # the frame aligns with A's eigen-directions geometrically fast; what is left is the O(1/T) share of the
    # first steps' transient: 0.01 nats per step at T = 500
    np.testing.assert_allclose(spectrum.exponents, np.log(np.abs(eigenvalues)), atol=0.01)


def test_a_rotation_shares_its_radius_between_two_exponents():
    radius, angle = 0.9, 0.7
    rotation = radius * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = np.zeros((3, 3))
    matrix[:2, :2], matrix[2, 2] = rotation, 0.5
    spectrum = lyapunov_spectrum(linear(matrix), np.zeros((1, 200, 1)))
    np.testing.assert_allclose(spectrum.exponents, [np.log(radius), np.log(radius), np.log(0.5)], atol=1e-10)


def test_a_linear_flows_exponents_are_the_real_parts_of_its_eigenvalues():
    matrix = np.array([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.0], [0.0, 0.0, 0.3]])  # -0.5 +- 2i and 0.3
    dt = 1e-3
    spectrum = lyapunov_spectrum(linear(matrix, continuous=True), np.zeros((1, 4000, 1)), dt=dt)
    # Euler steps of dt give log|1 + dt lambda| / dt = Re(lambda) + O(dt |lambda|^2)
    np.testing.assert_allclose(spectrum.exponents, [0.3, -0.5, -0.5], atol=5 * dt * 4.25)


def test_a_gru_resting_at_its_fixed_point_has_the_log_eigenvalues_of_its_jacobian_there():
    torch.manual_seed(0)
    gru = nn.GRU(2, 6, batch_first=True)
    found = find_fixed_points(gru, np.random.default_rng(0).normal(scale=0.3, size=(32, 6)))
    stable = found.select(found.stability == "stable")
    assert len(stable) >= 1
    point = stable.states[:1]
    spectrum = lyapunov_spectrum(gru, np.zeros((1, 400, 2)), point, discard=50)
    expected = np.sort(np.log(np.abs(stable.eigenvalues[0])))[::-1]
    np.testing.assert_allclose(spectrum.exponents, expected, atol=0.02)


@pytest.mark.parametrize(("exponents", "dimension"), [
    ([0.5, -0.2, -1.0], 2 + 0.3 / 1.0),  # 0.5 and 0.5 - 0.2 are non-negative, 0.3 - 1.0 is not
    ([-0.1, -0.4], 0.0),
    ([0.2, 0.0, 0.1], 3.0),
    ([0.0, -0.5, -2.0], 1.0),
])
def test_the_kaplan_yorke_dimension(exponents, dimension):
    assert kaplan_yorke_dimension(np.array(exponents)) == pytest.approx(dimension)


def test_bad_input_is_one_line():
    gru = nn.GRU(2, 3)
    with pytest.raises(NeurometryError, match=r"give \(trials, time, 2\)"):
        lyapunov_spectrum(gru, np.zeros(5))
    with pytest.raises(NeurometryError, match="4 features, but GRU takes 2"):
        lyapunov_spectrum(gru, np.zeros((1, 5, 4)))
    with pytest.raises(NeurometryError, match="discard"):
        lyapunov_spectrum(gru, np.zeros((1, 5, 2)), discard=5)
    with pytest.raises(NeurometryError, match="NaN"):
        lyapunov_spectrum(gru, np.full((1, 5, 2), np.nan))
    exploding = recurrent_map(lambda h, x: 1e200 * h, state_size=1, input_size=1, dtype=torch.float64)
    with pytest.raises(NeurometryError, match="left the finite numbers"):
        lyapunov_spectrum(exploding, np.zeros((1, 5, 1)), np.ones((1, 1)))
