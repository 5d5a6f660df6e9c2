"""The screened kNN (bf16 / float32 candidates, certified) equals a float64 brute-force kNN exactly."""

import numpy as np
import pytest
import torch

from neurometry.measures import intrinsic_dimension as idm

torch.set_num_threads(2)

MODES = ["f32"] + (["bf16"] if idm._bf16_fast() else [])


def brute(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    full = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    idx = np.argsort(full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, idx, 1), idx, full


def check_exact(x: np.ndarray, k: int) -> None:
    dist, idx = idm.knn(x, k)
    ref_d, ref_i, full = brute(x, k)
    # distances: equal to float64 rounding; indices: equal up to ties (each one at its stated distance)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.take_along_axis(full, idx, 1), dist, rtol=1e-12, atol=1e-300)
    assert (idx != np.arange(len(x))[:, None]).all()
    assert all(len(set(r)) == k for r in idx)
    # where the k-th distance is not tied with anything (within 1e-9), the neighbour sets are equal
    kth = full <= ref_d[:, -1:] * (1 + 1e-9)
    clear = kth.sum(1) == k
    assert clear.mean() > 0.2
    np.testing.assert_array_equal(np.sort(idx[clear], 1), np.sort(ref_i[clear], 1))


def adversarial(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lattice = rng.integers(0, 3, size=(500, 30)).astype(float)  # integer points: many exact ties
    near = rng.normal(size=(400, 30)) * 1e-3 + 5.0  # a tight cluster far from the centre
    base = rng.normal(size=(500, 30))
    dup = base[:100].copy()  # exact duplicates
    tie = base[:100] + 1e-9 * rng.normal(size=(100, 30))  # near-duplicates: near-ties at tiny scale
    x = np.concatenate([lattice, near, base, dup, tie]) + 1e4  # large common offset
    x[7] = 1e7  # one very large-norm outlier (and its own row)
    x[8] = -3e5
    return x[rng.permutation(len(x))]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    monkeypatch.setattr(idm, "BRUTE_MAX_ROWS", 0)  # screen even small data
    monkeypatch.setattr(idm, "_FAST_BF16", request.param == "bf16")
    return request.param


@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_adversarial_equals_brute_force(mode, k):
    x = adversarial()
    check_exact(x, k)
    st = idm.KNN_STATS
    # both paths run: most rows certified by the screen, the tight far cluster and tie-heavy rows not
    assert st["outliers"] >= 2 and 0 < st[f"failed_{mode}"] < st[f"screened_{mode}"] == len(x)


def test_planted_subspace_equals_brute_force_and_rarely_fails(mode):
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(size=(64, 6)))[0]
    x = rng.normal(size=(2500, 6)) @ basis.T + 0.01 * rng.normal(size=(2500, 64))
    for k in (2, 20):
        check_exact(x, k)
        st = idm.KNN_STATS
        assert st[f"screened_{mode}"] == len(x)
        assert st.get(f"failed_{mode}", 0) <= 0.01 * len(x), st
        # pruning by per-pair intervals leaves fewer exact distances than candidates (k + m + 2 a row)
        assert st[f"exact_pairs_{mode}"] < (st["candidates"] + 2) * len(x), st


def test_every_row_failing_still_exact(monkeypatch):
    """A useless certificate (bound inflated) sends every row to the full float64 search."""
    monkeypatch.setattr(idm, "BRUTE_MAX_ROWS", 0)
    monkeypatch.setattr(idm, "_UNDERFLOW", 1.0)
    x = adversarial(1)[:1200]
    check_exact(x, 3)
    assert idm.KNN_STATS["brute"] == len(x)


@pytest.mark.parametrize("m", MODES)
def test_screen_bound_holds_for_every_pair(m):
    """The stated bound: |c_ij / (1 +- u_out) - ||z~_i - z~_j||^2| <= B_i, checked on all pairs."""
    x = torch.from_numpy(adversarial(2))
    xc = x - x.mean(0)
    norms = torch.linalg.vector_norm(xc, dim=1)
    out = torch.nonzero(norms > 2 * torch.topk(norms, 33).values[-1]).flatten()
    scr = idm._Screen(xc, m, out, float(norms.max()))
    n, d = xc.shape
    rows = torch.arange(0, n, 7)
    c = torch.mm(scr.a, scr.q[rows].T).double()[:n]  # (n, r)
    z = scr.q[:, :d].double() / -2  # the rounded rows (outliers included; their a-rows are dummies)
    exact = torch.cdist(z[rows], z, compute_mode="donot_use_mm_for_euclid_dist").T ** 2
    keep = torch.ones(n, dtype=torch.bool)
    keep[out] = False
    lo = c / (1 + scr.u_out) - scr.bound[rows]
    hi = torch.where(c > 0, c / (1 - scr.u_out), c * (1 + scr.u_out)) + scr.bound[rows]
    assert (exact[keep] >= lo[keep]).all() and (exact[keep] <= hi[keep]).all()
    # and input rounding: eps_i = ||x~_i - (x_i - mean)|| in data units
    back = z * 2.0**scr.e
    np.testing.assert_allclose(torch.linalg.vector_norm(back - xc, dim=1), scr.eps, rtol=1e-6)
    # far from 1 the data are scaled by a power of two, and the bound still holds
    big = idm._Screen(xc * 2.0**80, m, out, float(norms.max()) * 2.0**80)
    assert big.e > 0 and (big.eps > 0).all()
    cb = torch.mm(big.a, big.q[rows].T).double()[:n]
    lob = cb / (1 + big.u_out) - big.bound[rows]
    assert (exact[keep] * 2.0 ** (160 - 2 * big.e) >= lob[keep]).all()


@pytest.mark.parametrize("dt,u_out", [(torch.float32, 0.0), (torch.bfloat16, 2.0**-8)])
def test_matmul_accumulates_in_float32(dt, u_out):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 416, generator=g).to(dt)
    b = torch.randn(128, 416, generator=g).to(dt)
    assert idm._accumulates_in_f32(a, b, u_out)


def test_nan_rejected():
    x = np.zeros((10, 3))
    x[2, 1] = np.nan
    with pytest.raises(idm.NeurometryError, match="NaN"):
        idm.knn(x, 2)
