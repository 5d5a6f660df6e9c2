"""Fixed points and their linearisation against closed forms: a linear map's only fixed point is the origin
with A's eigenvalues; h' = tanh(w h) with w = 2 has an unstable point at 0 and two stable ones at the
roots of h = tanh(2h); a continuous-time flow's stability is read from Re(lambda); the recurrent maps of
nn.RNN/GRU/LSTM and their cells step exactly as the modules do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from neurometry.dynamics.fixed_points import count_unstable, find_fixed_points, sample_states
from neurometry.dynamics.recurrent import recurrent_map
from neurometry.errors import NeurometryError


def linear_map(matrix: np.ndarray, input_matrix: np.ndarray):
    a = torch.as_tensor(matrix, dtype=torch.float64)
    b = torch.as_tensor(input_matrix, dtype=torch.float64)
    return recurrent_map(lambda h, x: h @ a.T + x @ b.T, state_size=len(a), input_size=b.shape[1],
                         dtype=torch.float64)


def test_a_linear_maps_fixed_point_is_the_solution_of_h_equals_ah_plus_bx_with_as_eigenvalues():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a = q @ np.diag([0.9, 0.5, -0.3, 1.5]) @ q.T  # one direction outside the unit circle: a saddle
    b = rng.normal(size=(4, 2))
    x = np.array([0.3, -0.7])
    found = find_fixed_points(linear_map(a, b), rng.normal(size=(16, 4)), x)
    assert len(found) == 1 and found.kind[0] == "fixed" and found.q[0] < 1e-20
    np.testing.assert_allclose(found.states[0], np.linalg.solve(np.eye(4) - a, b @ x), atol=1e-9)
    np.testing.assert_allclose(found.eigenvalues[0], [1.5, 0.9, 0.5, -0.3], atol=1e-9)  # by magnitude
    np.testing.assert_allclose(found.jacobians[0], a, atol=1e-12)
    np.testing.assert_allclose(found.input_jacobians[0], b, atol=1e-12)
    assert found.stability[0] == "saddle" and found.unstable_directions[0] == 1


def test_the_bistable_tanh_unit_has_two_stable_points_and_an_unstable_one_between():
    weight = 2.0
    root = brentq(lambda h: np.tanh(weight * h) - h, 0.5, 1.0)  # h* = tanh(2 h*), 0.9575...
    bistable = recurrent_map(lambda h, x: torch.tanh(weight * h + x), state_size=1, input_size=1,
                             dtype=torch.float64)
    found = find_fixed_points(bistable, np.linspace(-1.5, 1.5, 31)[:, None])
    order = np.argsort(found.states[:, 0])
    np.testing.assert_allclose(found.states[order, 0], [-root, 0.0, root], atol=1e-9)
    slopes = weight * (1 - found.states[order, 0] ** 2)  # d tanh(2h)/dh
    np.testing.assert_allclose(found.eigenvalues[order, 0].real, slopes, atol=1e-9)
    assert list(found.stability[order]) == ["stable", "unstable", "stable"]
    assert found.converged and (found.kind == "fixed").all() and not found.outlier.any()


def test_a_slow_point_is_kept_apart_from_fixed_points():
    # h' = h + 1e-4 + (h - 1)^2 ... has no fixed point, but q has a minimum of 0.5e-8 at h = 1
    drifting = recurrent_map(lambda h, x: h + 1e-4 + (h - 1) ** 2, state_size=1, input_size=1, dtype=torch.float64)
    found = find_fixed_points(drifting, np.linspace(0.5, 1.3, 9)[:, None], max_iterations=3000, learning_rate=0.01)
    assert len(found) == 1 and found.kind[0] == "slow" and not found.converged
    assert found.q[0] == pytest.approx(0.5e-8, rel=1e-3)
    np.testing.assert_allclose(found.states[0], [1.0], atol=1e-3)


def test_a_flows_stability_is_read_from_the_real_parts():
    # dh/dt = -h + W h with W's eigenvalues 0.5 and 1.8: Jacobian eigenvalues -0.5 and 0.8 at the origin
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    w = torch.as_tensor(q @ np.diag([0.5, 1.8]) @ q.T)
    flow = recurrent_map(lambda h, x: -h + h @ w.T, state_size=2, input_size=1, continuous=True, dtype=torch.float64)
    found = find_fixed_points(flow, rng.normal(size=(8, 2)))
    assert len(found) == 1
    np.testing.assert_allclose(found.eigenvalues[0].real, [0.8, -0.5], atol=1e-9)
    assert found.stability[0] == "saddle" and count_unstable(found.eigenvalues, True)[0] == 1


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm", "rnn_cell", "gru_cell", "lstm_cell"])
def test_the_map_of_a_torch_recurrent_module_steps_as_the_module_does(kind):
    torch.manual_seed(0)
    modules = {
        "rnn": nn.RNN(3, 5, num_layers=2, batch_first=True), "gru": nn.GRU(3, 5, batch_first=True),
        "lstm": nn.LSTM(3, 5, num_layers=2), "rnn_cell": nn.RNNCell(3, 5), "gru_cell": nn.GRUCell(3, 5),
        "lstm_cell": nn.LSTMCell(3, 5),
    }
    module = modules[kind].double()
    dynamics = recurrent_map(nn.Sequential(module))  # found inside a model
    inputs = torch.randn(4, 6, 3, dtype=torch.float64)
    state = torch.zeros(4, dynamics.state_size, dtype=torch.float64)
    with torch.no_grad():
        for t in range(6):
            state = dynamics.step(state, inputs[:, t])
        if kind in ("rnn", "gru", "lstm"):
            sequence = inputs if module.batch_first else inputs.transpose(0, 1)
            _, last = module(sequence)
            hidden = last[0][-1] if kind == "lstm" else last[-1]
            layers = module.num_layers
            np.testing.assert_allclose(state[:, (layers - 1) * 5 : layers * 5], hidden, atol=1e-12)
        else:
            expected = None
            for t in range(6):
                expected = module(inputs[:, t], expected)
            hidden = expected[0] if kind == "lstm_cell" else expected
            np.testing.assert_allclose(state[:, :5], hidden, atol=1e-12)


def test_a_gru_module_is_analysed_as_a_float64_copy_that_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.GRU(2, 8, batch_first=True), nn.Linear(8, 1))
    before = [p.clone() for p in model.parameters()]
    found = find_fixed_points(model, np.random.default_rng(0).normal(scale=0.5, size=(64, 8)))
    assert found.converged and found.q.max() < 1e-12  # every kept point is a fixed one here
    assert found.states.dtype == np.float64
    assert all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(before, model.parameters(), strict=True))


def test_bad_input_is_one_line():
    gru = nn.GRU(2, 4)
    with pytest.raises(NeurometryError, match="no recurrent module"):
        find_fixed_points(nn.Linear(2, 2), np.zeros((3, 2)))
    with pytest.raises(NeurometryError, match=r"give \(n, 4\)"):
        find_fixed_points(gru, np.zeros((3, 5)))
    with pytest.raises(NeurometryError, match="3 features, but GRU takes 2"):
        find_fixed_points(gru, np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(NeurometryError, match="NaN"):
        find_fixed_points(gru, np.full((3, 4), np.nan))
    with pytest.raises(NeurometryError, match="bidirectional"):
        recurrent_map(nn.GRU(2, 4, bidirectional=True))
    with pytest.raises(NeurometryError, match="several recurrent modules"):
        recurrent_map(nn.Sequential(nn.GRU(2, 4), nn.GRU(4, 4)))


def test_sampled_states_come_from_the_trajectories():
    trajectories = np.arange(2 * 5 * 3, dtype=float).reshape(2, 5, 3)
    drawn = sample_states(trajectories, 20, seed=1)
    rows = {tuple(r) for r in trajectories.reshape(-1, 3)}
    assert drawn.shape == (20, 3) and all(tuple(r) in rows for r in drawn)
