"""Shape metrics (Williams et al. 2021): invariances, closed forms, metric axioms, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from neurometry.compare.registry import METRICS
from neurometry.compare.shape import permutation_distance, procrustes
from neurometry.errors import NeurometryError


def _rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20210607)


# ---- procrustes ------------------------------------------------------------------------------------


def test_procrustes_zero_under_rotation_translation_and_scaling(rng):
    x = rng.standard_normal((60, 7))
    q = ortho_group.rvs(7, random_state=3)
    assert procrustes(x, x @ q) < 1e-7
    assert procrustes(x, 3.5 * x @ q + rng.standard_normal(7)) < 1e-7
    # a reflection is an orthogonal map too
    assert procrustes(x, x * np.r_[-1.0, np.ones(6)]) < 1e-7
    # near zero the angle comes from the aligned residual, not arccos(1 - rounding) ~ 2e-8
    for d in (7, 50, 120):
        wide = rng.standard_normal((300, d))
        turn = ortho_group.rvs(d, random_state=d)
        assert procrustes(wide, wide @ turn) < 1e-12
        assert procrustes(wide, wide @ turn, alpha=0.3) < 1e-12
    # different widths: y has the same shape plus an all-zero feature (netrep zero-pads)
    assert procrustes(x, np.c_[x @ q, np.zeros(60)]) < 1e-7


def test_procrustes_is_not_invariant_to_a_general_linear_map(rng):
    x = rng.standard_normal((80, 5))
    stretch = np.diag([1.0, 1.0, 1.0, 4.0, 0.25]) @ ortho_group.rvs(5, random_state=4)
    assert procrustes(x, x @ stretch) > 0.3
    # ... which full whitening (alpha=0) removes: any invertible map gives distance 0
    general = rng.standard_normal((5, 5)) + 3 * np.eye(5)
    assert procrustes(x, x @ stretch, alpha=0.0) < 1e-7
    assert procrustes(x, x @ general + 7.0, alpha=0.0) < 1e-7
    # partial whitening sits in between
    assert 1e-3 < procrustes(x, x @ stretch, alpha=0.5) < procrustes(x, x @ stretch)


def test_procrustes_closed_form_anisotropic_stretch():
    # X: points at +-1 on both axes; Y: the same points stretched x2 along the second axis, then rotated
    # by 30 degrees and translated. X^T Y_unrotated = diag(2, 4), nuclear norm 6; ||X|| = 2, ||Y|| = sqrt(10)
    # -> distance arccos(6 / (2 sqrt 10)) = arccos(3 / sqrt 10), whatever the rotation.
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    y = (x * [1.0, 2.0]) @ _rotation(np.pi / 6) + [5.0, -2.0]
    expected = np.arccos(3.0 / np.sqrt(10.0))
    assert procrustes(x, y) == pytest.approx(expected, abs=1e-12)
    assert procrustes(y, x) == pytest.approx(expected, abs=1e-12)


def test_procrustes_matches_2d_closed_form_over_rotations_and_reflections(rng):
    # In 2-D, max over rotations R(t) of <X R(t), Y> = sqrt((m11 + m22)^2 + (m12 - m21)^2) with M = X^T Y,
    # and over reflections sqrt((m11 - m22)^2 + (m12 + m21)^2); the best of the two is the aligned cosine.
    for _ in range(5):
        x = rng.standard_normal((20, 2))
        y = x @ rng.standard_normal((2, 2)) + 0.3 * rng.standard_normal((20, 2))
        xc, yc = x - x.mean(0), y - y.mean(0)
        m = xc.T @ yc
        best = max(
            np.hypot(m[0, 0] + m[1, 1], m[0, 1] - m[1, 0]), np.hypot(m[0, 0] - m[1, 1], m[0, 1] + m[1, 0])
        )
        expected = np.arccos(best / (np.linalg.norm(xc) * np.linalg.norm(yc)))
        assert procrustes(x, y) == pytest.approx(expected, abs=1e-10)


def test_procrustes_partial_whitening_matches_the_definition(rng):
    # X_phi = Xc (alpha I + (1 - alpha) (Xc^T Xc / n)^{-1/2}) by eigendecomposition, then the angle
    n = 70
    x = rng.standard_normal((n, 4)) @ rng.standard_normal((4, 4))
    y = rng.standard_normal((n, 3)) @ rng.standard_normal((3, 3)) + 0.5 * x[:, :3]

    def phi(a: np.ndarray, alpha: float) -> np.ndarray:
        ac = a - a.mean(0)
        lam, v = np.linalg.eigh(ac.T @ ac / n)
        return ac @ (alpha * np.eye(a.shape[1]) + (1 - alpha) * (v / np.sqrt(lam)) @ v.T)

    for alpha in (0.0, 0.3, 0.8, 1.0):
        xp, yp = phi(x, alpha), phi(y, alpha)
        nuclear = np.linalg.svd(xp.T @ yp, compute_uv=False).sum()
        expected = np.arccos(nuclear / (np.linalg.norm(xp) * np.linalg.norm(yp)))
        assert procrustes(x, y, alpha=alpha) == pytest.approx(expected, abs=1e-10)


def netrep_angle(x: np.ndarray, y: np.ndarray, alpha: float, center: bool = True) -> float:
    """netrep's ``LinearMetric(alpha).fit(x, y).score(x, y)`` re-derived from its definitions (Williams et al.
    2021 with netrep's ``whiten``): centre, zero-pad to one width, whiten each side with
    Z = V diag(alpha + (1 - alpha) lam^-1/2) V^T from the eigendecomposition of X^T X (no 1/n) with the
    eigenvalues floored at 1e-7 (none for alpha > 1 - 1e-7; netrep's variance-preserving rescale of Z
    does not change an angle), align by the orthogonal Procrustes rotation, and take the angle."""
    width = max(x.shape[1], y.shape[1])
    sides = []
    for a in (x, y):
        a = np.pad(a - a.mean(0) if center else a, ((0, 0), (0, width - a.shape[1])))
        if alpha <= 1 - 1e-7:
            lam, v = np.linalg.eigh(a.T @ a)
            lam = np.maximum(lam, 1e-7)
            a = a @ ((v * (alpha + (1 - alpha) / np.sqrt(lam))) @ v.T)
        sides.append(a)
    xw, yw = sides
    u, _, vt = np.linalg.svd(xw.T @ yw)
    aligned = xw @ u @ vt
    cosine = np.sum(aligned * yw) / (np.linalg.norm(aligned) * np.linalg.norm(yw))
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


def test_procrustes_netrep_scaling_equals_netrep(rng):
    # netrep whitens with X^T X, we (by default) with X^T X / n: for 0 < alpha < 1 the values differ,
    # and ours on X equal netrep's on X / sqrt(n); scaling="netrep" gives netrep's value on X itself
    n = 60
    x = rng.standard_normal((n, 6)) @ np.diag([3.0, 2.0, 1.0, 1.0, 0.5, 0.1])
    y = np.c_[x[:, :4] @ rng.standard_normal((4, 4)), rng.standard_normal((n, 1))] + 0.3 * rng.standard_normal((n, 5))
    for alpha in (0.0, 0.1, 0.5, 0.9, 1 - 1e-8, 1.0):
        assert procrustes(x, y, alpha=alpha, scaling="netrep") == pytest.approx(netrep_angle(x, y, alpha), abs=1e-10)
    for alpha in (0.1, 0.5, 0.9):
        ours, theirs = procrustes(x, y, alpha=alpha), netrep_angle(x, y, alpha)
        assert abs(ours - theirs) > 1e-3  # the claim the docstring makes: not netrep's value
        assert ours == pytest.approx(netrep_angle(x / np.sqrt(n), y / np.sqrt(n), alpha), abs=1e-10)
        assert ours == pytest.approx(
            procrustes(x / np.sqrt(n), y / np.sqrt(n), alpha=alpha, scaling="netrep"), abs=1e-10
        )
    # the scalings agree where the scale cannot matter
    for alpha in (0.0, 1.0):
        assert procrustes(x, y, alpha=alpha, scaling="netrep") == pytest.approx(procrustes(x, y, alpha=alpha), abs=1e-12)
    # netrep's eigenvalue floor: eigenvalues of X^T X below 1e-7 are not fully whitened
    tiny_x, tiny_y = x * 1e-5, y * 1e-5
    assert procrustes(tiny_x, tiny_y, alpha=0.5, scaling="netrep") == pytest.approx(
        netrep_angle(tiny_x, tiny_y, 0.5), abs=1e-10
    )
    # without centring too, and through the registry (the CLI's --scaling netrep)
    assert procrustes(x, y, alpha=0.4, center=False, scaling="netrep") == pytest.approx(
        netrep_angle(x, y, 0.4, center=False), abs=1e-10
    )
    proc = METRICS["procrustes"]
    p = proc.resolve({"alpha": 0.5, "scaling": "netrep"})
    assert proc.score(proc.prepare(x, p), proc.prepare(y, p), p) == pytest.approx(netrep_angle(x, y, 0.5), abs=1e-10)
    with pytest.raises(NeurometryError, match="scaling must be one of covariance, netrep"):
        procrustes(x, y, alpha=0.5, scaling="n")


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_procrustes_is_a_metric(rng, alpha):
    reps = [rng.standard_normal((40, 6)) @ rng.standard_normal((6, 6)) for _ in range(5)]
    d = np.array([[procrustes(a, b, alpha=alpha) for b in reps] for a in reps])
    assert np.allclose(d, d.T, atol=1e-12)
    assert np.all(np.diag(d) < 1e-7)
    assert np.all(d[~np.eye(5, dtype=bool)] > 0.05)
    for i in range(5):
        for j in range(5):
            for k in range(5):
                assert d[i, k] <= d[i, j] + d[j, k] + 1e-12


def test_procrustes_with_fewer_stimuli_than_features(rng):
    x = rng.standard_normal((12, 40))
    y = x @ rng.standard_normal((40, 30))
    xc, yc = x - x.mean(0), y - y.mean(0)
    for alpha in (1.0, 0.5):
        value = procrustes(x, y, alpha=alpha)
        assert np.isfinite(value) and 0.0 < value < np.pi / 2
    # alpha=1 by the definition on the d1 x d2 cross product (the code takes the n x n route)
    nuclear = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    expected = np.arccos(nuclear / (np.linalg.norm(xc) * np.linalg.norm(yc)))
    assert procrustes(x, y) == pytest.approx(expected, abs=1e-10)

    # alpha=0.5 with the pseudo-inverse square root of the singular covariance (rank 11 of 40)
    def phi(a: np.ndarray) -> np.ndarray:
        lam, v = np.linalg.eigh(a.T @ a / 12)
        keep = lam > lam.max() * 1e-10
        inv_sqrt = (v[:, keep] / np.sqrt(lam[keep])) @ v[:, keep].T
        return a @ (0.5 * np.eye(a.shape[1]) + 0.5 * inv_sqrt)

    xp, yp = phi(xc), phi(yc)
    nuclear = np.linalg.svd(xp.T @ yp, compute_uv=False).sum()
    expected = np.arccos(nuclear / (np.linalg.norm(xp) * np.linalg.norm(yp)))
    assert procrustes(x, y, alpha=0.5) == pytest.approx(expected, abs=1e-8)
    # rotation invariance survives the reduction to the n x n route
    assert procrustes(x, x @ ortho_group.rvs(40, random_state=5)) < 1e-7


def test_procrustes_alpha_zero_refuses_trivially_overlapping_column_spaces(rng):
    # 12 centred stimuli span 11 dimensions; ranks 11 + 11 overlap whatever the data
    x, y = rng.standard_normal((12, 40)), rng.standard_normal((12, 40))
    with pytest.raises(NeurometryError, match="alpha > 0"):
        procrustes(x, y, alpha=0.0)


# ---- permutation -----------------------------------------------------------------------------------


def test_permutation_zero_under_feature_permutation_nonzero_under_rotation(rng):
    x = rng.standard_normal((50, 6))
    order = rng.permutation(6)
    assert permutation_distance(x, x[:, order]) < 1e-7
    assert permutation_distance(x, 2.0 * x[:, order] - 1.0) < 1e-7
    rotated = x @ ortho_group.rvs(6, random_state=6)
    assert permutation_distance(x, rotated) > 0.3
    # permutations are a subgroup of the orthogonal group: never closer than procrustes
    assert permutation_distance(x, rotated) >= procrustes(x, rotated)


def test_permutation_closed_form_45_degrees():
    # Y = X R(45deg): identity matching gives <X, Y> = 4 cos 45, the swap gives 0; ||X||^2 = ||Y||^2 = 4
    # -> distance pi/4, while procrustes undoes the rotation exactly
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    y = x @ _rotation(np.pi / 4)
    assert permutation_distance(x, y) == pytest.approx(np.pi / 4, abs=1e-12)
    assert procrustes(x, y) < 1e-7


def test_permutation_different_widths_pad_with_zeros(rng):
    x = rng.standard_normal((30, 4))
    # y = x's features shuffled plus two all-zero features: zero-padding x makes them identical
    assert permutation_distance(x, np.c_[np.zeros(30), x[:, [3, 1, 0, 2]], np.zeros(30)]) < 1e-7
    # one more feature with variance: cos = ||x|| / sqrt(||x||^2 + ||extra||^2)
    extra = rng.standard_normal(30)
    y = np.c_[x, extra]
    xc, ec = x - x.mean(0), extra - extra.mean()
    expected = np.arccos(np.linalg.norm(xc) / np.sqrt(np.sum(xc**2) + np.sum(ec**2)))
    assert permutation_distance(x, y) == pytest.approx(expected, abs=1e-10)
    assert permutation_distance(y, x) == pytest.approx(expected, abs=1e-10)


def test_permutation_is_a_metric(rng):
    reps = [rng.standard_normal((30, 5)) for _ in range(5)]
    d = np.array([[permutation_distance(a, b) for b in reps] for a in reps])
    assert np.allclose(d, d.T, atol=1e-12)
    assert np.all(np.diag(d) < 1e-7)
    for i in range(5):
        for j in range(5):
            for k in range(5):
                assert d[i, k] <= d[i, j] + d[j, k] + 1e-12


# ---- registry, take, errors ------------------------------------------------------------------------


def test_registered_metrics_and_take(rng):
    proc, perm = METRICS["procrustes"], METRICS["permutation"]
    assert proc.params == {"alpha": 1.0, "center": True, "scaling": "covariance"} and not proc.higher_is_similar
    assert perm.params == {"center": True} and not perm.higher_is_similar
    x, y = rng.standard_normal((25, 4)), rng.standard_normal((25, 3))
    rows = rng.integers(0, 25, size=25)
    for metric, plain in ((proc, procrustes), (perm, permutation_distance)):
        p = metric.resolve({})
        sa, sb = metric.prepare(x, p), metric.prepare(y, p)
        assert metric.score(sa, sb, p) == pytest.approx(plain(x, y), abs=1e-12)
        # take re-centres on the kept rows: the same as preparing those rows from scratch
        taken = metric.score(metric.take(sa, rows, p), metric.take(sb, rows, p), p)
        assert taken == pytest.approx(plain(x[rows], y[rows]), abs=1e-12)
    p = proc.resolve({"alpha": 0.3})
    assert proc.score(proc.prepare(x, p), proc.prepare(y, p), p) == pytest.approx(procrustes(x, y, alpha=0.3))


def test_center_false_sees_translation(rng):
    x = rng.standard_normal((30, 3))
    assert procrustes(x, x + 5.0) < 1e-7
    assert procrustes(x, x + 5.0, center=False) > 0.5
    assert permutation_distance(x, x + 5.0, center=False) > 0.5


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "strong"])
def test_alpha_outside_unit_interval_is_an_error(rng, alpha):
    x = rng.standard_normal((10, 3))
    with pytest.raises(NeurometryError, match="alpha"):
        procrustes(x, x, alpha=alpha)


def test_input_errors(rng):
    x = rng.standard_normal((10, 3))
    bad = x.copy()
    bad[4, 1] = np.nan
    for f in (procrustes, permutation_distance):
        with pytest.raises(NeurometryError, match="row 4 contains NaN"):
            f(bad, x)
        with pytest.raises(NeurometryError, match="10 and 9 stimuli"):
            f(x, x[:9])
        with pytest.raises(NeurometryError, match="at least 3"):
            f(x[:2], x[:2])
        with pytest.raises(NeurometryError, match="constant"):
            f(x, np.ones((10, 2)))
    with pytest.raises(NeurometryError, match="center"):
        procrustes(x, x, center="maybe")
