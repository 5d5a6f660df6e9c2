"""Phases of a training curve: planted change points of piecewise-constant curves come back exactly (PELT with
its default penalty, binary segmentation with n_changes), within one checkpoint under seeded noise, and a
loss that falls by decades is split on its log; bad curves are refused with one line."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry import NeurometryError
from neurometry.training import find_phases

STEPS = np.arange(0, 3000, 50)  # 60 checkpoints
LEVELS = np.r_[np.full(20, 1.0), np.full(15, 3.0), np.full(25, -2.0)]  # changes at checkpoints 20 and 35
PLANTED = [1000.0, 1750.0]


@pytest.mark.parametrize("method", ["pelt", "binseg"])
def test_planted_change_points_of_a_clean_curve_are_found_exactly(method):
    found = find_phases(STEPS, LEVELS, method=method, n_changes=2 if method == "binseg" else None)
    assert found.boundaries == PLANTED
    assert [(p.start_step, p.end_step, p.n_points) for p in found.phases] == [
        (0.0, 950.0, 20), (1000.0, 1700.0, 15), (1750.0, 2950.0, 25)]
    assert [p.mean for p in found.phases] == [1.0, 3.0, -2.0]
    assert found.method == method
    assert (found.penalty is None) == (method == "binseg")
    assert found.to_dict()["boundaries"] == PLANTED


def test_a_constant_curve_is_one_phase():
    found = find_phases(STEPS, np.full(60, 0.25))
    assert found.boundaries == []
    assert [(p.start_step, p.end_step, p.mean, p.n_points) for p in found.phases] == [(0.0, 2950.0, 0.25, 60)]


@pytest.mark.parametrize("seed", range(5))
def test_noisy_curves_give_the_planted_boundaries_within_one_checkpoint(seed):
    noisy = LEVELS + np.random.default_rng(seed).normal(0, 0.3, size=len(LEVELS))
    for found in (find_phases(STEPS, noisy), find_phases(STEPS, noisy, method="binseg", n_changes=2)):
        assert len(found.boundaries) == 2
        for got, want in zip(found.boundaries, PLANTED, strict=True):
            assert abs(got - want) <= 50  # one checkpoint
        assert sum(p.n_points for p in found.phases) == 60


def test_several_curves_change_together():
    curves = np.c_[LEVELS, -2 * LEVELS, np.zeros(60)]
    found = find_phases(STEPS, curves)
    assert found.boundaries == PLANTED
    assert found.phases[1].mean == pytest.approx((3.0 - 6.0 + 0.0) / 3)  # the mean over the curves


def test_log_transform_splits_a_loss_that_falls_by_decades():
    rng = np.random.default_rng(1)
    loss = np.r_[np.full(20, 5.0), np.full(20, 0.05), np.full(20, 0.0005)] * np.exp(rng.normal(0, 0.1, 60))
    found = find_phases(STEPS, loss, transform="log")
    assert found.boundaries == [1000.0, 2000.0]
    assert found.transform == "log"
    # means are of the loss itself, not its log
    assert found.phases[0].mean == pytest.approx(loss[:20].mean())
    # on the raw scale the noise of the first phase dwarfs the later falls: more than the two boundaries
    assert len(find_phases(STEPS, loss).boundaries) > 2


def test_an_explicit_penalty_and_min_size_are_used():
    bump = np.r_[np.zeros(30), [5.0], np.zeros(29)]  # a one-checkpoint spike
    assert find_phases(STEPS, bump, min_size=1).boundaries == [1500.0, 1550.0]
    assert find_phases(STEPS, bump, min_size=3).boundaries != [1500.0, 1550.0]
    assert find_phases(STEPS, LEVELS, penalty=1e9).boundaries == []  # every change costs more than it explains
    assert find_phases(STEPS, LEVELS, penalty=1e9).penalty == 1e9


@pytest.mark.parametrize(
    ("steps", "values", "options", "message"),
    [
        (STEPS, np.r_[LEVELS[:-1], np.nan], {}, "NaN or Inf"),
        (STEPS, np.r_[LEVELS[:-1], np.inf], {}, "NaN or Inf"),
        (STEPS[::-1], LEVELS, {}, "increase strictly"),
        (np.r_[STEPS[:-1], STEPS[-2]], LEVELS, {}, "increase strictly"),
        (STEPS[:3], LEVELS[:3], {}, "cannot hold two phases"),
        (STEPS, LEVELS, {"method": "binseg"}, "binseg needs n_changes"),
        (STEPS, LEVELS, {"method": "binseg", "n_changes": 30, "min_size": 2}, "cannot hold 31 phases"),
        (STEPS, LEVELS, {"method": "kmeans"}, "not one of pelt, binseg"),
        (STEPS, LEVELS, {"transform": "sqrt"}, "not one of none, log"),
        (STEPS, LEVELS, {"transform": "log"}, "needs positive values"),
        (STEPS, LEVELS, {"min_size": 0}, "at least 1"),
        (STEPS, LEVELS, {"penalty": -1.0}, "finite number >= 0"),
        (STEPS, LEVELS[:-1], {}, "59 values"),
        (STEPS, np.zeros((60, 2, 2)), {}, "values of shape"),
        (5, 3.0, {}, "values of shape"),
    ],
)
def test_bad_curves_and_settings_are_refused_with_one_line(steps, values, options, message):
    with pytest.raises(NeurometryError, match=message) as caught:
        find_phases(steps, values, **options)
    assert "\n" not in str(caught.value)
