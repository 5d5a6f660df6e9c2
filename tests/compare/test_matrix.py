"""compare_matrix: each representation prepared once, statistics with known behaviour, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurometry.compare import registry
from neurometry.compare.matrix import compare, compare_matrix
from neurometry.errors import NeurometryError


def planted(n: int, d: int = 8, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return x, x @ q + noise * rng.normal(size=(n, d))


def test_layer_by_layer_prepares_each_representation_once(monkeypatch):
    calls = []
    cka = registry.get_metric("cka")

    def counting(x, p):
        calls.append(len(x))
        return cka.prepare(x, p)

    monkeypatch.setitem(registry.METRICS, "cka", dataclasses.replace(cka, prepare=counting))
    rng = np.random.default_rng(1)
    a = {f"a{i}": rng.normal(size=(40, 5)) for i in range(6)}
    b = {f"b{i}": rng.normal(size=(40, 7)) for i in range(5)}
    results = compare_matrix(a, b, "cka")
    assert len(results) == 30 and len(calls) == 11
    calls.clear()
    self_sim = compare_matrix(a, None, "cka")
    assert len(self_sim) == 36 and len(calls) == 6
    diag = [r.value for r in self_sim if r.point_a == r.point_b]
    np.testing.assert_allclose(diag, 1.0, atol=1e-12)
    value = {(r.point_a, r.point_b): r.value for r in self_sim}
    assert value["a1", "a4"] == pytest.approx(value["a4", "a1"], abs=1e-12)


def test_permutation_p_value_is_minimal_for_planted_and_uniformish_for_independent():
    x, y = planted(60)
    r = compare(x, y, "rsa", permutations=199, seed=3)
    assert r.p_value == pytest.approx(1 / 200)  # no shuffle of 60 stimuli reaches a planted alignment
    assert abs(r.null_mean) < 0.05  # Spearman between RDMs of unrelated stimulus orders centres on 0
    rng = np.random.default_rng(5)
    ps = [
        compare(rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), "rsa", permutations=99, seed=s).p_value
        for s in range(20)
    ]
    # under the null p is (discretely) uniform: 20 draws have mean 0.5 +- 3 * 0.29 / sqrt(20)
    assert 0.3 < np.mean(ps) < 0.7


def test_distance_metrics_test_the_lower_tail():
    x, y = planted(50, noise=0.05)
    r = compare(x, y, "procrustes", permutations=99, seed=0)
    assert r.value < r.null_mean and r.p_value == pytest.approx(1 / 100)


def test_bootstrap_interval_covers_and_shrinks_with_more_stimuli():
    x, y = planted(400, noise=1.0, seed=2)
    small = compare(x[:100], y[:100], "cka", bootstrap=200, seed=1)
    large = compare(x, y, "cka", bootstrap=200, seed=1)
    for r in (small, large):
        assert r.ci_low < r.value < r.ci_high
    # percentile width scales as 1/sqrt(n): 4x the stimuli give about half the width
    ratio = (large.ci_high - large.ci_low) / (small.ci_high - small.ci_low)
    assert 0.3 < ratio < 0.75
    same = compare(x, x, "cka", bootstrap=20, seed=0)
    assert same.ci_low == pytest.approx(1.0) and same.ci_high == pytest.approx(1.0)


def test_seeded_statistics_repeat_exactly():
    x, y = planted(40)
    a = compare(x, y, "cka", permutations=30, bootstrap=30, seed=7)
    b = compare(x, y, "cka", permutations=30, bootstrap=30, seed=7)
    assert a == b


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda x: compare(x, x[:-1], "cka"), "different numbers of stimuli"),
        (lambda x: compare(x, x, "ckaa"), "did you mean cka"),
        (lambda x: compare(x, x, "cka", alpha=0.5), "unknown parameter 'alpha'"),
        (lambda x: compare(x, x, "cka", permutations=-1), "permutations must be at least 1"),
        (lambda x: compare(x, x, "cka", bootstrap=1), "bootstrap needs at least 2"),
        (lambda x: compare(np.where(x > 1.5, np.nan, x), x, "cka"), "NaN"),
        (lambda x: compare(x[:2], x[:2], "rsa"), "at least"),
    ],
)
def test_user_errors(call, fragment):
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(NeurometryError, match=fragment):
        call(x)
