"""Sparse probing (Gurnee et al. 2023): unit ranking against closed forms, planted units, no leakage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.feature_selection import f_classif

from neurometry.errors import NeurometryError
from neurometry.probe.linear import probe
from neurometry.probe.sparse import default_ks, rank_units, sparse_probe, unit_scores


def _cohen_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pooled = ((len(a) - 1) * a.var(axis=0, ddof=1) + (len(b) - 1) * b.var(axis=0, ddof=1)) / (
        len(a) + len(b) - 2
    )
    return np.abs(a.mean(axis=0) - b.mean(axis=0)) / np.sqrt(pooled)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_f_statistic_equals_f_classif(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 300)
    x = rng.normal(size=(300, 40)) * rng.uniform(0.1, 10, 40) + 100.0
    x[:, 5] += y
    # f_classif sums raw squares, which loses ~1e-9 to cancellation at this offset; centred it is exact
    expected, _ = f_classif(x - x.mean(axis=0), y)
    np.testing.assert_allclose(unit_scores(x, y, "f_statistic"), expected, rtol=1e-11)
    np.testing.assert_allclose(unit_scores(x, y, "f_statistic"), f_classif(x, y)[0], rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(rank_units(x, y), np.argsort(-expected, kind="stable"))


def test_mean_difference_is_pooled_cohen_d_max_one_vs_rest() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 10)) * rng.uniform(0.5, 3.0, 10)
    y = rng.integers(0, 2, 200)
    np.testing.assert_allclose(
        unit_scores(x, y, "mean_difference"), _cohen_d(x[y == 0], x[y == 1]), rtol=1e-10
    )
    y3 = rng.integers(0, 3, 200)
    expected = np.max([_cohen_d(x[y3 == c], x[y3 != c]) for c in range(3)], axis=0)
    np.testing.assert_allclose(unit_scores(x, y3, "mean_difference"), expected, rtol=1e-10)


def test_ranking_edge_cases() -> None:
    y = np.tile([0, 1], 10)
    x = np.random.default_rng(6).normal(size=(20, 4))
    x[:, 1] = 3.0  # constant: no score, last
    x[:, 3] = y  # separated without spread: infinite, first
    for method in ("f_statistic", "mean_difference"):
        order = rank_units(x, y, method)
        assert order[0] == 3 and order[-1] == 1
        assert np.isnan(unit_scores(x, y, method)[1])


def test_default_ks() -> None:
    assert default_ks(1) == [1]
    assert default_ks(8) == [1, 2, 4, 8]
    assert default_ks(50) == [1, 2, 4, 8, 16, 32, 50]


def test_label_planted_in_one_unit_is_found_at_k1() -> None:
    rng = np.random.default_rng(7)
    n, d, j, noise = 1000, 50, 23, 0.3
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d))
    x[:, j] = y + noise * rng.normal(size=n)
    planted = norm.cdf(0.5 / noise)  # Bayes accuracy of thresholding unit j at 0.5: 0.952
    for method in ("f_statistic", "mean_difference"):
        one, full = sparse_probe(x, y, ks=[1, d], rank_by=method)
        assert one.kind == "sparse" and one.k == 1 and full.k == d
        assert one.units == (j,)
        # 5 folds of 200 rows: SE of the mean accuracy ~ 0.007, tolerance ~ 4 SE
        assert one.score == pytest.approx(planted, abs=0.03)
        assert len(full.units) == d and full.units[0] == j
        assert one.baseline == full.baseline == probe(x, y).baseline


def test_label_in_a_spread_direction_needs_full_width() -> None:
    # the class means differ by 4 along a direction with equal weight 1/sqrt(d) on every unit:
    # one unit separates them by 4/sqrt(d) (Bayes accuracy Phi(2/sqrt(d)) = 0.61), all units by 4 (0.977)
    rng = np.random.default_rng(8)
    n, d = 1000, 50
    y = rng.integers(0, 2, n)
    direction = rng.choice([-1.0, 1.0], d) / np.sqrt(d)
    x = rng.normal(size=(n, d)) + 4.0 * np.outer(y - 0.5, direction)
    results = sparse_probe(x, y)
    assert [r.k for r in results] == default_ks(d)
    one, full = results[0], results[-1]
    assert one.score == pytest.approx(norm.cdf(2 / np.sqrt(d)), abs=0.05)
    assert one.score < 0.7
    assert full.score > 0.93  # Bayes 0.977, less the cost of estimating 50 weights from 800 rows
    assert all(r.units == tuple(rank_units(x, y)[: r.k]) for r in results)
    assert "training rows" in one.note


def test_units_are_ranked_inside_the_folds() -> None:
    # pure noise, many units, few rows: ranking on all rows picks a unit that fits the held-out labels
    # by chance (leaky accuracy well above 0.5); ranking on training rows only stays near chance
    honest, leaky = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(40, 20000))
        y = np.repeat([0, 1], 20)
        honest.append(sparse_probe(x, y, ks=[1])[0].score)
        leaky.append(probe(x[:, rank_units(x, y)[:1]], y).score)
    assert np.mean(honest) < 0.62
    assert np.mean(leaky) > 0.72


def test_sparse_errors() -> None:
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.tile([0, 1], 10)
    with pytest.raises(NeurometryError, match="did you mean f_statistic"):
        sparse_probe(x, y, rank_by="f_stat")
    with pytest.raises(NeurometryError, match="did you mean mean_difference"):
        rank_units(x, y, "mean_diff")
    with pytest.raises(NeurometryError, match="from 1 to the 3 units"):
        sparse_probe(x, y, ks=[1, 4])
    with pytest.raises(NeurometryError, match="2 missing"):
        sparse_probe(x, np.r_[np.nan, np.nan, np.tile([0.0, 1.0], 9)])
    with pytest.raises(NeurometryError, match="single class"):
        rank_units(x, np.zeros(20))
