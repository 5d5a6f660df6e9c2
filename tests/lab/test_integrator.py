"""The integrator lab entry (Maheswaranathan et al. 2019): a tanh RNN reporting the sign of a running sum of
noisy pulses has its fixed points along an approximate line attractor, each with one eigenvalue near 1 and
the others inside the unit circle.

Thresholds come from the test size (4,000 steps, pre-activation penalty 0.03) at seeds 0-4 (docs/recurrent.md):
accuracy 0.9926-0.9939; 9 fixed points at every seed, alternating stable points and saddles with both ends
stable; PC1 share 0.966-0.980; every point's top |lambda| within 0.023-0.040 of 1 (the issue's 0.05 holds at
every point of every seed: inside the line within 0.023-0.039, the two ends 0.960-0.978); second |lambda| at
most 0.701-0.888.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.lab import get_lab
from neurometry.lab.integrator import (
    NEAR_ONE,
    TIME_STEPS,
    IntegratorLab,
    integration_trials,
    preactivation_penalty,
    principal_share,
    sign_accuracy,
)

ACCURACY_AT_LEAST = 0.95  # seeds 0-4: 0.9926-0.9939
FIXED_POINTS_AT_LEAST = 5  # seeds 0-4: 9; a line needs a few
PC1_SHARE_AT_LEAST = 0.9  # the bar; seeds 0-4: 0.966-0.980
TRAJECTORY_SHARE_AT_LEAST = 0.8  # the trajectories run along the line: seeds 0-4 0.941-0.964
# every point's top |lambda| within NEAR_ONE (0.05, the "near 1") of 1, the line's two ends included:
# at seeds 0-4 the largest | |lambda_1| - 1 | over all points is 0.023-0.040 (seed 0 0.040, an end at 0.960)
# the rest of the spectrum inside the unit circle: the second |lambda| is at most 0.70-0.89 at seeds 0-4
SECOND_EIGENVALUE_AT_MOST = 0.93
METRICS = ("train_loss", "test_loss", "accuracy")
FINDINGS = {
    "accuracy", "fixed_points", "pc1_share", "trajectory_share_on_line", "top_eigenvalues", "second_eigenvalues",
    "readout_outputs", "stability", "interior_top_eigenvalue_deviation", "end_top_eigenvalues", "near_one_share",
    "second_eigenvalue_max", "slow_points", "outlier_points", "initial_states",
}


def run_lab(lab: IntegratorLab) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Build and train ``lab`` as the runner does (the callback runs the probe trials under no_grad)."""
    model = lab.build()
    probe = lab.probe_data()
    results: list[dict[str, float]] = []

    def checkpoint(step: int, metrics: dict[str, float]) -> None:
        model.eval()
        with torch.no_grad():
            model(probe.inputs)
        model.train()
        results.append({"step": step, **metrics})

    lab.train(model, checkpoint)
    return model, results


@pytest.fixture(scope="module")
def trained():
    lab = IntegratorLab(size="test", seed=0)
    model, results = run_lab(lab)
    return lab, model, results, lab.findings(model, results)


def test_registered():
    assert get_lab("integrator") is IntegratorLab


def test_checkpoint_contract(trained):
    lab, _, results, _ = trained
    steps = [r["step"] for r in results]
    assert steps[0] == 0 and steps[-1] == lab.total_steps == 4000
    assert np.all(np.diff(steps) > 0)
    assert 20 <= len(steps) <= 40
    for record in results:
        assert all(isinstance(record[name], float) and math.isfinite(record[name]) for name in METRICS)


def test_it_learns_the_sign_of_the_running_sum(trained):
    _, _, results, findings = trained
    assert findings["accuracy"] == results[-1]["accuracy"] >= ACCURACY_AT_LEAST
    assert results[0]["accuracy"] < 0.8
    assert results[-1]["test_loss"] < results[0]["test_loss"] / 5


def test_fixed_points_lie_on_a_line(trained):
    findings = trained[3]
    assert findings["fixed_points"] >= FIXED_POINTS_AT_LEAST
    assert findings["pc1_share"] >= PC1_SHARE_AT_LEAST
    assert findings["trajectory_share_on_line"] >= TRAJECTORY_SHARE_AT_LEAST
    # ordered along the line, the readout runs from a confident "negative" to a confident "positive"
    outputs = findings["readout_outputs"]
    assert outputs == sorted(outputs) and outputs[0] < -3 and outputs[-1] > 3
    stability = findings["stability"]
    assert stability[0] == stability[-1] == "stable"  # the line's ends attract
    assert set(stability) <= {"stable", "saddle"}


def test_each_point_has_one_eigenvalue_near_one(trained):
    findings = trained[3]
    top = np.array(findings["top_eigenvalues"])
    assert len(top) == findings["fixed_points"]
    # every fixed point, the line's ends included, has |lambda_1| within NEAR_ONE of 1
    assert np.all(np.abs(top - 1) <= NEAR_ONE)
    assert findings["near_one_share"] == 1.0
    assert findings["interior_top_eigenvalue_deviation"] == pytest.approx(np.abs(top[1:-1] - 1).max())
    assert findings["interior_top_eigenvalue_deviation"] <= NEAR_ONE
    assert findings["end_top_eigenvalues"] == [top[0], top[-1]]
    # and the rest clearly inside the unit circle
    assert findings["second_eigenvalue_max"] == max(findings["second_eigenvalues"]) <= SECOND_EIGENVALUE_AT_MOST


def test_findings_are_json(trained):
    lab, _, _, findings = trained
    assert set(findings) == FINDINGS
    assert json.loads(json.dumps(findings)) == findings
    assert isinstance(findings["top_eigenvalues"], list)
    assert len(lab.describe(findings)) == 5


def test_the_point_is_the_hidden_trajectory(trained):
    lab, model, _, _ = trained
    probe = lab.probe_data()
    assert lab.reduce == "last" and lab.points() == {"hidden": "rnn"}
    outputs = []
    handle = model.rnn.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    with torch.no_grad():
        model(probe.inputs[:5])
    handle.remove()
    trajectory, last = outputs[0]  # nn.RNN returns (trajectory, last state); the recorder reads the first
    assert trajectory.shape == (5, TIME_STEPS, 32)
    assert torch.equal(trajectory[:, -1], last[0])  # reduce = "last": each trial's final state


def test_probe_trials(trained):
    lab = trained[0]
    probe = lab.probe_data()
    assert probe.inputs.shape == (256, TIME_STEPS, 1)
    assert torch.equal(probe.inputs, lab.probe_data().inputs)
    np.testing.assert_allclose(probe.metadata["final_sum"], probe.inputs.sum(dim=(1, 2)).numpy(), atol=1e-4)
    assert set(probe.metadata["sign"]) == {-1, 1}
    assert 0.2 < probe.metadata["pulses"].mean() / TIME_STEPS < 0.4  # PULSE_PROBABILITY 0.3


def test_task_and_measures():
    inputs, sums = integration_trials(torch.Generator().manual_seed(0), 64)
    assert inputs.shape == sums.shape == (64, TIME_STEPS, 1)
    torch.testing.assert_close(sums, inputs.cumsum(dim=1))
    assert sign_accuracy(sums, sums) == 1.0 and sign_accuracy(-sums, sums) == 0.0
    line = np.outer(np.linspace(-1, 1, 9), [3.0, 4.0])
    assert principal_share(line)[0] == pytest.approx(1.0)
    assert np.abs(principal_share(line)[1]) == pytest.approx([0.6, 0.8])
    assert principal_share(line[:1]) == (None, None)  # one point is no line
    # the training penalty is the mean square pre-activation behind tanh states, finite where a state is +/-1
    pre = torch.linspace(-3, 3, 13, dtype=torch.float64)
    assert float(preactivation_penalty(torch.tanh(pre))) == pytest.approx(float(pre.square().mean()))
    assert math.isfinite(float(preactivation_penalty(torch.tensor([1.0, -1.0]))))


def test_seeding():
    state = torch.random.get_rng_state()
    first, again, other = (IntegratorLab(size="test", seed=seed) for seed in (3, 3, 4))
    weights, weights_again, weights_other = (lab.build().state_dict() for lab in (first, again, other))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(weights[key], weights_again[key]) for key in weights)
    assert not torch.equal(weights["rnn.weight_hh_l0"], weights_other["rnn.weight_hh_l0"])
    assert torch.equal(first.probe_data().inputs, again.probe_data().inputs)
    assert not torch.equal(first.probe_data().inputs, other.probe_data().inputs)


def test_same_seed_trains_the_same():
    _, results = run_lab(IntegratorLab(size="test", steps=6, seed=1))
    _, again = run_lab(IntegratorLab(size="test", steps=6, seed=1))
    assert results == again
    assert [r["step"] for r in results] == [0, 1, 2, 3, 4, 5, 6]


def test_options():
    assert isinstance(IntegratorLab(size="test", cell="gru").build().rnn, torch.nn.GRU)
    assert IntegratorLab(size="test", hidden="16").build().rnn.hidden_size == 16
    with pytest.raises(NeurometryError, match="lab size 'small'"):
        IntegratorLab(size="small")
    with pytest.raises(NeurometryError, match="no option 'noise'"):
        IntegratorLab(size="test", noise=0.1)
    with pytest.raises(NeurometryError, match="cell 'lstm'"):
        IntegratorLab(size="test", cell="lstm")
    with pytest.raises(NeurometryError, match="at least 2"):
        IntegratorLab(size="test", hidden=1)


def test_findings_need_results():
    lab = IntegratorLab(size="test")
    with pytest.raises(NeurometryError, match="train this lab first"):
        lab.findings(lab.build(), [])


def test_an_untrained_network_has_findings_too():
    """One step: no line or cube yet, but the findings are still strict JSON (no NaN) and describable."""
    lab = IntegratorLab(size="test", steps=1, seed=0)
    model, results = run_lab(lab)
    findings = lab.findings(model, results)
    assert json.loads(json.dumps(findings, allow_nan=False)) == findings
    assert lab.describe(findings)
