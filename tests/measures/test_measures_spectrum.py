import numpy as np
import pytest
from measures_helpers import planted_subspace, with_singular_values

from neurometry.errors import NeurometryError
from neurometry.measures import (
    alpha_req,
    coding_rate,
    effective_rank,
    n_components,
    participation_ratio,
    run_measures,
    stable_rank,
)


def test_closed_form_spectrum():
    s = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    x = with_singular_values(s, n=200, d=20)
    p = s / s.sum()
    assert effective_rank(x).value == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)
    lam = s**2
    assert participation_ratio(x).value == pytest.approx(lam.sum() ** 2 / np.sum(lam**2), rel=1e-9)
    assert stable_rank(x).value == pytest.approx(lam.sum() / lam[0], rel=1e-9)
    # cumulative explained: 25/55, 41/55, 50/55 (0.909), 54/55 (0.982), 1
    assert n_components(x, 0.9).value == 3
    assert n_components(x, 0.95).value == 4
    assert n_components(x, 0.99).value == 5


def test_equal_singular_values_give_exact_rank():
    x = with_singular_values(np.full(7, 2.5), n=100, d=30)
    for f in (effective_rank, participation_ratio, stable_rank):
        assert f(x).value == pytest.approx(7, rel=1e-9)


def test_alpha_req_recovers_planted_power_law():
    for alpha in (0.8, 1.0, 2.0):
        k = np.arange(1, 51)
        x = with_singular_values(np.sqrt(k**-alpha), n=300, d=60)
        r = alpha_req(x)
        assert r.value == pytest.approx(alpha, rel=1e-9)
        assert (r.fields["k_min"], r.fields["k_max"]) == (1, 50)
        assert alpha_req(x, k_min=5, k_max=20).value == pytest.approx(alpha, rel=1e-9)


def test_planted_subspace_spectrum_near_k():
    # the participation ratio weighs variances (noise^2), the effective rank singular values (noise):
    # 95 noise directions at 1e-3 of the signal already lift the effective rank to ~5.8
    assert participation_ratio(planted_subspace(3000, 5, 100, noise=1e-2)).value == pytest.approx(5, rel=0.05)
    assert effective_rank(planted_subspace(3000, 5, 100, noise=1e-4)).value == pytest.approx(5, rel=0.05)


def test_coding_rate_matches_direct_logdet():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 25)) + 1.0
    for eps in (0.5, 0.1):
        n, d = x.shape
        direct = 0.5 * np.linalg.slogdet(np.eye(d) + d / (n * eps**2) * x.T @ x)[1]
        assert coding_rate(x, eps=eps).value == pytest.approx(direct, rel=1e-10)


def test_spectrum_refuses_too_many_features():
    with pytest.raises(NeurometryError, match="reduce mean"):
        run_measures(lambda: [np.zeros((2, 9000), np.float32)], ["effective_rank"])


def test_spectrum_bad_input():
    with pytest.raises(NeurometryError, match="at least 2 rows"):
        effective_rank(np.ones((1, 4)))
    with pytest.raises(NeurometryError, match="identical"):
        participation_ratio(np.ones((5, 4)))
    with pytest.raises(NeurometryError, match="alpha_k"):
        alpha_req(np.random.default_rng(0).normal(size=(50, 5)), k_min=5)
