"""CKA against the textbook n x n formulas, its invariances, the streaming accumulator and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry.compare import kernel_alignment as cka_module
from neurometry.compare.kernel_alignment import (
    LinearCKAAccumulator,
    _FeatureKernel,
    _hsic,
    _median_sq_distance,
    _self_hsic,
    _StoredGram,
    _StreamedGram,
    cka,
)
from neurometry.compare.registry import METRICS
from neurometry.errors import NeurometryError

# ---------------------------------------------------------------------------------------------------
# the textbook formulas, written directly on n x n matrices


def centring(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Gretton et al. 2005: tr(K H L H) / (n-1)^2."""
    n = len(k)
    h = centring(n)
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. 2012: [tr(K~L~) + 1'K~1 1'L~1/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), K~ = K, diag 0."""
    n = len(k)
    kt = k - np.diag(np.diag(k))
    lt = l - np.diag(np.diag(l))
    one = np.ones(n)
    return float(
        (
            np.trace(kt @ lt)
            + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ kt @ lt @ one
        )
        / (n * (n - 3))
    )


def cka_direct(k: np.ndarray, l: np.ndarray, hsic) -> float:  # noqa: E741
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


HSIC = {"biased": hsic_biased, "unbiased": hsic_unbiased}


def rbf_direct(x: np.ndarray, bandwidth: float) -> np.ndarray:
    """exp(-d^2 / (2 sigma^2)), sigma^2 = bandwidth^2 * median of all n^2 squared distances (Kornblith's code)."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * bandwidth**2 * np.median(d2)))


def shared_signal(n: int, d1: int, d2: int, seed: int, k: int = 3, offset: float = 3.0):
    """x and y driven by k shared latent factors plus independent noise, with a mean offset."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, k))
    x = s @ rng.normal(size=(k, d1)) + rng.normal(size=(n, d1)) + offset
    y = s @ rng.normal(size=(k, d2)) + 1.5 * rng.normal(size=(n, d2)) - offset
    return x, y


def part_cka(a, b, estimator: str) -> float:
    return _hsic(a, b, estimator) / np.sqrt(_self_hsic(a, estimator, "a") * _self_hsic(b, estimator, "b"))


# ---------------------------------------------------------------------------------------------------
# agreement with the formulas


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("n,d1,d2", [(40, 5, 7), (20, 40, 60), (25, 6, 50)])
def test_linear_cka_equals_textbook_formula(estimator, n, d1, d2):
    # (40, 5, 7): feature path on both sides; (20, 40, 60): Gram on both; (25, 6, 50): one of each
    x, y = shared_signal(n, d1, d2, seed=n + d1)
    expected = cka_direct(x @ x.T, y @ y.T, HSIC[estimator])
    assert abs(cka(x, y, estimator=estimator) - expected) < 1e-8


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("n,d", [(60, 8), (15, 40)])
def test_feature_stored_and_streamed_paths_agree(estimator, n, d):
    x, y = shared_signal(n, d, d + 3, seed=7)
    feature = part_cka(_FeatureKernel.build(x), _FeatureKernel.build(y), estimator)
    stored = part_cka(_StoredGram.build(x, "linear", 0.0), _StoredGram.build(y, "linear", 0.0), estimator)
    streamed = part_cka(
        _StreamedGram.build(x, "linear", 0.0), _StreamedGram.build(y, "linear", 0.0), estimator
    )
    mixed = part_cka(_FeatureKernel.build(x), _StreamedGram.build(y, "linear", 0.0), estimator)
    mixed2 = part_cka(_StoredGram.build(x, "linear", 0.0), _FeatureKernel.build(y), estimator)
    expected = cka_direct(x @ x.T, y @ y.T, HSIC[estimator])
    for value in (feature, stored, streamed, mixed, mixed2):
        assert abs(value - expected) < 1e-10


def test_streamed_gram_at_20000_rows_matches_feature_path():
    # The n x n path as built in tiles, at the size where a whole Gram matrix would be 3.2 GB: x's
    # streamed Gram (one pass for its row means and <Kc, Kc>) against y's features (one more pass for
    # the cross term); both-streamed scoring uses the same tiles and is checked at small n above.
    x, y = shared_signal(20_000, 4, 4, seed=11)
    streamed, fx, fy = _StreamedGram.build(x, "linear", 0.0), _FeatureKernel.build(x), _FeatureKernel.build(y)
    assert abs(streamed.kc_sq / fx.kc_sq - 1) < 1e-10
    for estimator in ("biased", "unbiased"):
        expected = part_cka(fx, fy, estimator)
        assert 0.3 < expected < 0.95
        assert abs(part_cka(streamed, fy, estimator) / expected - 1) < 1e-9


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("bandwidth", [0.5, 1.0, 2.0])
def test_rbf_cka_equals_direct_formula_with_median_heuristic(estimator, bandwidth):
    x, y = shared_signal(41, 3, 5, seed=3)
    expected = cka_direct(rbf_direct(x, bandwidth), rbf_direct(y, bandwidth), HSIC[estimator])
    assert abs(cka(x, y, kernel="rbf", estimator=estimator, bandwidth=bandwidth) - expected) < 1e-8


def test_rbf_streamed_and_stored_paths_agree(monkeypatch):
    x, y = shared_signal(300, 5, 6, seed=5)
    stored = {e: cka(x, y, kernel="rbf", estimator=e) for e in ("biased", "unbiased")}
    monkeypatch.setattr(cka_module, "_GRAM_STORE_MAX_ROWS", 100)
    monkeypatch.setattr(cka_module, "_TILE", 37)  # uneven tiles
    for estimator, value in stored.items():
        assert abs(cka(x, y, kernel="rbf", estimator=estimator) - value) < 1e-12


@pytest.mark.parametrize("n", [1500, 1501])  # n^2 even (mean of two middle values) and odd
def test_blocked_median_selection_is_exact(monkeypatch, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3))
    x[:40] = x[0]  # ties, including zero distances off the diagonal
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    expected = float(np.median(d2))
    monkeypatch.setattr(cka_module, "_EXACT_MEDIAN_MAX_ROWS", 100)
    monkeypatch.setattr(cka_module, "_TILE", 97)
    assert abs(_median_sq_distance(x) / expected - 1) < 1e-12
    monkeypatch.setattr(cka_module, "_MEDIAN_SAMPLE", 50)  # a bracket that misses is widened, still exact
    assert abs(_median_sq_distance(x) / expected - 1) < 1e-12


# ---------------------------------------------------------------------------------------------------
# the streaming accumulator


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_accumulator_over_uneven_chunks_equals_in_memory(estimator):
    x, y = shared_signal(1000, 12, 7, seed=2, offset=50.0)
    acc = LinearCKAAccumulator(12, 7)
    for lo, hi in [(0, 1), (1, 4), (4, 250), (250, 651), (651, 1000)]:
        acc.update(x[lo:hi].astype(np.float32) if lo == 4 else x[lo:hi], y[lo:hi])
    assert acc.n_rows == 1000
    x_mem = x.copy()
    x_mem[4:250] = x[4:250].astype(np.float32)
    expected = cka(x_mem, y, estimator=estimator)
    assert abs(acc.result(estimator) / expected - 1) < 1e-9


def test_accumulator_errors():
    acc = LinearCKAAccumulator(3, 2)
    with pytest.raises(NeurometryError, match="0 rows"):
        acc.result()
    with pytest.raises(NeurometryError, match="features"):
        acc.update(np.ones((5, 4)), np.ones((5, 2)))
    with pytest.raises(NeurometryError, match="stimuli"):
        acc.update(np.ones((5, 3)), np.ones((4, 2)))
    acc.update(np.arange(9.0).reshape(3, 3), np.ones((3, 2)))
    with pytest.raises(NeurometryError, match="at least 4"):
        acc.result("unbiased")
    with pytest.raises(NeurometryError, match="same for every stimulus"):
        acc.result("biased")  # y is constant
    with pytest.raises(NeurometryError, match="did you mean unbiased"):
        acc.result("unbaised")


# ---------------------------------------------------------------------------------------------------
# invariances and known values


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize(
    "kernel,estimator", [("linear", "biased"), ("linear", "unbiased"), ("rbf", "biased"), ("rbf", "unbiased")]
)
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(kernel, estimator):
    rng = np.random.default_rng(4)
    x, y = shared_signal(50, 6, 9, seed=4)
    base = cka(x, y, kernel=kernel, estimator=estimator)
    for x2, y2 in [
        (x @ random_orthogonal(6, rng), y),
        (x, y @ random_orthogonal(9, rng)),
        (3.7 * x, y),
        (x, 0.02 * y),
        (x @ random_orthogonal(6, rng) * 11.0, y @ random_orthogonal(9, rng) + 5.0),
    ]:
        assert abs(cka(x2, y2, kernel=kernel, estimator=estimator) - base) < 1e-10


def test_anisotropic_linear_map_changes_linear_cka():
    x, y = shared_signal(200, 4, 6, seed=8)
    stretch = np.diag([1.0, 10.0, 0.1, 3.0]) @ np.array(
        [[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.2], [0, 0, 0, 1]]
    )
    for estimator in ("biased", "unbiased"):
        assert abs(cka(x @ stretch, y, estimator=estimator) - cka(x, y, estimator=estimator)) > 0.02


@pytest.mark.parametrize(
    "kernel,estimator",
    [
        ("linear", "biased"),
        ("linear", "unbiased"),
        ("linear", "minibatch"),
        ("rbf", "biased"),
        ("rbf", "unbiased"),
    ],
)
def test_cka_of_a_representation_with_itself_is_one(kernel, estimator):
    x, _ = shared_signal(80, 5, 2, seed=6)
    assert abs(cka(x, x, kernel=kernel, estimator=estimator, batch_size=20) - 1) < 1e-12


def test_independent_gaussians_unbiased_near_zero_biased_not():
    rng = np.random.default_rng(0)
    # n = 2000, d = 10: the unbiased estimate of the population value 0 is within 0.05
    x, y = rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10))
    assert abs(cka(x, y, estimator="unbiased")) < 0.05
    # n = 100, d = 50: the biased estimator is pulled up to about d / (n + d) = 1/3; the unbiased is not
    x, y = rng.normal(size=(100, 50)), rng.normal(size=(100, 50))
    assert cka(x, y, estimator="biased") > 0.25
    assert abs(cka(x, y, estimator="unbiased")) < 0.08


def test_minibatch_with_one_batch_equals_unbiased():
    x, y = shared_signal(300, 8, 5, seed=9)
    for kernel in ("linear", "rbf"):
        full = cka(x, y, kernel=kernel, estimator="unbiased")
        assert abs(cka(x, y, kernel=kernel, estimator="minibatch", batch_size=300, seed=3) - full) < 1e-12


def test_minibatch_close_to_full_value_on_planted_signal():
    # n = 2000, 10 batches of 200: within 0.01 of the full unbiased value (observed differences <= 0.002)
    x, y = shared_signal(2000, 20, 30, seed=1)
    full = cka(x, y, estimator="unbiased")
    assert 0.6 < full < 0.9
    for seed in (0, 1):
        assert abs(cka(x, y, estimator="minibatch", batch_size=200, seed=seed) - full) < 0.01
    # 301 rows in 3 batches: the 1-row remainder is spread, every row used
    assert (
        abs(
            cka(x[:301], y[:301], estimator="minibatch", batch_size=100)
            - cka(x[:301], y[:301], "linear", "unbiased")
        )
        < 0.05
    )


# ---------------------------------------------------------------------------------------------------
# the registered metric


def metric_cka(x, y, **params) -> float:
    metric = METRICS["cka"]
    p = metric.resolve(params)
    return metric.score(metric.prepare(x, p), metric.prepare(y, p), p)


def resampled_cka(x, y, rows_x, rows_y, params: dict, gamma_x: float, gamma_y: float) -> float:
    """CKA of x[rows_x] and y[rows_y]; for rbf with the kernel widths of the full data (take keeps them)."""
    if params.get("kernel") == "rbf":
        return cka_direct(
            np.exp(-gamma_x * ((x[rows_x, None] - x[None, rows_x]) ** 2).sum(-1)),
            np.exp(-gamma_y * ((y[rows_y, None] - y[None, rows_y]) ** 2).sum(-1)),
            HSIC[params["estimator"]],
        )
    return cka(x[rows_x], y[rows_y], **params)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"estimator": "unbiased"},
        {"kernel": "rbf"},
        {"kernel": "rbf", "estimator": "unbiased", "bandwidth": 0.7},
        {"estimator": "minibatch", "batch_size": 20, "seed": 4},
    ],
)
def test_metric_matches_function_and_take_matches_reindexed_data(params):
    metric = METRICS["cka"]
    assert metric.min_rows == 4 and set(metric.params) == {
        "kernel",
        "estimator",
        "bandwidth",
        "batch_size",
        "seed",
    }
    p = metric.resolve(params)
    for n, d in [(60, 5), (30, 45)]:  # feature and Gram states
        x, y = shared_signal(n, d, d + 2, seed=n)
        sa, sb = metric.prepare(x, p), metric.prepare(y, p)
        assert abs(metric.score(sa, sb, p) - cka(x, y, **params)) < 1e-12
        rng = np.random.default_rng(0)
        order = rng.permutation(n)
        boot = rng.integers(n, size=n)  # repeats: the states must be centred again
        for rows in (order, boot):
            got = metric.score(metric.take(sa, rows, p), metric.take(sb, rows, p), p)
            assert abs(got - resampled_cka(x, y, rows, rows, p, sa.gamma, sb.gamma)) < 1e-10
        # one side permuted (the permutation test's null)
        got = metric.score(sa, metric.take(sb, order, p), p)
        assert abs(got - resampled_cka(x, y, np.arange(n), order, p, sa.gamma, sb.gamma)) < 1e-10


def test_take_of_streamed_state(monkeypatch):
    monkeypatch.setattr(cka_module, "_GRAM_STORE_MAX_ROWS", 10)
    metric = METRICS["cka"]
    p = metric.resolve({"estimator": "unbiased"})
    x, y = shared_signal(40, 50, 60, seed=2)  # d > n: Gram, n > 10: streamed
    sa, sb = metric.prepare(x, p), metric.prepare(y, p)
    assert isinstance(sa.part, _StreamedGram)
    rows = np.random.default_rng(1).integers(40, size=40)
    expected = cka_direct(x[rows] @ x[rows].T, y[rows] @ y[rows].T, hsic_unbiased)
    assert abs(metric.score(metric.take(sa, rows, p), metric.take(sb, rows, p), p) - expected) < 1e-10
    order = np.random.default_rng(2).permutation(40)
    expected = cka_direct(x @ x.T, y[order] @ y[order].T, hsic_unbiased)
    assert abs(metric.score(sa, metric.take(sb, order, p), p) - expected) < 1e-10


# ---------------------------------------------------------------------------------------------------
# errors


def test_errors():
    x, y = shared_signal(30, 4, 5, seed=0)
    with pytest.raises(NeurometryError, match="needs at least 4"):
        cka(x[:3], y[:3], estimator="unbiased")
    with pytest.raises(NeurometryError, match="0/0"):
        cka(np.full((30, 4), 0.1), y)
    with pytest.raises(NeurometryError, match="0/0"):
        cka(x, np.full((30, 5), 2.0), estimator="unbiased")
    x_nan = x.copy()
    x_nan[7, 2] = np.nan
    with pytest.raises(NeurometryError, match="row 7 contains NaN"):
        cka(x_nan, y)
    with pytest.raises(NeurometryError, match="30 and 29 stimuli"):
        cka(x, y[:29])
    with pytest.raises(NeurometryError, match="did you mean rbf"):
        cka(x, y, kernel="rfb")
    with pytest.raises(NeurometryError, match="did you mean unbiased"):
        cka(x, y, estimator="unbaised")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(NeurometryError, match="bandwidth must be a positive number"):
            cka(x, y, kernel="rbf", bandwidth=bad)
    with pytest.raises(NeurometryError, match="batch_size must be an integer >= 4"):
        cka(x, y, estimator="minibatch", batch_size=3)
    with pytest.raises(NeurometryError, match="batch_size 31 is larger than the 30 stimuli"):
        cka(x, y, estimator="minibatch", batch_size=31)
    with pytest.raises(NeurometryError, match="median pairwise distance"):
        cka(np.vstack([np.repeat(x[:1], 25, axis=0), x[:5]]), y, kernel="rbf")  # 630 of 900 distances are 0
    with pytest.raises(NeurometryError, match="unknown parameter 'bandwith'"):
        METRICS["cka"].resolve({"bandwith": 1.0})
