"""Non-SAE decompositions of activations: semi-nonnegative matrix factorisation, PCA and ICA.

Every method follows one scikit-learn style interface on rows x (n, d) (one activation vector per
input): ``fit(x) -> self``, ``transform(x) -> codes (n, m)``, ``inverse_transform(codes) -> (n, d)``
with ``inverse_transform(codes) = codes @ components_ + mean_``. ``components_`` (m, d) holds the
directions each code writes (the analogue of an SAE's decoder rows), so a component exports like an
SAE feature. All are scored by the same metrics as the SAEs::

    model = fit_decomposition("semi_nmf", x, 64)
    codes = model.transform(x_heldout)
    reconstruction_metrics(x_heldout, model.inverse_transform(codes), codes)

Memory: these fit in memory. When ``fit`` gets more than ``max_rows`` rows it fits on a seeded
uniform subsample of ``max_rows`` of them (without replacement, kept in their original order) and
records the count in ``n_rows_fit_``; ``transform`` then encodes any number of rows, so stream a
store's held-out chunks through ``transform`` and ``ReconstructionAccumulator``.

Inputs may be NumPy arrays or torch tensors; outputs are float64 NumPy arrays.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning

from neurometry.arrays import as_rows
from neurometry.errors import NeurometryError, did_you_mean

DEFAULT_MAX_ROWS = 100_000
"""Rows a decomposition fits on before it subsamples (see the module docstring)."""


def _rows(x: Any, name: str = "x") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()  # NumPy has no bfloat16
    return as_rows(x, name=name, min_rows=1)


def _check_n_components(n_components: Any) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise NeurometryError(f"n_components must be a positive integer, got {n_components!r}")
    return int(n_components)


class Decomposition:
    """Base of every decomposition: x (n, d) -> codes (n, m) -> x_hat = codes @ components_ + mean_.

    Fitted attributes: ``components_`` (m, d), ``mean_`` (d,), ``n_rows_fit_`` (rows actually fitted).
    """

    name = "decomposition"

    def __init__(self, n_components: int, max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0):
        self.n_components = _check_n_components(n_components)
        if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 2:
            raise NeurometryError(f"max_rows must be an integer >= 2, got {max_rows!r}")
        self.max_rows = int(max_rows)
        self.seed = int(seed)
        self.components_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.n_rows_fit_ = 0

    # -- shared validation -------------------------------------------------------------------
    def _fit_rows(self, x: Any) -> np.ndarray:
        """Validated float64 rows to fit on, subsampled to ``max_rows`` with ``seed``."""
        rows = _rows(x)
        if len(rows) < 2:
            raise NeurometryError(f"{self.name} needs at least 2 rows to fit, got {len(rows)}")
        if len(rows) > self.max_rows:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(rows), self.max_rows, replace=False))
            rows = rows[keep]
        if len(rows) < self.n_components:
            raise NeurometryError(
                f"{self.name} with n_components={self.n_components} needs at least that many rows, "
                f"got {len(rows)}; give more rows or ask for fewer components"
            )
        self.n_rows_fit_ = len(rows)
        return rows

    def _check_fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.components_ is None or self.mean_ is None:
            raise NeurometryError(f"this {self.name} decomposition is not fitted yet; call fit(x) first")
        return self.components_, self.mean_

    def _transform_rows(self, x: Any) -> np.ndarray:
        components, _ = self._check_fitted()
        rows = _rows(x)
        if rows.shape[1] != components.shape[1]:
            raise NeurometryError(
                f"rows have {rows.shape[1]} features but the {self.name} decomposition was fitted on "
                f"{components.shape[1]}; transform rows from the same point"
            )
        return rows

    # -- interface ---------------------------------------------------------------------------
    def fit(self, x: Any) -> Decomposition:
        raise NotImplementedError

    def transform(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def fit_transform(self, x: Any) -> np.ndarray:
        """``fit(x)`` then ``transform(x)`` (codes of every given row, also when fit subsampled)."""
        return self.fit(x).transform(x)

    def inverse_transform(self, codes: Any) -> np.ndarray:
        """Reconstruction (n, d) = codes (n, m) @ components_ + mean_."""
        components, mean = self._check_fitted()
        z = _rows(codes, name="codes")
        if z.shape[1] != len(components):
            raise NeurometryError(
                f"codes have {z.shape[1]} columns but the {self.name} decomposition has "
                f"{len(components)} components"
            )
        return z @ components + mean


# ---------------------------------------------------------------------------------------------
# Semi-NMF


_SMALLEST_NORMAL = torch.finfo(torch.float64).tiny
_CODE_STEP_TOL = 1e-8  # transform stops once no code moves by more than this share of the largest


def _positive(a: torch.Tensor) -> torch.Tensor:
    return (a.abs() + a) / 2


def _negative(a: torch.Tensor) -> torch.Tensor:
    return (a.abs() - a) / 2


def _multiplicative_code_step(
    z: torch.Tensor, xf: torch.Tensor, ftf: torch.Tensor, penalty: float
) -> torch.Tensor:
    """One multiplicative step of Ding, Li & Jordan (2010) for codes z (n, m) >= 0, basis fixed:
    z <- z * sqrt(((XF)^+ + z (F^T F)^-) / ((XF)^- + z (F^T F)^+)), A^+ = (|A| + A) / 2, A^- = (|A| - A) / 2.

    xf = X F (n, m), ftf = F^T F (m, m). The L1 penalty on z enters as a positive linear term beside
    (XF)^-, which keeps the paper's auxiliary-function proof, so the penalised objective cannot rise.
    """
    top = _positive(xf) + z @ _negative(ftf)
    bottom = _negative(xf) + penalty / 2 + z @ _positive(ftf)
    # bottom is 0 only where z is 0 (or its basis column is 0): such an entry stays as it is
    live = bottom > 0
    ratio = torch.where(live, top / torch.where(live, bottom, 1.0), 1.0)
    z = z * ratio.sqrt()
    # entries shrinking to zero become subnormal floats, which make CPU arithmetic ~100x slower;
    # zeroing them changes the objective by < 1e-300
    return torch.where(z < _SMALLEST_NORMAL, 0.0, z)


class SemiNMF(Decomposition):
    """Semi-nonnegative matrix factorisation X ≈ Z F^T with codes Z (n, m) >= 0 and a real basis F (d, m).

    Ding, Li & Jordan 2010, "Convex and Semi-Nonnegative Matrix Factorizations" (IEEE TPAMI), as used
    on MLP activations by Shafran, Geiger & Geva 2025 ("Decomposing MLP Activations into Interpretable
    Features via Semi-Nonnegative Matrix Factorization"). Rows x (n, d) are inputs; the data are not
    centred (``mean_`` is zero), as in both papers.

    Objective: ||X - Z F^T||_F^2 + lam * sum(Z), lam = ``l1`` * sqrt(||X||_F^2 / n) (``l1`` is relative
    to the RMS row norm, so it does not depend on the scale of the activations; ``penalty_`` stores lam).

    Fit (float64 torch):

    - init as Ding et al. propose: k-means clustering (scikit-learn ``KMeans``, k-means++ seeding,
      ``n_init=1``, ``random_state=seed``), Z = cluster indicators + 0.2, F its least-squares basis;
    - each iteration: Z by the multiplicative rule of Ding et al. (with the L1 term added to its
      denominator), then F. With ``l1 == 0`` F is the exact least-squares solution
      X^T Z (Z^T Z)^+ (Ding et al.); with ``l1 > 0`` each column of F is the exact least-squares
      solution projected onto the unit ball, one column at a time (hierarchical ALS), since an L1
      penalty on Z alone could be dodged by scaling F up;
    - both steps are exact block minimisations or majorisation steps, so the objective never rises;
      its value after each iteration (after the init first) is kept in ``objective_history_``;
    - stop when the relative decrease of the objective falls below ``tol`` or after ``max_iter``.

    At the end each basis column is scaled to unit norm and Z inversely (the product is unchanged),
    so ``components_`` = F^T (m, d) has unit rows and the codes carry the magnitudes.

    Identifiability: semi-NMF is never unique: for any invertible A >= 0, (Z A, F A^-T) fits equally
    well (a wider cone around the data). With ``l1 = 0`` (the plain method of both papers) the fit
    stops at some enclosing cone near its start; ``l1 > 0`` prefers the narrowest one, whose
    directions are the extreme rays of the data (a row on a ray costs more L1 in any wider cone), and
    recovers planted sparse features (see the tests). Shafran et al. instead sparsify F by keeping the
    top entries of each column (winner-take-all), which is not implemented here.

    ``transform`` solves the same problem for the codes of any rows with F fixed (a nonnegative,
    L1-penalised least squares per row) by accelerated projected gradient, not the multiplicative
    rule: that rule only approaches zero, so its codes (``codes_``, kept from the fit for the fitted
    rows) are dense in the L0 sense, while projected gradient reaches exact zeros.
    """

    name = "semi_nmf"

    def __init__(
        self,
        n_components: int,
        max_iter: int = 1000,
        tol: float = 1e-6,
        seed: int = 0,
        l1: float = 0.0,
        max_rows: int = DEFAULT_MAX_ROWS,
        transform_max_iter: int = 2000,
    ):
        super().__init__(n_components, max_rows=max_rows, seed=seed)
        if not max_iter >= 1 or not transform_max_iter >= 1:
            raise NeurometryError("max_iter and transform_max_iter must be at least 1")
        if not tol >= 0 or not l1 >= 0:
            raise NeurometryError(f"tol and l1 must be >= 0, got tol={tol!r}, l1={l1!r}")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.l1 = float(l1)
        self.transform_max_iter = int(transform_max_iter)
        self.penalty_ = 0.0
        self.objective_history_: list[float] = []
        self.n_iter_ = 0
        self.converged_ = False
        self.codes_: np.ndarray | None = None  # Z of the fitted rows (multiplicative rule: near-zeros stay)

    def _objective(
        self,
        x: torch.Tensor,
        total: float,
        z: torch.Tensor,
        f: torch.Tensor,
        xtz: torch.Tensor,
        ztz: torch.Tensor,
    ) -> float:
        """||X - Z F^T||^2 + penalty * sum(Z) from total = ||X||^2, xtz = X^T Z and ztz = Z^T Z.

        The expansion costs (d, m) and (m, m) products instead of an (n, d) residual but cancels
        digits once the fit is close (error ~ 1e-16 * total); below 1e-4 * total the residual is
        formed instead, so the recorded history keeps ~12 significant digits.
        """
        value = total - 2 * float((xtz * f).sum()) + float((ztz * (f.T @ f)).sum())
        if value < 1e-4 * total:
            residual = x - z @ f.T
            value = float((residual * residual).sum())
        return value + self.penalty_ * float(z.sum())

    def _basis_step(
        self, x: torch.Tensor, z: torch.Tensor, f: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The new basis F (d, m) for codes z, with X^T Z and Z^T Z (reused by the objective)."""
        xtz, ztz = x.T @ z, z.T @ z
        if self.penalty_ == 0:
            return xtz @ torch.linalg.pinv(ztz, hermitian=True), xtz, ztz
        f = f.clone()
        for k in range(f.shape[1]):
            if ztz[k, k] <= 0:
                continue  # a dead code column: its direction does not enter the objective
            target = (xtz[:, k] - f @ ztz[:, k] + f[:, k] * ztz[k, k]) / ztz[k, k]
            f[:, k] = target / max(1.0, float(target.norm()))
        return f, xtz, ztz

    def fit(self, x: Any) -> SemiNMF:
        """Fit on rows x (n, d) (subsampled to ``max_rows``, see the module docstring)."""
        rows = torch.from_numpy(self._fit_rows(x))
        n, m = len(rows), self.n_components
        scale = float(rows.square().sum() / n) ** 0.5  # RMS row norm
        if scale == 0:
            raise NeurometryError("the rows are all zero; semi-NMF has nothing to factorise")
        self.penalty_ = self.l1 * scale

        with warnings.catch_warnings():
            # duplicate rows can leave fewer distinct clusters than m; the +0.2 keeps every column alive
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(m, n_init=1, random_state=self.seed).fit_predict(rows.numpy())
        z = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), m).double() + 0.2
        f = (rows.T @ z) @ torch.linalg.pinv(z.T @ z, hermitian=True)
        if self.penalty_ > 0:
            norms = f.norm(dim=0).clamp_min(1e-300)
            f, z = f / norms, z * norms

        total = float(rows.square().sum())
        history = [self._objective(rows, total, z, f, rows.T @ z, z.T @ z)]
        self.converged_ = False
        for _ in range(self.max_iter):
            z = _multiplicative_code_step(z, rows @ f, f.T @ f, self.penalty_)
            f, xtz, ztz = self._basis_step(rows, z, f)
            history.append(self._objective(rows, total, z, f, xtz, ztz))
            if history[-2] - history[-1] <= self.tol * history[-2]:
                self.converged_ = True
                break

        norms = f.norm(dim=0)
        alive = norms > 0
        f[:, alive] = f[:, alive] / norms[alive]
        z[:, alive] = z[:, alive] * norms[alive]
        self.objective_history_ = history
        self.n_iter_ = len(history) - 1
        self.components_ = f.T.contiguous().numpy()
        self.mean_ = np.zeros(rows.shape[1])
        self.codes_ = z.numpy()  # codes of the fitted rows (n_rows_fit_, m)
        return self

    def transform(self, x: Any) -> np.ndarray:
        """Codes (n, m) >= 0 of rows x (n, d): argmin_z ||x - z F^T||^2 + penalty_ * sum(z), z >= 0."""
        rows = torch.from_numpy(self._transform_rows(x))
        f = torch.from_numpy(self.components_).T
        return _nonnegative_codes(rows @ f, f.T @ f, self.penalty_, self.transform_max_iter).numpy()


def _nonnegative_codes(xf: torch.Tensor, ftf: torch.Tensor, penalty: float, max_iter: int) -> torch.Tensor:
    """Rows of argmin_{z >= 0} ||x - z F^T||^2 + penalty * sum(z) given xf = X F (n, m), ftf = F^T F.

    Accelerated projected gradient (Beck & Teboulle 2009, FISTA) with step 1 / ||F^T F||_2 and the
    function-value restart of O'Donoghue & Candes 2015; unlike the multiplicative rule its projection
    max(0, .) reaches exact zeros, so the L0 of the codes is their true support. Started from the
    unconstrained least-squares codes clipped at zero; stops when no code moves by more than
    ``_CODE_STEP_TOL`` of the largest code in a step, or after ``max_iter`` steps.
    """
    lipschitz = float(torch.linalg.matrix_norm(ftf, ord=2))
    if lipschitz == 0:
        return torch.zeros_like(xf)
    shift = xf - penalty / 2  # the gradient of half the objective is z ftf - shift

    def half_objective(z: torch.Tensor) -> torch.Tensor:  # per row, up to the constant ||x||^2 / 2
        return (z * (z @ ftf / 2 - shift)).sum(1)

    def gradient_step(z: torch.Tensor) -> torch.Tensor:
        return (z - (z @ ftf - shift) / lipschitz).clamp_min(0)

    z = (xf @ torch.linalg.pinv(ftf, hermitian=True)).clamp_min(0)
    y, value = z, half_objective(z)
    momentum = torch.ones(len(z), 1, dtype=z.dtype)  # per row: the rows are independent problems
    for _ in range(max_iter):
        z_next = gradient_step(y)
        value_next = half_objective(z_next)
        # a row whose objective rose restarts from its last iterate with no momentum (rises within
        # rounding do not count: near the optimum they would restart every row at every step)
        rose = (value_next > value + 1e-13 * value.abs())[:, None]
        if bool(rose.any()):
            z_next = torch.where(rose, gradient_step(z), z_next)
            value_next = half_objective(z_next)
        momentum_next = torch.where(rose, 1.0, (1 + (1 + 4 * momentum * momentum).sqrt()) / 2)
        y = torch.where(rose, z_next, z_next + ((momentum - 1) / momentum_next) * (z_next - z))
        step = float((z_next - z).abs().max())
        z, value, momentum = z_next, value_next, momentum_next
        if step <= _CODE_STEP_TOL * max(float(z.abs().max()), 1e-300):
            break
    return z


# ---------------------------------------------------------------------------------------------
# PCA and ICA baselines (scikit-learn underneath)


class PCADecomposition(Decomposition):
    """Principal component analysis: codes are the (not whitened) scores on the top m principal axes.

    scikit-learn ``PCA(whiten=False)``, exact solver (``covariance_eigh`` when rows outnumber
    features, else ``full`` SVD). ``components_`` (m, d) are the unit-norm axes, ``mean_`` the row
    mean; on the fitted rows FVU = (sum of discarded covariance eigenvalues) / (sum of all).
    ``seed`` only picks the subsample when there are more than ``max_rows`` rows.
    """

    name = "pca"

    def fit(self, x: Any) -> PCADecomposition:
        rows = self._fit_rows(x)
        n, d = rows.shape
        if self.n_components > d:
            raise NeurometryError(
                f"pca with n_components={self.n_components} exceeds the {d} features; ask for at most {d}"
            )
        solver = "covariance_eigh" if n >= d else "full"
        self._pca = PCA(self.n_components, whiten=False, svd_solver=solver).fit(rows)
        self.components_ = self._pca.components_.astype(np.float64)
        self.mean_ = self._pca.mean_.astype(np.float64)
        self.explained_variance_ = self._pca.explained_variance_.astype(np.float64)
        return self

    def transform(self, x: Any) -> np.ndarray:
        rows = self._transform_rows(x)
        return (rows - self.mean_) @ self.components_.T


class ICADecomposition(Decomposition):
    """Independent component analysis (Hyvärinen & Oja 2000, FastICA): codes are unit-variance sources.

    scikit-learn ``FastICA(whiten="unit-variance", whiten_solver="svd", fun="logcosh",
    algorithm="parallel", random_state=seed)``: the rows are centred, whitened on their top m principal
    axes, then rotated to maximise non-Gaussianity. ``components_`` (m, d) is the mixing matrix
    transposed (the direction each source writes, not unit norm), ``mean_`` the row mean. The
    reconstruction lies in the top-m PCA subspace, so its FVU equals PCA's at the same m.
    """

    name = "ica"

    def __init__(
        self,
        n_components: int,
        seed: int = 0,
        max_iter: int = 1000,
        tol: float = 1e-4,
        max_rows: int = DEFAULT_MAX_ROWS,
    ):
        super().__init__(n_components, max_rows=max_rows, seed=seed)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def fit(self, x: Any) -> ICADecomposition:
        rows = self._fit_rows(x)
        d = rows.shape[1]
        if self.n_components > d:
            raise NeurometryError(
                f"ica with n_components={self.n_components} exceeds the {d} features; ask for at most {d}"
            )
        self._ica = FastICA(
            self.n_components,
            algorithm="parallel",
            whiten="unit-variance",
            whiten_solver="svd",
            fun="logcosh",
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.seed,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            self._ica.fit(rows)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.components_ = self._ica.mixing_.T.astype(np.float64)
        self.mean_ = self._ica.mean_.astype(np.float64)
        return self

    def transform(self, x: Any) -> np.ndarray:
        rows = self._transform_rows(x)
        return self._ica.transform(rows).astype(np.float64)


DECOMPOSITIONS: dict[str, type[Decomposition]] = {
    "semi_nmf": SemiNMF,
    "pca": PCADecomposition,
    "ica": ICADecomposition,
}


def fit_decomposition(name: str, x: Any, n_components: int, **kwargs: Any) -> Decomposition:
    """Fit the decomposition ``name`` (a key of :data:`DECOMPOSITIONS`) with m = ``n_components`` on rows
    x (n, d); ``kwargs`` go to its constructor (e.g. ``seed``, ``max_rows``, ``l1`` for semi_nmf).

    Raises NeurometryError for an unknown name or option, NaN/Inf in x, or too few rows
    (n < 2 or n < n_components).
    """
    if not isinstance(name, str) or name not in DECOMPOSITIONS:
        known = ", ".join(DECOMPOSITIONS)
        raise NeurometryError(
            f"unknown decomposition {name!r}; choose one of {known}{did_you_mean(str(name), DECOMPOSITIONS)}"
        )
    cls = DECOMPOSITIONS[name]
    options = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "n_components")]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise NeurometryError(
            f"{name} does not take option(s) {', '.join(unknown)}; it takes {', '.join(options)}"
        )
    return cls(n_components, **kwargs).fit(x)
