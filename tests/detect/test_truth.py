"""Truth directions on planted data: the mass-mean probe recovers a planted truth direction (cosine >= 0.99), the
covariance-corrected variant beats it when a high-variance direction is correlated with the label (the closed
forms give held-out accuracies of about 0.58 and 0.69), held-out scores behave at the extremes, and the
transfer matrix reads a shared direction across sets but not an orthogonal one."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry.detect.truth import TruthProbe, held_out_truth, transfer_matrix
from neurometry.errors import NeurometryError


def planted(n: int, d: int, direction: np.ndarray, separation: float, seed: int, scales: np.ndarray | None = None):
    """Statements (n, d): label +-1/2 x separation along ``direction`` plus Gaussian noise (per-feature
    standard deviations ``scales``), labels "true"/"false"."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    noise = rng.normal(size=(n, d)) * (scales if scales is not None else 1.0)
    x = noise + np.outer(truth - 0.5, direction) * separation
    return x, np.where(truth == 1, "true", "false")


def test_the_mass_mean_probe_recovers_a_planted_truth_direction():
    d = 50
    v = np.random.default_rng(0).normal(size=d)
    v /= np.linalg.norm(v)
    x, truth = planted(4000, d, v, 3.0, seed=1)
    probe = TruthProbe("mass_mean").fit(x, truth)
    assert float(probe.direction_ @ v) >= 0.99
    assert np.mean(probe.predict(x) == truth) > 0.9  # d' = 3: Phi(1.5) = 0.93
    assert TruthProbe("mass_mean_iid").fit(x, truth).direction_ @ v >= 0.99


def test_the_covariance_corrected_probe_wins_when_a_noisy_direction_carries_the_label():
    """Means differ by (1, 1, 0, ...); the second feature's noise has standard deviation 5. The mass-mean
    direction (1, 1)/sqrt 2 separates with d' = sqrt(2 / 26) = 0.39 (accuracy Phi(0.196) = 0.578); the
    covariance-corrected one, Sigma^-1 delta, with d' = sqrt(1 + 1/25) = 1.02 (Phi(0.51) = 0.695)."""
    d = 20
    delta = np.zeros(d)
    delta[:2] = 1.0
    scales = np.ones(d)
    scales[1] = 5.0
    x, truth = planted(6000, d, delta, 1.0, seed=2, scales=scales)
    plain = held_out_truth(x, truth, "mass_mean")
    corrected = held_out_truth(x, truth, "mass_mean_iid")
    assert plain.accuracy == pytest.approx(0.578, abs=0.03)
    assert corrected.accuracy == pytest.approx(0.695, abs=0.03)
    assert corrected.auroc > plain.auroc + 0.1
    assert held_out_truth(x, truth, "logistic").accuracy == pytest.approx(0.695, abs=0.03)


def test_held_out_scores_at_the_extremes_and_with_groups():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5))
    separable = np.where(x[:, 0] > 0, "true", "false")
    x[:, 0] += np.where(separable == "true", 3.0, -3.0)
    perfect = held_out_truth(x, separable, "mass_mean")
    assert perfect.accuracy == 1.0 and perfect.auroc == 1.0 and perfect.folds == 5
    noise = held_out_truth(rng.normal(size=(400, 5)), rng.integers(0, 2, 400), "mass_mean")
    assert abs(noise.auroc - 0.5) < 0.1
    groups = np.repeat(np.arange(100), 2)
    grouped = held_out_truth(x, separable, "mass_mean", groups=groups)
    assert grouped.n == 200 and grouped.accuracy == 1.0
    with pytest.raises(NeurometryError, match="exactly two"):
        TruthProbe().fit(x, np.zeros(200))
    with pytest.raises(NeurometryError, match="unknown truth method"):
        TruthProbe("mass-mean")


def test_transfer_reads_a_shared_direction_and_not_an_orthogonal_one():
    d = 30
    shared, other = np.eye(d)[0], np.eye(d)[1]
    sets = {"a": planted(1000, d, shared, 4.0, seed=4), "b": planted(1000, d, shared, 4.0, seed=5),
            "c": planted(1000, d, other, 4.0, seed=6)}
    matrix = transfer_matrix(sets, "mass_mean")
    accuracy = dict(zip(matrix["names"], matrix["accuracy"], strict=True))
    assert accuracy["a"][0] is None and accuracy["a"][1] > 0.9 and accuracy["b"][0] > 0.9  # a <-> b
    assert abs(accuracy["a"][2] - 0.5) < 0.08 and abs(accuracy["c"][0] - 0.5) < 0.08  # a, c orthogonal


def test_the_category_prior_is_the_smoothed_rate_of_truth_per_value():
    from neurometry.detect.truth import CategoryPrior, held_out_detector

    values = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    truth = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    prior = CategoryPrior().fit(values, truth)
    p = 4 / 8
    expected = {"a": (3 + 2 * p) / 6, "b": (0 + 2 * p) / 4, "c": (1 + 2 * p) / 4, "unseen": p}
    np.testing.assert_allclose(prior.score(list(expected)), np.array(list(expected.values())) - 0.5, rtol=1e-15)
    # a column that carries the label is read held out; one that carries nothing is not
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 600)
    carries = np.where(rng.random(600) < 0.8, label, 1 - label).astype(str)  # agrees with the label 80% of the time
    score = held_out_detector(carries, label, CategoryPrior, "carries", folds=5, seed=0)
    assert abs(score.accuracy - 0.8) < 0.05 and score.auroc > 0.75
    unrelated = held_out_detector(rng.integers(0, 5, 600).astype(str), label, CategoryPrior, "unrelated")
    assert abs(unrelated.auroc - 0.5) < 0.08
    with pytest.raises(NeurometryError, match="exactly two"):
        CategoryPrior().fit(values, np.zeros(8))
