"""The grokking lab entry: modular addition memorised, then generalised (Power et al. 2022; Nanda et al.
2023), at size "test" (p = 53, 45% of pairs, 1,200 full-batch steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.lab import get_lab
from neurometry.lab.grokking import (
    GrokkingLab,
    addition_tokens,
    checkpoint_steps,
    fourier_basis,
    frequency_shares,
)

# Power et al.'s grokking: test accuracy reaches 99% at least 5x later than train accuracy. Measured at
# test size, seeds 0-5 (2 threads): ratios 7.6, 7.6, 7.6, 8.3, 5.6, 7.6 (train_99_step 52 in all).
GROKKING_DELAY_RATIO = 5.0
# Nanda et al.: the trained embedding is sparse in the Fourier basis. Measured: 0.95-0.97 at test size,
# 0.94-0.99 at default; at init 5 of the 26 frequencies carry about 5/26 = 0.19 (measured 0.21-0.23).
FOURIER_TOP5_SHARE_MIN = 0.8
FOURIER_TOP5_SHARE_AT_INIT_MAX = 0.35
# Clean-up (Nanda et al.): weight decay shrinks the weights once the circuit generalises. Measured final /
# peak weight norm 0.64-0.68 at test size, 0.56-0.62 at default.
WEIGHT_NORM_FALL = 0.8
# A change point on smooth curves lands mid-transition: the memorisation boundary within a factor 2 of
# train_99_step (measured 24-40 for 52), the grokking boundary within 15% of the run's steps of
# test_99_step (measured 35-140 steps away over seeds 0-5; 15% of 1,200 is 180, about 5 checkpoints).
MEMORISATION_BOUNDARY_FACTOR = 2.0
GROKKING_BOUNDARY_TOLERANCE = 0.15


def train(lab: GrokkingLab) -> tuple[torch.nn.Module, list[dict]]:
    """Build and train ``lab``'s model, keeping each checkpoint's ``{"step": ..., **metrics}``."""
    model, results = lab.build(), []
    lab.train(model, lambda step, metrics: results.append({"step": step, **metrics}))
    return model, results


@pytest.fixture(scope="module")
def trained():
    """The test-size lab trained once (seed 0): (lab, model, results, findings)."""
    lab = GrokkingLab(size="test", seed=0)
    model, results = train(lab)
    return lab, model, results, lab.findings(model, results)


def test_registered():
    assert get_lab("grokking") is GrokkingLab


def test_checkpoint_contract(trained):
    lab, _, results, _ = trained
    steps = [r["step"] for r in results]
    assert steps[0] == 0 and steps[-1] == lab.total_steps
    assert all(later > earlier for earlier, later in zip(steps, steps[1:], strict=False))
    assert 20 <= len(steps) <= 60
    for record in results:
        for name in ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "weight_norm"):
            assert math.isfinite(record[name]), (record["step"], name)


def test_memorisation_then_grokking(trained):
    _, _, _, findings = trained
    assert findings["train_99_step"] is not None and findings["test_99_step"] is not None
    assert findings["test_99_step"] >= GROKKING_DELAY_RATIO * findings["train_99_step"]
    assert findings["final_test_accuracy"] >= 0.99


def test_embedding_is_sparse_in_the_fourier_basis(trained):
    _, _, _, findings = trained
    assert findings["fourier_top5_share"] >= FOURIER_TOP5_SHARE_MIN
    assert findings["fourier_top5_share_at_init"] <= FOURIER_TOP5_SHARE_AT_INIT_MAX
    assert len(set(findings["key_frequencies"])) == 5
    assert all(1 <= k <= 26 for k in findings["key_frequencies"])


def test_progress_measures_move_before_test_loss_falls(trained):
    """Nanda et al.: during circuit formation, after memorisation and before the test loss falls, the
    excluded loss rises and the restricted loss falls."""
    _, _, results, findings = trained
    assert len(findings["restricted_loss"]) == len(findings["excluded_loss"]) == len(results)
    drop = findings["test_loss_drop_step"]
    assert drop is not None
    assert findings["train_99_step"] <= findings["excluded_loss_rise_step"] < drop
    assert findings["restricted_loss_fall_step"] < drop
    # at init neither measure differs much from the train loss: both start near log p
    assert findings["restricted_loss"][0] == pytest.approx(math.log(53), abs=0.3)
    assert findings["excluded_loss"][0] == pytest.approx(math.log(53), abs=0.3)


def test_weight_norm_falls_in_clean_up(trained):
    _, _, _, findings = trained
    assert findings["weight_norm_peak_step"] < findings["test_99_step"]
    assert findings["weight_norm_final"] <= WEIGHT_NORM_FALL * findings["weight_norm_peak"]


def test_phase_boundaries_at_memorisation_and_grokking(trained):
    lab, _, _, findings = trained
    boundaries = findings["phase_boundaries"]
    assert len(boundaries) == 3
    train_99, test_99 = findings["train_99_step"], findings["test_99_step"]
    low, high = train_99 / MEMORISATION_BOUNDARY_FACTOR, train_99 * MEMORISATION_BOUNDARY_FACTOR
    assert any(low <= b <= high for b in boundaries)
    assert min(abs(b - test_99) for b in boundaries) <= GROKKING_BOUNDARY_TOLERANCE * lab.total_steps


def test_describe_names_the_findings(trained):
    lab, _, _, findings = trained
    lines = lab.describe(findings)
    assert any("Fourier" in line for line in lines) and any("phase boundaries" in line for line in lines)


def test_same_seed_same_weights_and_split():
    first, second = GrokkingLab(size="test", seed=3), GrokkingLab(size="test", seed=3)
    other = GrokkingLab(size="test", seed=4)
    a, b, c = first.build().state_dict(), second.build().state_dict(), other.build().state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["embed.W_E"], c["embed.W_E"])
    assert torch.equal(first.train_index, second.train_index)
    assert not torch.equal(first.train_index, other.train_index)


def test_short_runs_repeat_exactly_and_leave_the_global_rng_alone():
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first, second = GrokkingLab(size="test", steps=5, seed=1), GrokkingLab(size="test", steps=5, seed=1)
    (_, first_results), (model, second_results) = train(first), train(second)
    assert first_results == second_results
    assert [r["step"] for r in first_results] == [0, 1, 2, 3, 4, 5]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    # too few checkpoints for phases: reported as None, not an error
    assert second.findings(model, second_results)["phase_boundaries"] is None


def test_points_record_the_residual_stream_over_the_probe_data():
    lab = GrokkingLab(size="test")
    model, probe = lab.build(), lab.probe_data()
    assert len(probe.inputs) == 53 * 53
    assert list(probe.metadata.columns) == ["a", "b", "answer", "split"]
    assert (probe.metadata["answer"] == (probe.metadata["a"] + probe.metadata["b"]) % 53).all()
    assert (probe.metadata["split"] == "train").sum() == len(lab.train_index)
    assert set(probe.inputs[:, 2].tolist()) == {53}  # the "=" token
    outputs = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[path].register_forward_hook(lambda _m, _i, out, alias=alias: outputs.__setitem__(alias, out))
        for alias, path in lab.points().items()
    ]
    with torch.no_grad():
        logits = model(probe.inputs[100:164])
    for hook in hooks:
        hook.remove()
    assert logits.shape == (64, 3, 53)
    assert list(outputs) == ["resid_mid", "resid_post"]
    assert all(out.shape == (64, 3, 64) for out in outputs.values())


def test_last_position_path_matches_the_full_forward():
    lab = GrokkingLab(size="test", seed=2)
    model = lab.build()
    tokens, _ = addition_tokens(53)
    with torch.no_grad():
        full = model(tokens[:500])[:, -1]
        _, last = model.last_position(tokens[:500])
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)


def test_fourier_basis_is_orthonormal_and_finds_a_planted_frequency():
    basis = fourier_basis(53)
    torch.testing.assert_close(basis @ basis.T, torch.eye(53, dtype=torch.float64))
    x = torch.arange(53, dtype=torch.float64)
    planted = torch.stack([torch.cos(2 * math.pi * 7 * x / 53), torch.sin(2 * math.pi * 7 * x / 53)], dim=1)
    shares = frequency_shares(planted)
    assert shares.shape == (26,)
    assert shares[6] == pytest.approx(1.0) and shares.sum() == pytest.approx(1.0)


def test_checkpoint_schedule():
    steps = checkpoint_steps(1200, 50)
    assert steps[0] == 0 and steps[-1] == 1200 and 40 <= len(steps) <= 55
    assert checkpoint_steps(1, 50) == [0, 1]


def test_bad_settings_are_refused():
    with pytest.raises(NeurometryError):
        GrokkingLab(size="test", train_fraction=1.5)
    with pytest.raises(NeurometryError):
        GrokkingLab(size="test", learning_rate=1.0)
    lab = GrokkingLab(size="test")
    with pytest.raises(NeurometryError):
        lab.findings(lab.build(), [{"step": 0}])


def test_the_runner_reports_the_findings_phases(trained):
    lab, _, results, findings = trained
    phases = lab.phases(results)
    assert phases is not None and phases.curve == "progress_curves"
    assert phases.phases.boundaries == findings["phase_boundaries"]
