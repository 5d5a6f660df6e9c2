"""The shared ridge engine: coefficients, predictions, held-out and leave-one-out errors equal
scikit-learn's Ridge / RidgeCV for every penalty, with and without intercept and standardisation,
with more rows than features, more features than rows, and rank-deficient features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

from neurometry.compare import predictivity
from neurometry.errors import NeurometryError
from neurometry.probe import DEFAULT_ALPHAS as PROBE_ALPHAS
from neurometry.probe import encoding
from neurometry.ridge import DEFAULT_ALPHAS, RidgePath

ALPHAS = (1e-3, 0.1, 1.0, 10.0, 1e3, 1e5)
OPTIONS = [(True, True), (True, False), (False, True), (False, False)]  # (intercept, standardize)


def planted(n: int, d: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features with unequal scales and offsets; targets a linear map of them plus noise, offset."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 5.0, size=d) + rng.normal(size=d)
    y = x @ rng.normal(size=(d, t)) * 0.3 + rng.normal(size=(n, t)) + 4.0
    return x, y


def rank_deficient(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n x d features of rank 6: a rank-5 product, a constant column and a duplicated column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) @ rng.normal(size=(5, d - 2))
    x = np.column_stack([x, np.full(n, 2.5), x[:, 0]])
    y = x[:, :3] @ rng.normal(size=(3, 2)) + rng.normal(size=(n, 2))
    return x, y


def reference(x_train, y_train, alpha, intercept, standardize):
    """scikit-learn's Ridge on StandardScaler output (or the raw features): a predictor and the
    coefficients and intercept in the units of the raw features."""
    scaler = StandardScaler(with_mean=intercept).fit(x_train) if standardize else None
    scale = scaler.scale_ if standardize else np.ones(x_train.shape[1])
    prepared = scaler.transform(x_train) if standardize else x_train
    ridge = Ridge(alpha=alpha, fit_intercept=intercept).fit(prepared, y_train)
    weights = np.atleast_2d(ridge.coef_).T  # (d, t), also for a single target
    coef = weights / scale[:, None]
    shift = scaler.mean_ / scale if standardize and intercept else np.zeros(x_train.shape[1])
    intercept_ = np.atleast_1d(ridge.intercept_) - shift @ weights

    def predict(x):
        return ridge.predict(scaler.transform(x) if standardize else x).reshape(len(x), -1)

    return predict, coef, intercept_


def close(actual, expected, tolerance=1e-8):
    """Equal to ``tolerance`` relative to the largest reference value (absolute below 1)."""
    bound = tolerance * max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=bound)


@pytest.mark.parametrize("intercept,standardize", OPTIONS)
@pytest.mark.parametrize(
    "n,d,t,seed", [(80, 12, 3, 0), (30, 60, 2, 1), (25, 25, 1, 2)], ids=["n>d", "n<d", "n=d"]
)
def test_coefficients_and_predictions_equal_sklearn_ridge(n, d, t, seed, intercept, standardize):
    x, y = planted(n + 10, d, t, seed)
    x_train, y_train, x_test = x[:n], y[:n], x[n:]
    path = RidgePath.fit(x_train, intercept=intercept, standardize=standardize)
    assert path.primal == (d <= n) and path.eig.shape == (min(n, d),)
    for alpha in ALPHAS:
        predict, coef, intercept_ = reference(x_train, y_train, alpha, intercept, standardize)
        ours_coef, ours_intercept = path.coef(y_train, alpha)
        assert ours_coef.shape == (d, t) and ours_intercept.shape == (t,)
        close(ours_coef * path.scale[:, None], coef * path.scale[:, None])  # on the penalised scale
        close(ours_intercept, intercept_)
        close(path.predict(y_train, x_test, alpha), predict(x_test))
        close(path.predict(y_train, x_train, alpha), predict(x_train))  # fitted values
        if not intercept:
            assert np.all(ours_intercept == 0.0)


@pytest.mark.parametrize("intercept,standardize", OPTIONS)
@pytest.mark.parametrize("n", [20, 31])
def test_rank_deficient_square_features_equal_sklearn_ridge(n, intercept, standardize):
    x, y = rank_deficient(n + 8, n, n)
    x_train, y_train, x_test = x[:n], y[:n], x[n:]
    assert x_train.shape == (n, n) and np.linalg.matrix_rank(x_train) == 6
    path = RidgePath.fit(x_train, intercept=intercept, standardize=standardize)
    # rank 6, one less once centred (the constant column vanishes): the other eigenvalues are rounding
    rank = 5 if intercept else 6
    assert np.sum(path.eig > 1e-8 * path.eig.max()) == rank
    if standardize:
        assert path.scale[-2] == 1.0  # the constant column is left unscaled, as StandardScaler
    for alpha in (1e-2, 1.0, 100.0, 1e4):
        predict, coef, intercept_ = reference(x_train, y_train, alpha, intercept, standardize)
        ours_coef, ours_intercept = path.coef(y_train, alpha)
        close(ours_coef * path.scale[:, None], coef * path.scale[:, None])
        close(ours_intercept, intercept_)
        close(path.predict(y_train, x_test, alpha), predict(x_test))
        # ridge splits the weight of duplicated columns equally
        close(ours_coef[-1], ours_coef[0])


def test_duplicated_rows_with_more_features_than_rows():
    x, y = planted(40, 90, 3, 3)
    rows = np.repeat(np.arange(20), 2)  # rank 20 from 40 rows: the dual Gram matrix is singular
    path = RidgePath.fit(x[rows])
    assert not path.primal
    for alpha in (1e-3, 1.0, 1e3):
        predict, _, _ = reference(x[rows], y[rows], alpha, True, True)
        close(path.predict(y[rows], x[20:], alpha), predict(x[20:]))


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("n,d", [(60, 8), (25, 70)], ids=["primal", "dual"])
def test_leave_one_out_equals_ridgecv(n, d, intercept):
    x, y = planted(n, d, 3, 4)
    path = RidgePath.fit(x, intercept=intercept)
    prepared = StandardScaler(with_mean=intercept).fit_transform(x)
    cv = RidgeCV(alphas=DEFAULT_ALPHAS, fit_intercept=intercept, store_cv_results=True).fit(prepared, y)
    ours = path.loo_mse(y, DEFAULT_ALPHAS)
    assert ours.shape == (len(DEFAULT_ALPHAS), 3)
    np.testing.assert_allclose(ours, cv.cv_results_.mean(axis=0).T, rtol=1e-8)
    assert DEFAULT_ALPHAS[int(np.argmin(ours.mean(axis=1)))] == cv.alpha_
    # against leaving each row out by brute force, at one penalty (features prepared on all rows)
    alpha = 10.0
    brute = np.empty_like(y)
    for i in range(n):
        keep = np.arange(n) != i
        fold = RidgePath.fit(prepared[keep], intercept=intercept, standardize=False)
        brute[i] = fold.predict(y[keep], prepared[i : i + 1], alpha)[0]
    index = DEFAULT_ALPHAS.index(alpha)
    np.testing.assert_allclose(ours[index], np.mean((y - brute) ** 2, axis=0), rtol=1e-8)


def test_held_out_errors_and_per_target_penalties():
    x, y = planted(70, 15, 4, 5)
    path = RidgePath.fit(x[:50])
    sse = path.held_out_sse(y[:50], x[50:], y[50:], ALPHAS)
    assert sse.shape == (len(ALPHAS), 4)
    for i, alpha in enumerate(ALPHAS):
        residual = y[50:] - path.predict(y[:50], x[50:], alpha)
        np.testing.assert_allclose(sse[i], np.sum(residual**2, axis=0), rtol=1e-10)
    # a penalty per target: each column as if fitted alone with its penalty
    alphas = np.array([0.1, 1e3, 0.1, 10.0])
    ours = path.predict(y[:50], x[50:], alphas)
    for j, alpha in enumerate(alphas):
        predict, _, _ = reference(x[:50], y[:50, j], alpha, True, True)
        close(ours[:, j], predict(x[50:])[:, 0])


def test_one_grid_for_predictivity_and_encoding():
    assert DEFAULT_ALPHAS == tuple(10.0**e for e in range(-3, 6))
    assert all(isinstance(a, float) for a in DEFAULT_ALPHAS)
    assert predictivity.DEFAULT_ALPHAS is DEFAULT_ALPHAS
    assert encoding.DEFAULT_ALPHAS is DEFAULT_ALPHAS and PROBE_ALPHAS is DEFAULT_ALPHAS
    # the union of the grids the two stages used before
    assert {10.0**e for e in range(-3, 4)} | {10.0**e for e in range(-1, 6)} == set(DEFAULT_ALPHAS)


def test_errors():
    x, y = planted(30, 4, 2, 6)
    path = RidgePath.fit(x)
    with pytest.raises(NeurometryError, match="y_train has 29 rows"):
        path.predict(y[:29], x, 1.0)
    with pytest.raises(NeurometryError, match="x has 3 features"):
        path.predict(y, x[:, :3], 1.0)
    with pytest.raises(NeurometryError, match="alphas"):
        path.predict(y, x, 0.0)
    with pytest.raises(NeurometryError, match="alpha has 3 values for 2 targets"):
        path.predict(y, x, [1.0, 2.0, 3.0])
    with pytest.raises(NeurometryError, match="alphas"):
        path.loo_mse(y, [1.0, -1.0])
    with pytest.raises(NeurometryError, match="y has shape"):
        path.held_out_sse(y, x[:5], y[:4], [1.0])
    with pytest.raises(NeurometryError, match="matrix"):
        RidgePath.fit(np.zeros((3, 2, 2)))


def test_blocks_of_targets_give_the_same_answers(monkeypatch):
    from neurometry import ridge

    x, y = planted(60, 9, 7, 7)
    path = RidgePath.fit(x[:45])
    alphas = np.array([0.1, 10.0, 0.1, 1e3, 1.0, 0.1, 10.0])
    whole = (
        path.predict(y[:45], x[45:], alphas),
        path.held_out_sse(y[:45], x[45:], y[45:], ALPHAS),
        path.loo_mse(y[:45], ALPHAS),
        encoding.select_alphas(x, y, ALPHAS, folds=3),
    )
    monkeypatch.setattr(ridge, "_BLOCK_BYTES", 8 * 45 * 2)  # two target columns at a time
    assert len(ridge.column_blocks(45, 7)) == 4
    blocked = (
        path.predict(y[:45], x[45:], alphas),
        path.held_out_sse(y[:45], x[45:], y[45:], ALPHAS),
        path.loo_mse(y[:45], ALPHAS),
        encoding.select_alphas(x, y, ALPHAS, folds=3),
    )
    for a, b in zip(whole[:3], blocked[:3], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    np.testing.assert_array_equal(blocked[3][0], whole[3][0])
    np.testing.assert_allclose(blocked[3][1], whole[3][1], rtol=1e-12)
