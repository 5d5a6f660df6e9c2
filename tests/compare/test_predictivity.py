"""Linear predictivity: closed-form R^2 on planted linear data, chance level, and scikit-learn's ridge."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from neurometry import ridge as ridge_module
from neurometry.compare.predictivity import (
    DEFAULT_ALPHAS,
    cross_validated_predictions,
    fold_assignment,
    linear_predictivity,
    predictivity_both,
)
from neurometry.compare.registry import METRICS
from neurometry.errors import NeurometryError
from neurometry.ridge import RidgePath


def planted(n: int, p: int, t: int, seed: int, scale_features: bool = True):
    """x (n, p) with unequal feature scales and offsets, y = x W + noise with unequal target scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    if scale_features:
        x = x * rng.uniform(0.1, 10.0, size=p) + rng.normal(size=p)
    y = 0.1 * x @ rng.normal(size=(p, t)) + rng.normal(size=(n, t)) * rng.uniform(0.5, 3.0, size=t)
    return x, y


def test_planted_linear_map_reaches_closed_form_r2():
    rng = np.random.default_rng(0)
    n, p = 3000, 8
    x = rng.normal(size=(n, p))  # unit-variance independent features: var(x w) = |w|^2
    w = rng.normal(size=(p, 3))
    noise_sd = np.array([0.5, 1.0, 2.0])
    y = x @ w + rng.normal(size=(n, 3)) * noise_sd
    signal = np.sum(w**2, axis=0)
    expected = 1.0 - noise_sd**2 / (signal + noise_sd**2)
    # held-out R^2 falls short of the population value by about p / n_train * (1 - R^2) < 0.01
    assert linear_predictivity(x, y) == pytest.approx(expected.mean(), abs=0.01)
    weighted = 1.0 - np.sum(noise_sd**2) / np.sum(signal + noise_sd**2)
    assert linear_predictivity(x, y, multioutput="variance_weighted") == pytest.approx(weighted, abs=0.01)
    # and agrees with scikit-learn's r2_score of our pooled predictions
    pred, _ = cross_validated_predictions(x, y)
    assert linear_predictivity(x, y) == pytest.approx(r2_score(y, pred), abs=1e-12)


def test_independent_target_is_at_or_below_zero():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 10)), rng.normal(size=(300, 4))
    r2 = linear_predictivity(x, y)
    assert -0.1 < r2 < 0.01


@pytest.mark.parametrize("n,p,t,seed", [(100, 10, 3, 2), (60, 80, 4, 3), (200, 30, 5, 4)])
def test_folds_match_sklearn_ridge_and_ridgecv(n, p, t, seed):
    x, y = planted(n, p, t, seed)
    fold = fold_assignment(n, 5, seed)
    _, chosen = cross_validated_predictions(x, y, folds=5, seed=seed)
    for alpha in (1e-2, 1.0, 100.0):
        fixed, _ = cross_validated_predictions(x, y, alphas=(alpha,), folds=5, seed=seed)
        for f in range(5):
            train, test = fold != f, fold == f
            sx, sy = StandardScaler().fit(x[train]), StandardScaler().fit(y[train])
            x_train, y_train = sx.transform(x[train]), sy.transform(y[train])
            reference = sy.inverse_transform(
                Ridge(alpha=alpha).fit(x_train, y_train).predict(sx.transform(x[test]))
            )
            np.testing.assert_allclose(fixed[test], reference, rtol=0, atol=1e-8)
            if alpha == 1.0:
                cv = RidgeCV(alphas=DEFAULT_ALPHAS, fit_intercept=True, store_cv_results=True).fit(
                    x_train, y_train
                )
                assert chosen[f] == cv.alpha_
                # the leave-one-out errors themselves, for every penalty
                ridge = RidgePath.fit(x[train])
                ours = ridge.loo_mse(y_train, DEFAULT_ALPHAS).mean(axis=1)
                np.testing.assert_allclose(ours, cv.cv_results_.mean(axis=(0, 1)), rtol=1e-9)


def test_default_grid_is_the_shared_one():
    assert DEFAULT_ALPHAS is ridge_module.DEFAULT_ALPHAS
    assert DEFAULT_ALPHAS == tuple(10.0**e for e in range(-3, 6))
    assert METRICS["linear_predictivity"].params["alphas"] == DEFAULT_ALPHAS


def test_both_directions_and_registry():
    x, y = planted(120, 6, 4, 5)
    forward, backward = predictivity_both(x, y)
    assert forward == linear_predictivity(x, y)
    assert backward == linear_predictivity(y, x)
    metric = METRICS["linear_predictivity"]
    assert metric.params["direction"] == "mean" and metric.params["folds"] == 5
    a, b = metric.prepare(x, metric.resolve({})), metric.prepare(y, metric.resolve({}))
    assert metric.score(a, b, metric.resolve({})) == pytest.approx((forward + backward) / 2, abs=1e-15)
    assert metric.score(a, b, metric.resolve({"direction": "a_to_b"})) == forward
    assert metric.score(a, b, metric.resolve({"direction": "b_to_a"})) == backward
    perm = np.random.default_rng(6).permutation(120)
    params = metric.resolve({"direction": "a_to_b"})
    assert metric.score(a, metric.take(b, perm, params), params) == linear_predictivity(x, y[perm])


def test_bootstrap_copies_stay_in_one_fold():
    rng = np.random.default_rng(7)
    n = 40
    x, y = rng.normal(size=(n, 100)), rng.normal(size=(n, 3))  # unrelated, more features than stimuli
    rows = np.repeat(np.arange(n), 2)
    fold = fold_assignment(2 * n, 5, 0, groups=rows)
    assert np.all(fold[0::2] == fold[1::2])
    # without grouping, a copy in the training fold is interpolated: a large spurious R^2
    assert linear_predictivity(x[rows], y[rows]) > 0.5
    grouped = linear_predictivity(x[rows], y[rows], groups=rows)
    assert grouped < 0.05
    # the registry's resampled states carry the stimulus ids and group by them
    metric = METRICS["linear_predictivity"]
    params = metric.resolve({"direction": "a_to_b"})
    a = metric.take(metric.prepare(x, params), rows, params)
    b = metric.take(metric.prepare(y, params), rows, params)
    assert metric.score(a, b, params) == grouped


def test_constant_target_columns_are_left_out():
    x, y = planted(80, 5, 3, 8)
    with_constant = np.column_stack([y[:, :1], np.full(80, 2.5), y[:, 1:]])
    assert linear_predictivity(x, with_constant) == linear_predictivity(x, y)
    with pytest.raises(NeurometryError, match="constant"):
        linear_predictivity(x, np.full((80, 2), 1.0))


def test_errors():
    x, y = planted(30, 4, 2, 9)
    with pytest.raises(NeurometryError, match="at least 10 rows"):
        linear_predictivity(x[:9], y[:9])
    with pytest.raises(NeurometryError, match="at least 20 rows"):
        linear_predictivity(x[:19], y[:19], folds=10)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(NeurometryError, match="row 3"):
        linear_predictivity(bad, y)
    with pytest.raises(NeurometryError, match="30 and 29 stimuli"):
        linear_predictivity(x, y[:29])
    with pytest.raises(NeurometryError, match="folds"):
        linear_predictivity(x, y, folds=1)
    with pytest.raises(NeurometryError, match="alphas"):
        linear_predictivity(x, y, alphas=(1.0, -1.0))
    with pytest.raises(NeurometryError, match="multioutput"):
        linear_predictivity(x, y, multioutput="raw_values")
    metric = METRICS["linear_predictivity"]
    a = metric.prepare(x, metric.resolve({}))
    with pytest.raises(NeurometryError, match="direction"):
        metric.score(a, a, metric.resolve({"direction": "both"}))
    # a resample with too few distinct stimuli for the folds
    few = metric.take(a, np.repeat(np.arange(3), 10), metric.resolve({}))
    with pytest.raises(NeurometryError, match="distinct groups"):
        metric.score(few, few, metric.resolve({}))
