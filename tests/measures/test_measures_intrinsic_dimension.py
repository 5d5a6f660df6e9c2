import numpy as np
import pytest
import skdim
from measures_helpers import planted_subspace

from neurometry.errors import NeurometryError
from neurometry.measures import knn, mle_id, run_measures, twonn

# Same data, same parameters: ours and scikit-dimension agree to this relative tolerance (both are
# float64 computations of the same formula; only summation order differs).
SKDIM_RTOL = 1e-10


@pytest.mark.parametrize(
    "n,d,k", [(800, 50, 6), (500, 10, 3)]
)  # d > 25: skdim's sorting path; d <= 25: its kNN
def test_agrees_with_skdim(n, d, k):
    x = planted_subspace(n, k, d, noise=0.01, seed=n)
    for frac in (0.1, 0.3):
        ref = skdim.id.TwoNN(discard_fraction=frac).fit(x).dimension_
        assert twonn(x, discard_fraction=frac).value == pytest.approx(ref, rel=SKDIM_RTOL)
    for nn in (5, 20):
        for comb in ("mle", "mean", "median"):
            ref = skdim.id.MLE().fit(x, n_neighbors=nn, comb=comb).dimension_
            assert mle_id(x, n_neighbors=nn, comb=comb).value == pytest.approx(ref, rel=SKDIM_RTOL)


def test_planted_subspace_within_15_percent():
    x = planted_subspace(4000, 5, 100, noise=1e-3)
    both = run_measures(lambda: [x], ["twonn", "mle_id"])
    for r in both.values():
        assert r.value == pytest.approx(5, rel=0.15)
        assert r.note == ""


def test_knn_exact_against_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 7)) * 100 + 1e4  # large offset: float32 candidates, float64 distances
    dist, idx = knn(x, 4)
    full = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=1e-12)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :4])


def test_subsample_is_stated_and_chunking_invariant():
    x = planted_subspace(1000, 4, 20, noise=0.01)
    whole = twonn(x, max_rows=300, seed=3)
    chunks = run_measures(
        lambda: (x[i : i + 37] for i in range(0, 1000, 37)), ["twonn"], max_rows=300, seed=3
    )["twonn"]
    assert whole.value == chunks.value
    assert "subsampled 300 of 1000" in whole.note
    assert twonn(x, max_rows=300, seed=4).value != whole.value


def test_duplicates_dropped():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    x = np.concatenate([x, x[:10]])
    r = twonn(x)
    assert r.fields["n_duplicates"] == 20


def test_too_few_rows():
    with pytest.raises(NeurometryError, match="at least 3 rows"):
        twonn(np.random.default_rng(0).normal(size=(2, 5)))
    with pytest.raises(NeurometryError, match="at least 21 rows"):
        mle_id(np.random.default_rng(0).normal(size=(20, 5)))
    with pytest.raises(NeurometryError, match="discard_fraction"):
        twonn(np.random.default_rng(0).normal(size=(20, 5)), discard_fraction=0.0)
