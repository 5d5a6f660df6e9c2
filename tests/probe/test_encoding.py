"""Encoding models: closed-form r on planted linear targets, chance, scikit-learn's Ridge, brute-force
penalty search, grouped folds, split-half reliability and the layer-to-target map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from neurometry.errors import NeurometryError
from neurometry.folds import fold_assignment
from neurometry.probe.encoding import (
    DEFAULT_ALPHAS,
    EncodingResult,
    best_points,
    encode,
    held_out_predictions,
    pearson_columns,
    select_alphas,
    split_half_reliability,
)


def planted(n: int, d: int, t: int, seed: int):
    """Features with unequal scales and offsets, targets = a linear map of them + noise of unequal size."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 5.0, size=d) + rng.normal(size=d)
    y = x @ rng.normal(size=(d, t)) * 0.3 + rng.normal(size=(n, t)) * rng.uniform(0.5, 3.0, size=t) + 4.0
    return x, y


def test_planted_linear_targets_reach_their_noise_limited_r():
    rng = np.random.default_rng(0)
    n, d = 3000, 10
    x = rng.normal(size=(n, d))  # independent unit-variance features: var(x w) = |w|^2
    w = rng.normal(size=(d, 3))
    signal = np.sum(w**2, axis=0)
    expected = np.array([0.9, 0.7, 0.4])
    noise_sd = np.sqrt(signal * (1.0 / expected**2 - 1.0))  # r = sqrt(signal / (signal + noise))
    y = x @ w + rng.normal(size=(n, 3)) * noise_sd
    result = encode(x, y)
    # sampling error of r is (1 - r^2) / sqrt(n) (0.003 to 0.015 here); estimating 10 weights from 2400
    # rows costs about d / n_train * (1 - r^2) / 2 < 0.002 more: allow 3 standard errors + 0.005
    tolerance = 3 * (1 - expected**2) / np.sqrt(n) + 0.005
    assert np.all(np.abs(result.r - expected) < tolerance)
    assert result.mean_r == pytest.approx(result.r.mean()) and result.median_r == pytest.approx(
        0.7, abs=0.035
    )
    assert result.n_rows == n and result.folds == 5 and result.r.shape == result.alpha.shape == (3,)
    assert set(result.alpha) <= set(DEFAULT_ALPHAS)


def test_shuffled_targets_score_near_zero():
    rng = np.random.default_rng(1)
    n = 600
    x = rng.normal(size=(n, 20))
    y = x @ rng.normal(size=(20, 8)) + 0.5 * rng.normal(size=(n, 8))
    real = encode(x, y).r
    shuffled = encode(x, y[rng.permutation(n)]).r
    assert real.min() > 0.8
    # an unrelated target: r has standard error 1 / sqrt(n) = 0.041 around a mean pulled below 0 by
    # pooling folds (a prediction shrunk to its training mean gives r = -sqrt((folds - 1) / n) = -0.08)
    assert np.all(np.abs(shuffled) < 0.2)
    assert -np.sqrt(4 / n) - 0.05 < shuffled.mean() < 0.05


@pytest.mark.parametrize("n,d,t,seed", [(90, 12, 4, 2), (50, 80, 3, 3)])
def test_predictions_equal_sklearn_ridge_on_the_same_folds(n, d, t, seed):
    x, y = planted(n, d, t, seed)
    fold = fold_assignment(n, 5, seed)
    for alpha in (0.1, 10.0, 1000.0):
        ours, chosen = held_out_predictions(x, y, alphas=[alpha], seed=seed)
        assert np.all(chosen == alpha)
        for f in range(5):
            train, test = fold != f, fold == f
            scaler = StandardScaler().fit(x[train])
            ridge = Ridge(alpha=alpha).fit(scaler.transform(x[train]), y[train])
            np.testing.assert_allclose(
                ours[test], ridge.predict(scaler.transform(x[test])), rtol=0, atol=1e-6
            )
    # with a penalty chosen per target and fold, each column is scikit-learn's Ridge with that penalty
    ours, chosen = held_out_predictions(x, y, seed=seed)
    assert len(np.unique(chosen)) > 1  # the check below covers more than one penalty
    for f in range(5):
        train, test = fold != f, fold == f
        scaler = StandardScaler().fit(x[train])
        for j in range(t):
            ridge = Ridge(alpha=chosen[f, j]).fit(scaler.transform(x[train]), y[train, j])
            np.testing.assert_allclose(
                ours[test, j], ridge.predict(scaler.transform(x[test])), rtol=0, atol=1e-6
            )


def brute_force(x, y, alphas, folds, seed, groups=None):
    """Loop over penalties and folds with scikit-learn's Ridge; per target the lowest pooled MSE."""
    fold = fold_assignment(len(x), folds, seed, groups)
    mse = np.zeros((len(alphas), y.shape[1]))
    for i, alpha in enumerate(alphas):
        for f in range(folds):
            train, test = fold != f, fold == f
            scaler = StandardScaler().fit(x[train])
            ridge = Ridge(alpha=alpha).fit(scaler.transform(x[train]), y[train])
            mse[i] += np.sum((y[test] - ridge.predict(scaler.transform(x[test]))) ** 2, axis=0)
    mse /= len(x)
    best = np.array([alphas[int(np.argmin(mse[:, j]))] for j in range(y.shape[1])])
    return best, mse


@pytest.mark.parametrize("n,d,t,seed", [(120, 15, 40, 4), (60, 100, 30, 5)])
def test_select_alphas_equals_brute_force_search(n, d, t, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d)
    # targets from barely to strongly predictable, so the best penalty varies across them
    y = x @ rng.normal(size=(d, t)) * np.geomspace(0.001, 1.0, t) + rng.normal(size=(n, t))
    alphas = DEFAULT_ALPHAS
    best, mse = select_alphas(x, y, alphas, folds=4, seed=seed)
    expected_best, expected_mse = brute_force(x, y, alphas, 4, seed)
    np.testing.assert_allclose(mse, expected_mse, rtol=1e-9)
    np.testing.assert_array_equal(best, expected_best)
    assert len(np.unique(best)) >= 3
    # the order of the penalties does not change the choice
    shuffled, _ = select_alphas(x, y, alphas[::-1], folds=4, seed=seed)
    np.testing.assert_array_equal(shuffled, best)


def test_exact_ties_go_to_the_larger_penalty():
    rng = np.random.default_rng(6)
    y = rng.normal(size=(40, 2))
    # features with no variation: every penalty predicts the training mean, so the errors tie exactly
    best, mse = select_alphas(np.zeros((40, 3)), y, [1.0, 100.0, 10.0])
    assert np.all(mse == mse[0]) and np.all(best == 100.0)
    # otherwise the lowest error wins, whatever the order of the grid
    x = rng.normal(size=(40, 3))
    y = x @ np.ones((3, 2)) + 0.1 * rng.normal(size=(40, 2))
    best, mse = select_alphas(x, y, [1e4, 0.01, 1.0])
    np.testing.assert_array_equal(best, [0.01, 0.01])
    assert np.all(mse[1] < mse[2]) and np.all(mse[2] < mse[0])


def test_groups_keep_repeats_in_one_fold():
    rng = np.random.default_rng(7)
    n = 150
    x, y = rng.normal(size=(n, 300)), rng.normal(size=(n, 3))  # unrelated; more features than stimuli
    rows = np.repeat(np.arange(n), 2)  # every stimulus twice
    # without groups a copy of each held-out row sits in the training set and is interpolated
    assert encode(x[rows], y[rows], alphas=[0.1]).mean_r > 0.5
    grouped = encode(x[rows], y[rows], groups=rows)
    # near 0: the standard error is 1 / sqrt(150) = 0.08, and a target shrunk to its training mean
    # correlates about -2 / sqrt(n) with the pooled held-out rows (fold means move against it)
    assert np.all(np.abs(grouped.r) < 0.3)
    # the inner selection is grouped too: without groups it would reward interpolation (small penalty)
    _, chosen = held_out_predictions(x[rows], y[rows], groups=rows)
    assert np.median(chosen) >= 1e4
    leaky, _ = select_alphas(x[rows], y[rows])
    assert np.all(leaky <= 100.0)


def test_split_half_reliability_matches_closed_form():
    rng = np.random.default_rng(8)
    n_stimuli = 10000
    signal_sd = np.array([1.0, 1.0, 0.5, 2.0])
    noise_sd = np.array([1.0, 3.0, 2.0, 0.5])
    signal = rng.normal(size=(n_stimuli, 4)) * signal_sd
    for n_repeats, used in ((4, 4), (6, 6), (5, 4)):  # odd: one repeat sits out, halves of 2
        repeats = signal + rng.normal(size=(n_repeats, n_stimuli, 4)) * noise_sd
        expected = signal_sd**2 / (signal_sd**2 + noise_sd**2 / used)
        # a split-half r (reliability of half the repeats, h) has standard error (1 - h^2) / sqrt(n);
        # Spearman-Brown multiplies it by 2 / (1 + h)^2; averaging over splits only narrows it
        half = signal_sd**2 / (signal_sd**2 + noise_sd**2 / (used // 2))
        tolerance = 3 * 2 / (1 + half) ** 2 * (1 - half**2) / np.sqrt(n_stimuli)
        assert np.all(np.abs(split_half_reliability(repeats, splits=50, seed=1) - expected) < tolerance)
    two = signal + rng.normal(size=(2, n_stimuli, 4)) * noise_sd
    # with two repeats there is one split: Spearman-Brown of the correlation of the repeats
    r = pearson_columns(two[0], two[1])
    np.testing.assert_allclose(split_half_reliability(two, splits=3), 2 * r / (1 + r), rtol=1e-12)
    np.testing.assert_allclose(split_half_reliability(two[:, :, 0]), split_half_reliability(two)[:1])


def test_ceiling_normalises_r_and_result_is_json():
    x, y = planted(80, 5, 3, 9)
    plain = encode(x, y)
    assert plain.ceiling is None and plain.normalized_r is None
    ceiled = encode(x, y, ceiling=[0.5, 0.0, 2.0])
    np.testing.assert_array_equal(ceiled.r, plain.r)
    assert ceiled.normalized_r[0] == pytest.approx(plain.r[0] / 0.5)
    assert np.isnan(ceiled.normalized_r[1])
    assert ceiled.normalized_r[2] == pytest.approx(plain.r[2] / 2.0)
    document = json.loads(json.dumps(ceiled.to_dict(), allow_nan=False))
    assert document["normalized_r"][1] is None and document["r"] == pytest.approx(list(plain.r))
    assert document["params"]["alphas"] == list(DEFAULT_ALPHAS) and document["folds"] == 5


def test_best_points_finds_the_planted_layer():
    rng = np.random.default_rng(10)
    n = 300
    early, late = rng.normal(size=(n, 10)), rng.normal(size=(n, 10))
    noise = rng.normal(size=(n, 6))
    targets = np.column_stack([early @ rng.normal(size=(10, 3)), late @ rng.normal(size=(10, 3))]) + noise
    results = {"early": encode(early, targets), "late": encode(late, targets)}
    assert best_points(results) == ["early"] * 3 + ["late"] * 3
    with pytest.raises(NeurometryError, match="at least one"):
        best_points({})
    fewer = EncodingResult(np.zeros(2), np.ones(2), 0.0, 0.0, None, None, n, 5)
    with pytest.raises(NeurometryError, match="different numbers of targets"):
        best_points({"early": results["early"], "other": fewer})


def test_errors():
    x, y = planted(40, 4, 16, 11)
    bad = y.copy()
    bad[[0, 5], 4] = np.nan
    bad[3, 9] = np.inf
    bad[7, 12] = np.nan
    with pytest.raises(NeurometryError, match=r"3 targets contain NaN or Inf \(columns 4, 9, 12\)"):
        encode(x, bad)
    with pytest.raises(NeurometryError, match=r"3 targets contain NaN"):
        select_alphas(x, bad)
    constant = y.copy()
    constant[:, [2, 7]] = 1.5
    with pytest.raises(NeurometryError, match=r"2 targets are constant over the rows \(columns 2, 7\)"):
        encode(x, constant)
    with pytest.raises(NeurometryError, match="40 and 39 stimuli"):
        encode(x, y[:39])
    with pytest.raises(NeurometryError, match="at least 10 rows"):
        encode(x[:9], y[:9])
    with pytest.raises(NeurometryError, match="too few for 5 inner folds"):
        encode(x[:12], y[:12])
    assert encode(x[:12], y[:12], inner_folds=2).r.shape == (16,)
    with pytest.raises(NeurometryError, match="alphas"):
        encode(x, y, alphas=[1.0, 0.0])
    with pytest.raises(NeurometryError, match="folds"):
        select_alphas(x, y, folds=1)
    with pytest.raises(NeurometryError, match="ceiling has 3 values for 16 targets"):
        encode(x, y, ceiling=[1.0, 1.0, 1.0])
    nan_x = x.copy()
    nan_x[6, 1] = np.nan
    with pytest.raises(NeurometryError, match="row 6"):
        encode(nan_x, y)
    with pytest.raises(NeurometryError, match="at least 2 repeats"):
        split_half_reliability(np.ones((1, 10, 3)))
    with pytest.raises(NeurometryError, match="shape"):
        split_half_reliability(np.ones(10))
    flat = np.random.default_rng(12).normal(size=(4, 10, 3))
    flat[:, :, 1] = 2.0
    with pytest.raises(NeurometryError, match=r"1 targets have a half .* \(columns 1\)"):
        split_half_reliability(flat)
    flat[0, 0, 2] = np.nan
    with pytest.raises(NeurometryError, match=r"1 targets contain NaN or Inf \(columns 2\)"):
        split_half_reliability(flat)
