"""Semi-NMF, PCA and ICA decompositions: planted factorisations recovered, closed-form PCA FVU,
scipy's NNLS, independent sources unmixed, and the user errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment, nnls

from neurometry.errors import NeurometryError
from neurometry.features.decompositions import (
    DECOMPOSITIONS,
    ICADecomposition,
    PCADecomposition,
    SemiNMF,
    fit_decomposition,
)
from neurometry.features.metrics import reconstruction_metrics

N_PLANTED, D_PLANTED, M_PLANTED, DENSITY = 400, 30, 5, 0.3


def planted_rows(n: int, basis: np.ndarray, rng: np.random.Generator, noise: float = 1e-4):
    """Rows x = z F^T + noise with sparse nonnegative codes z (each entry active with p = 0.3)."""
    codes = rng.exponential(1.0, (n, basis.shape[1])) * (rng.random((n, basis.shape[1])) < DENSITY)
    return codes @ basis.T + noise * rng.normal(size=(n, basis.shape[0])), codes


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(D_PLANTED, M_PLANTED))  # F (d, m), real-valued
    x, codes = planted_rows(N_PLANTED, basis, rng)
    heldout, heldout_codes = planted_rows(200, basis, rng)
    return x, basis, codes, heldout, heldout_codes


@pytest.fixture(scope="module")
def sparse_fit(planted):
    return SemiNMF(M_PLANTED, max_iter=500, l1=0.01, seed=0).fit(planted[0])


@pytest.fixture(scope="module")
def plain_fit(planted):
    return SemiNMF(M_PLANTED, max_iter=500, seed=0).fit(planted[0])


def matched_abs_cosines(planted_columns: np.ndarray, components: np.ndarray) -> np.ndarray:
    """|cosine| of each planted column (d, m) with its Hungarian-matched fitted row of components (m, d)."""
    a = planted_columns / np.linalg.norm(planted_columns, axis=0)
    b = components / np.linalg.norm(components, axis=1, keepdims=True)
    similarity = np.abs(a.T @ b.T)
    rows, cols = linear_sum_assignment(-similarity)
    return similarity[rows, cols]


def objective(model: SemiNMF, x: np.ndarray, codes: np.ndarray) -> float:
    return float(((x - model.inverse_transform(codes)) ** 2).sum() + model.penalty_ * codes.sum())


# -- semi-NMF ------------------------------------------------------------------------------------


def test_sparse_semi_nmf_recovers_the_planted_factorisation(planted, sparse_fit) -> None:
    x, basis, *_ = planted
    model = sparse_fit
    metrics = reconstruction_metrics(x, model.inverse_transform(model.codes_), model.codes_)
    assert metrics.fvu < 1e-3  # measured 5.8e-5: the L1 shrinkage, noise alone gives ~1e-9
    cosines = matched_abs_cosines(basis, model.components_)
    assert cosines.min() >= 0.99  # measured 0.99979 (worst of 5)
    assert model.components_.shape == (M_PLANTED, D_PLANTED)
    np.testing.assert_allclose(np.linalg.norm(model.components_, axis=1), 1.0, atol=1e-12)
    assert (model.codes_ >= 0).all()


@pytest.mark.parametrize("fit", ["sparse_fit", "plain_fit"])
def test_semi_nmf_objective_never_increases(fit, planted, request) -> None:
    model = request.getfixturevalue(fit)
    history = np.array(model.objective_history_)
    assert len(history) == model.n_iter_ + 1 >= 50
    assert np.all(np.diff(history) <= 0), f"largest rise {np.diff(history).max():.3e}"
    assert history[-1] < 0.05 * history[0]  # measured 0.022 (l1 = 0.01: the L1 term stays) and 5e-6
    # the last entry is the objective of the returned factors (the final unit-norm rescaling of the
    # components only moves magnitude into the codes, which cannot raise the L1 term)
    final = objective(model, planted[0], model.codes_)
    assert final <= history[-1] * (1 + 1e-9)
    assert final == pytest.approx(history[-1], rel=1e-6)


def test_plain_semi_nmf_fits_exactly_and_its_cone_contains_the_planted_features(planted, plain_fit) -> None:
    # With l1 = 0 (Ding et al. as published) any cone around the data fits equally well, so the
    # planted directions need not be components; they must be nonnegative combinations of them.
    x, basis, *_ = planted
    model = plain_fit
    fvu = reconstruction_metrics(x, model.inverse_transform(model.codes_), model.codes_).fvu
    assert fvu < 1e-3  # measured 2.4e-6
    for k in range(M_PLANTED):
        _, residual = nnls(model.components_.T, basis[:, k])
        assert residual / np.linalg.norm(basis[:, k]) < 1e-2  # measured <= 8.2e-6 (the noise)


def test_transform_gives_nonnegative_codes_that_reconstruct_heldout_rows(planted, sparse_fit) -> None:
    *_, heldout, heldout_codes = planted
    codes = sparse_fit.transform(heldout)
    assert codes.shape == (200, M_PLANTED) and (codes >= 0).all()
    metrics = reconstruction_metrics(heldout, sparse_fit.inverse_transform(codes), codes)
    assert metrics.fvu < 1e-2  # measured 6.8e-5
    # projected gradient reaches exact zeros (the multiplicative rule only approaches them): the
    # support follows the planted one; L0 measured 1.78 against the planted 1.45
    similarity = np.abs(planted[1].T @ sparse_fit.components_.T)
    matched = codes[:, linear_sum_assignment(-similarity)[1]]
    assert (matched[heldout_codes > 0] > 0).mean() >= 0.95  # measured 0.98
    assert (matched[heldout_codes == 0] == 0).mean() >= 0.8  # measured 0.90


def test_transform_solves_nonnegative_least_squares_like_scipy(planted, plain_fit) -> None:
    heldout = planted[3]
    codes = plain_fit.transform(heldout)
    reference = np.array([nnls(plain_fit.components_.T, row)[0] for row in heldout])
    np.testing.assert_allclose(codes, reference, atol=1e-6 * np.abs(reference).max())  # measured 4.5e-8


def test_penalised_transform_meets_the_optimality_conditions(planted, sparse_fit) -> None:
    # KKT of min ||x - z F^T||^2 + lam * sum(z), z >= 0: gradient 0 where z > 0 and >= 0 where z = 0
    heldout = planted[3]
    codes = sparse_fit.transform(heldout)
    f = sparse_fit.components_.T
    gradient = 2 * (codes @ f.T - heldout) @ f + sparse_fit.penalty_
    scale = sparse_fit.penalty_
    assert np.abs(gradient[codes > 0]).max() < 1e-4 * scale  # measured 6e-6 * scale
    assert gradient[codes == 0].min() > -1e-4 * scale  # measured +7.5e-3 * scale (no violation)


def test_seeded_fit_is_deterministic_and_subsamples_to_max_rows(planted) -> None:
    x = planted[0]
    first = SemiNMF(3, max_iter=30, seed=4, max_rows=150).fit(x)
    second = SemiNMF(3, max_iter=30, seed=4, max_rows=150).fit(torch.from_numpy(x))
    assert first.n_rows_fit_ == 150 and first.codes_.shape == (150, 3)
    np.testing.assert_array_equal(first.components_, second.components_)
    assert SemiNMF(3, max_iter=30, seed=4).fit(x).n_rows_fit_ == N_PLANTED
    assert first.transform(x).shape == (N_PLANTED, 3)  # transform encodes every row


# -- PCA and ICA baselines -----------------------------------------------------------------------


def test_pca_at_the_rank_of_the_rows_reconstructs_them() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 20)) + rng.normal(size=20) * 5
    model = fit_decomposition("pca", x, 6)
    codes = model.transform(x)
    assert reconstruction_metrics(x, model.inverse_transform(codes), codes).fvu < 1e-10  # measured 1.1e-29


def test_pca_fvu_is_the_discarded_eigenvalue_share() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 12)) * np.linspace(0.2, 3.0, 12) @ rng.normal(size=(12, 12))
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    for m in (1, 4, 9):
        model = PCADecomposition(m).fit(x)
        codes = model.transform(x)
        fvu = reconstruction_metrics(x, model.inverse_transform(codes), codes).fvu
        assert fvu == pytest.approx(eigenvalues[m:].sum() / eigenvalues.sum(), rel=1e-10)  # measured 2e-14


def test_ica_unmixes_planted_laplace_sources() -> None:
    rng = np.random.default_rng(3)
    sources = rng.laplace(size=(2000, 3))
    x = sources @ rng.normal(size=(3, 8)) + 0.01 * rng.normal(size=(2000, 8))
    model = ICADecomposition(3, seed=0).fit(x)
    codes = model.transform(x)
    correlation = np.abs(np.corrcoef(sources.T, codes.T)[:3, 3:])
    rows, cols = linear_sum_assignment(-correlation)
    assert correlation[rows, cols].min() >= 0.95  # measured >= 0.9993
    assert model.components_.shape == (3, 8) and model.converged_
    # the reconstruction is the projection on the top-3 principal subspace, as PCA's
    pca = PCADecomposition(3).fit(x)
    pca_codes = pca.transform(x)
    fvu_ica = reconstruction_metrics(x, model.inverse_transform(codes), codes).fvu
    fvu_pca = reconstruction_metrics(x, pca.inverse_transform(pca_codes), pca_codes).fvu
    assert fvu_ica == pytest.approx(fvu_pca, rel=1e-8)


def test_registry_fits_every_method_through_one_interface(planted) -> None:
    x = planted[0]
    assert set(DECOMPOSITIONS) == {"semi_nmf", "pca", "ica"}
    for name, cls in DECOMPOSITIONS.items():
        options = {"max_iter": 50} if name == "semi_nmf" else {}
        model = fit_decomposition(name, x, 4, max_rows=200, **options)
        assert isinstance(model, cls) and model.n_rows_fit_ == 200
        codes = model.transform(x)
        assert codes.shape == (N_PLANTED, 4) and model.components_.shape == (4, D_PLANTED)
        metrics = reconstruction_metrics(x, model.inverse_transform(codes), codes)
        assert 0 <= metrics.fvu < 0.5  # 4 of the 5 planted directions: measured 0.086, 0.072, 0.072


# -- errors --------------------------------------------------------------------------------------


def test_unknown_decomposition_names_the_known_ones(planted) -> None:
    with pytest.raises(NeurometryError, match=r"unknown decomposition 'semi-nmf'.*semi_nmf, pca, ica"):
        fit_decomposition("semi-nmf", planted[0], 3)
    with pytest.raises(NeurometryError, match="pca does not take option.*whiten"):
        fit_decomposition("pca", planted[0], 3, whiten=True)


def test_non_finite_rows_are_refused(planted) -> None:
    x = planted[0].copy()
    x[7, 2] = np.nan
    for name in DECOMPOSITIONS:
        with pytest.raises(NeurometryError, match="row 7 contains NaN or Inf"):
            fit_decomposition(name, x, 3)
    model = PCADecomposition(3).fit(planted[0])
    x[7, 2] = np.inf
    with pytest.raises(NeurometryError, match="row 7 contains NaN or Inf"):
        model.transform(x)


def test_too_few_rows_and_bad_sizes_are_refused(planted) -> None:
    x = planted[0]
    with pytest.raises(NeurometryError, match="n_components=5 needs at least that many rows, got 4"):
        fit_decomposition("semi_nmf", x[:4], 5)
    with pytest.raises(NeurometryError, match="at least 2 rows"):
        fit_decomposition("pca", x[:1], 1)
    with pytest.raises(NeurometryError, match="n_components must be a positive integer"):
        fit_decomposition("ica", x, 0)
    with pytest.raises(NeurometryError, match="exceeds the 30 features"):
        fit_decomposition("pca", x, 31)
    with pytest.raises(NeurometryError, match="not fitted yet"):
        SemiNMF(3).transform(x)
    model = PCADecomposition(3).fit(x)
    with pytest.raises(NeurometryError, match="rows have 29 features but .* fitted on 30"):
        model.transform(x[:, :29])
    with pytest.raises(NeurometryError, match="codes have 2 columns but .* has 3 components"):
        model.inverse_transform(np.zeros((5, 2)))
