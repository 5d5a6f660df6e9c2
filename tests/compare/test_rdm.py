"""RDMs: agreement with rsatoolbox's calc_rdm / noise estimates and scipy's pdist, crossnobis
unbiasedness on planted distances, take() with repeats, loading .npy / .mat files, and user errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from scipy.spatial.distance import pdist, squareform

from neurometry.compare import rdm as rdm_module
from neurometry.compare.rdm import (
    RDM,
    compute_rdm,
    is_rdm_array,
    load_rdms,
    noise_covariance,
    noise_precision,
)
from neurometry.errors import NeurometryError
from tests.conftest import KRIEGESKORTE_MAT

TOL = 1e-6  # the agreement the contract asks of RDMs against rsatoolbox (they agree to ~1e-13)


def _structured(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) @ rng.normal(size=(4, d)) + rng.normal(size=(n, d)) + 2.0


def _dataset(x: np.ndarray):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    return rsatoolbox.data.Dataset(x)


@pytest.mark.parametrize("method", ["correlation", "euclidean"])
def test_rdm_equals_rsatoolbox(method: str) -> None:
    from rsatoolbox.rdm import calc_rdm

    x = _structured(40, 25)
    ours = compute_rdm(x, method).dissimilarities
    theirs = calc_rdm(_dataset(x), method).get_vectors()[0]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
    # euclidean is rsatoolbox's squared distance / n_features; sqeuclidean the plain squared distance
    if method == "euclidean":
        np.testing.assert_allclose(ours * 25, compute_rdm(x, "sqeuclidean").dissimilarities, rtol=1e-12)


def test_mahalanobis_equals_rsatoolbox_given_and_estimated_noise() -> None:
    from rsatoolbox.data.noise import prec_from_residuals
    from rsatoolbox.rdm import calc_rdm

    rng = np.random.default_rng(1)
    x = _structured(30, 20, seed=1)
    residuals = rng.normal(size=(60, 20)) @ (np.eye(20) + 0.3 * rng.normal(size=(20, 20)))
    precision = noise_precision(residuals)
    ours = compute_rdm(x, "mahalanobis", noise=precision).dissimilarities
    theirs = calc_rdm(_dataset(x), "mahalanobis", noise=precision).get_vectors()[0]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
    # default: the shrinkage-to-diagonal covariance of x's own rows, as prec_from_residuals(x)
    estimated = calc_rdm(_dataset(x), "mahalanobis", noise=prec_from_residuals(x, method="shrinkage_diag"))
    np.testing.assert_allclose(
        compute_rdm(x, "mahalanobis").dissimilarities, estimated.get_vectors()[0], rtol=0, atol=TOL
    )


@pytest.mark.parametrize(
    ("ours", "theirs"), [("diag", "shrinkage_diag"), ("eye", "shrinkage_eye"), (0.0, "full"), (1.0, "diag")]
)
def test_noise_precision_equals_rsatoolbox(ours, theirs) -> None:
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.data.noise import cov_from_residuals, prec_from_residuals

    rng = np.random.default_rng(2)
    residuals = rng.normal(size=(50, 12)) @ (np.eye(12) + 0.4 * rng.normal(size=(12, 12)))
    for dof in (None, 40):
        expected = prec_from_residuals(residuals, dof=dof, method=theirs)
        got = noise_precision(residuals, ours, dof=dof)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
        np.testing.assert_allclose(
            noise_covariance(residuals, ours, dof=dof),
            cov_from_residuals(residuals, dof=dof, method=theirs),
            rtol=1e-9,
        )


def test_cosine_and_sqeuclidean_equal_scipy() -> None:
    x = _structured(50, 9)
    np.testing.assert_allclose(compute_rdm(x, "cosine").dissimilarities, pdist(x, "cosine"), atol=1e-12)
    np.testing.assert_allclose(
        compute_rdm(x, "sqeuclidean").dissimilarities, pdist(x, "sqeuclidean"), rtol=1e-10, atol=1e-10
    )


def test_blocked_path_equals_scipy(monkeypatch) -> None:
    # force the row-block products used for large n (and the non-symmetric mahalanobis product)
    monkeypatch.setattr(rdm_module, "_SYRK_MAX_N", 10)
    monkeypatch.setattr(rdm_module, "_BLOCK_ELEMENTS", 200)
    x = _structured(83, 7)
    np.testing.assert_allclose(
        compute_rdm(x, "correlation").dissimilarities, pdist(x, "correlation"), atol=1e-12
    )
    np.testing.assert_allclose(
        compute_rdm(x, "sqeuclidean").dissimilarities, pdist(x, "sqeuclidean"), rtol=1e-10, atol=1e-10
    )
    cov = np.cov(x.T)
    np.testing.assert_allclose(
        compute_rdm(x, "mahalanobis", noise=np.linalg.inv(cov)).dissimilarities * 7,
        pdist(x, "mahalanobis", VI=np.linalg.inv(cov)) ** 2,
        rtol=1e-9,
    )


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # inside rsatoolbox's Dataset
def test_crossnobis_equals_rsatoolbox_and_both_input_layouts_agree() -> None:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    rng = np.random.default_rng(3)
    k, n, d = 4, 9, 15
    data = rng.normal(size=(n, d))[None] + rng.normal(size=(k, n, d))
    precision = noise_precision(rng.normal(size=(80, d)))
    descriptors = {"condition": np.tile(np.arange(n), k), "run": np.repeat(np.arange(k), n)}
    dataset = Dataset(data.reshape(k * n, d), obs_descriptors=descriptors)
    for noise in (None, precision):
        theirs = calc_rdm(dataset, "crossnobis", descriptor="condition", cv_descriptor="run", noise=noise)
        ours = compute_rdm(data, "crossnobis", noise=noise)
        np.testing.assert_allclose(ours.dissimilarities, theirs.get_vectors()[0], rtol=0, atol=TOL)
    # 2-D rows with partition labels, partitions interleaved (condition-major rows): the same RDM
    flat, labels = data.transpose(1, 0, 2).reshape(n * k, d), np.tile(["run2", "run1", "run3", "run4"], n)
    interleaved = compute_rdm(flat, "crossnobis", partitions=labels)
    np.testing.assert_allclose(
        interleaved.dissimilarities, compute_rdm(data, "crossnobis").dissimilarities, atol=1e-12
    )


def test_crossnobis_is_unbiased_on_planted_distances() -> None:
    # condition means with known squared distances; iid unit noise in each of 4 partitions. The plain
    # distance of the partition means is biased up by 2 sigma^2 / K = 0.5 (per feature); crossnobis is not.
    rng = np.random.default_rng(4)
    n, d, k, repeats = 6, 40, 4, 300
    means = rng.normal(size=(n, d))
    truth = pdist(means, "sqeuclidean") / d
    cross, naive = [], []
    for _ in range(repeats):
        data = means[None] + rng.normal(size=(k, n, d))
        cross.append(compute_rdm(data, "crossnobis").dissimilarities)
        naive.append(compute_rdm(data.mean(axis=0), "euclidean").dissimilarities)
    cross, naive = np.array(cross), np.array(naive)
    standard_error = cross.std(axis=0) / np.sqrt(repeats)  # about 0.02 here
    assert np.all(np.abs(cross.mean(axis=0) - truth) < 4 * standard_error)
    assert np.all(np.abs(cross.mean(axis=0) - truth) < 0.08)
    assert np.all(naive.mean(axis=0) - truth > 0.4)  # the bias crossnobis removes
    # pure noise: no true distance, crossnobis averages ~0 (and is negative about half the time)
    noise_only = np.array(
        [compute_rdm(rng.normal(size=(k, n, d)), "crossnobis").dissimilarities for _ in range(200)]
    )
    assert abs(noise_only.mean()) < 0.01
    assert 0.3 < (noise_only < 0).mean() < 0.7


def test_square_round_trip_and_take_with_repeats() -> None:
    x = _structured(7, 5)
    rdm = compute_rdm(x, "euclidean")
    square = rdm.square()
    assert square.shape == (7, 7) and np.allclose(square, square.T) and not np.diagonal(square).any()
    np.testing.assert_array_equal(RDM.from_square(square).dissimilarities, rdm.dissimilarities)
    np.testing.assert_array_equal(squareform(rdm.dissimilarities), square)
    rows = np.array([3, 0, 3, 6, 1])
    taken = rdm.take(rows)
    assert taken.n_conditions == 5
    expected = square[np.ix_(rows, rows)]
    got = taken.square()
    same_condition = rows[:, None] == rows[None, :]
    off_diagonal = ~np.eye(5, dtype=bool)
    # pairs of two draws of one condition are NaN, every other pair is the original dissimilarity
    assert np.isnan(got[same_condition & off_diagonal]).all()
    np.testing.assert_array_equal(got[~same_condition], expected[~same_condition])
    # a permutation reorders exactly
    perm = np.random.default_rng(0).permutation(7)
    np.testing.assert_array_equal(rdm.take(perm).square(), square[np.ix_(perm, perm)])
    with pytest.raises(NeurometryError, match=r"rows must lie in \[0, 7\)"):
        rdm.take(np.array([0, 7]))


def test_user_errors_are_one_line_and_name_the_fix() -> None:
    square = squareform(np.arange(1.0, 11.0))
    with pytest.raises(NeurometryError, match="not symmetric"):
        asym = square.copy()
        asym[0, 1] += 1
        RDM.from_square(asym)
    with pytest.raises(NeurometryError, match="diagonal entry"):
        RDM.from_square(square + np.eye(5))
    with pytest.raises(NeurometryError, match="not n\\(n-1\\)/2"):
        RDM.from_condensed(np.arange(7.0))
    with pytest.raises(NeurometryError, match="NaN or Inf"):
        RDM.from_condensed(np.r_[np.arange(9.0), np.nan])
    with pytest.raises(NeurometryError, match="at least 3"):
        RDM.from_condensed(np.array([1.0]))
    with pytest.raises(NeurometryError, match="at least 3"):
        compute_rdm(np.ones((2, 4)))
    with pytest.raises(NeurometryError, match="did you mean correlation"):
        compute_rdm(_structured(5, 3), "correlaton")
    with pytest.raises(NeurometryError, match="row 1 is constant"):
        compute_rdm(np.array([[1.0, 2, 3], [5, 5, 5], [0, 1, 0]]), "correlation")
    with pytest.raises(NeurometryError, match="contains NaN"):
        compute_rdm(np.array([[1.0, 2], [np.nan, 1], [0, 1]]), "euclidean")
    with pytest.raises(NeurometryError, match="repeated measurements"):
        compute_rdm(_structured(5, 3), "crossnobis")
    with pytest.raises(NeurometryError, match="at least 2 partitions"):
        compute_rdm(np.ones((1, 5, 3)), "crossnobis")
    with pytest.raises(NeurometryError, match="one row per condition"):
        compute_rdm(np.ones((7, 3)), "crossnobis", partitions=[0, 0, 0, 0, 1, 1, 1])
    with pytest.raises(NeurometryError, match="apply to mahalanobis and crossnobis"):
        compute_rdm(_structured(5, 3), "euclidean", noise=np.eye(3))
    with pytest.raises(NeurometryError, match=r"\(3, 3\) precision"):
        compute_rdm(_structured(5, 3), "mahalanobis", noise=np.eye(4))
    with pytest.raises(NeurometryError, match="singular"):
        noise_precision(np.random.default_rng(0).normal(size=(4, 10)), 0.0)
    with pytest.raises(NeurometryError) as caught:
        compute_rdm(_structured(5, 3), "cosin")
    assert "\n" not in str(caught.value) and "methods: correlation, cosine" in str(caught.value)


def test_is_rdm_array() -> None:
    square = squareform(np.arange(1.0, 11.0))
    assert is_rdm_array(square.astype(np.float32))
    assert is_rdm_array(np.arange(10.0))  # condensed, n = 5
    assert is_rdm_array(np.stack([square, 2 * square]))
    assert not is_rdm_array(np.arange(11.0))  # not a triangular number
    assert not is_rdm_array(np.random.default_rng(0).normal(size=(5, 5)))  # activations
    assert not is_rdm_array(square + np.eye(5))
    assert not is_rdm_array(np.ones((10, 3)))
    assert not is_rdm_array(np.array(["a", "b", "c"]))


def test_load_rdms_npy_layouts(tmp_path) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.random((3, 15))  # 3 subjects, 6 conditions
    np.save(tmp_path / "condensed.npy", vectors[0])
    np.save(tmp_path / "square.npy", squareform(vectors[0]))
    np.save(tmp_path / "stack2d.npy", vectors)
    np.save(tmp_path / "stack3d.npy", np.stack([squareform(v) for v in vectors]))
    for stem in ("condensed", "square"):
        loaded = load_rdms(tmp_path / f"{stem}.npy")
        assert list(loaded) == [stem] and loaded[stem].n_conditions == 6
        np.testing.assert_array_equal(loaded[stem].dissimilarities, vectors[0])
    for stem in ("stack2d", "stack3d"):
        loaded = load_rdms(tmp_path / f"{stem}.npy")
        assert list(loaded) == [f"{stem}_0", f"{stem}_1", f"{stem}_2"]
        np.testing.assert_array_equal(np.stack([r.dissimilarities for r in loaded.values()]), vectors)
    bad = squareform(vectors[0])
    bad[0, 1] = 9
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(NeurometryError, match="not symmetric"):
        load_rdms(tmp_path / "bad.npy")
    np.save(tmp_path / "odd.npy", rng.random((3, 7)))
    with pytest.raises(NeurometryError, match="neither a square RDM nor a stack"):
        load_rdms(tmp_path / "odd.npy")
    with pytest.raises(NeurometryError, match="does not exist"):
        load_rdms(tmp_path / "missing.npy")


def test_load_rdms_mat_struct_and_numeric(tmp_path) -> None:
    rng = np.random.default_rng(6)
    vectors = rng.random((2, 10))
    records = np.zeros(2, dtype=[("name", object), ("RDM", object)])
    records[0] = ("V1", squareform(vectors[0]))
    records[1] = ("IT", vectors[1])
    path = tmp_path / "rdms.mat"
    scipy.io.savemat(path, {"roi_rdms": records, "plain": squareform(vectors[1]), "labels": np.arange(3.0)})
    loaded = load_rdms(path, "roi_rdms")
    assert list(loaded) == ["V1", "IT"]
    np.testing.assert_allclose(loaded["V1"].dissimilarities, vectors[0])
    np.testing.assert_allclose(loaded["IT"].dissimilarities, vectors[1])
    np.testing.assert_allclose(load_rdms(path, "plain")["plain"].dissimilarities, vectors[1])
    with pytest.raises(
        NeurometryError, match="holds 3 variables; name one with key.*labels, plain, roi_rdms"
    ):
        load_rdms(path)
    with pytest.raises(NeurometryError, match="no variable 'roi_rdm' \\(did you mean roi_rdms"):
        load_rdms(path, "roi_rdm")


@pytest.mark.skipif(not KRIEGESKORTE_MAT.exists(), reason="Kriegeskorte et al. 2008 .mat not in shared data")
def test_load_rdms_kriegeskorte_2008() -> None:
    loaded = load_rdms(KRIEGESKORTE_MAT, "RDMs_mIT_hIT_fig1")
    assert list(loaded) == ["mIT_674neurons", "hITvisStim_316vx"]
    raw = scipy.io.loadmat(KRIEGESKORTE_MAT, struct_as_record=False, squeeze_me=True)["RDMs_mIT_hIT_fig1"]
    for element, rdm in zip(raw, loaded.values(), strict=True):
        assert rdm.n_conditions == 92 and len(rdm.dissimilarities) == 4186
        np.testing.assert_array_equal(rdm.dissimilarities, element.RDM)
    with pytest.raises(NeurometryError, match="RDMs_mIT_hIT_fig1"):
        load_rdms(KRIEGESKORTE_MAT, "missing_key")


@pytest.mark.parametrize("offset", [0.0, 3.0, 30.0])
@pytest.mark.parametrize("method", ["correlation", "cosine"])
def test_few_conditions_gram_path_equals_centred_rows(method, offset, monkeypatch) -> None:
    # (n - 1) / 2 <= d takes the Gram-normalising path; offset 30 makes the row means large next to their
    # spread (mean^2 * d / spread^2 ~ 900), so correlation must fall back to centring the rows
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 64)) + offset * rng.uniform(0.5, 1.5, size=(40, 1))
    fast = compute_rdm(x, method).dissimilarities
    expected = pdist(x, method)
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-12)
    used = []
    original = rdm_module._few_conditions_rdm
    monkeypatch.setattr(
        rdm_module, "_few_conditions_rdm", lambda r, m: used.append(original(r, m)) or used[-1]
    )
    compute_rdm(x, method)
    took_fast_path = used[0] is not None
    assert took_fast_path == (method == "cosine" or offset < 30.0)
    x[7] = 5.0  # a constant row: no correlation distance, whichever path runs
    if method == "correlation":
        with pytest.raises(NeurometryError, match="row 7 is constant"):
            compute_rdm(x, method)
