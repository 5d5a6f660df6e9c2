"""Ridge regression shared by every stage (linear predictivity, encoding models): the default penalty
grid and its check, the training-fold standardisation scikit-learn's StandardScaler would apply, and
:class:`RidgePath`, the one cross-validation engine: a training fold decomposed once, then
coefficients, predictions, held-out errors and leave-one-out errors for every penalty of a grid and
every target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.linalg import as_tensor

DEFAULT_ALPHAS: tuple[float, ...] = tuple(10.0**e for e in range(-3, 6))
"""Ridge penalties tried by default, on standardised features: 1e-3, 1e-2, ..., 1e5 (9 values).

The one grid of linear predictivity and encoding models. They used to differ (1e-3 .. 1e3 and
0.1 .. 1e5); this is the union of the two ranges, so neither loses a penalty it could choose before.
On standardised features the eigenvalues of X^T X add up to n_train x features, so the range runs from
nearly least squares (with more features than rows, nearly the minimum-norm interpolant) to shrinking
almost every direction to the training mean. Each penalty costs one more product of the held-out
rows (encoding) or the training rows (leave-one-out, predictivity) with the rotated targets; the
decomposition is shared.
"""

# target columns handled at once: bounds the temporaries (train rows x block float64) to about 256 MiB
_BLOCK_BYTES = 2**28


def check_alphas(alphas: Any) -> np.ndarray:
    """``alphas`` as a float64 grid of positive finite penalties."""
    try:
        grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise NeurometryError(f"alphas must be positive numbers, got {alphas!r}") from None
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise NeurometryError(f"alphas must be one or more positive finite numbers, got {alphas!r}")
    return grid


def standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale of ``train`` (ddof 0); a (near-)constant column gets scale 1."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    # scikit-learn's rule for a constant feature: the variance is within rounding of zero
    n = len(train)
    eps = np.finfo(np.float64).eps
    constant = std**2 <= n * eps * std**2 + (n * mean * eps) ** 2
    return mean, np.where(constant, 1.0, std)


def column_blocks(n_rows: int, n_targets: int) -> list[slice]:
    """Slices of target columns whose (n_rows, block) float64 copies take about 256 MiB each.

    :class:`RidgePath` works through its targets in these blocks; a caller holding many targets can
    slice them the same way before copying training or held-out rows out of them.
    """
    size = max(1, _BLOCK_BYTES // (8 * max(n_rows, 1)))
    return [slice(lo, min(lo + size, n_targets)) for lo in range(0, n_targets, size)]


def _rows(a: Any, name: str) -> np.ndarray:
    """``a`` as float64 (n, k); a vector becomes one column."""
    array = np.asarray(a, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise NeurometryError(f"{name} must be a matrix (rows, columns), got shape {array.shape}")
    return array


@dataclass(frozen=True)
class RidgePath:
    """Ridge regression on one training set for every penalty of a grid, from one decomposition.

    :meth:`fit` takes the training features x (n, p) and, as scikit-learn would:

    - ``standardize``: divides each column by its training standard deviation (ddof 0; 1 for a
      column constant to rounding, as ``StandardScaler``); with ``intercept`` it also subtracts the
      training mean first (``StandardScaler()``), without it only scales (``StandardScaler(with_mean=False)``).
    - ``intercept``: fits an unpenalised intercept (``Ridge(fit_intercept=True)``), i.e. ridge on the
      exactly centred features and targets.

    With X (n, p) the features so prepared (and centred when there is an intercept), r = min(n, p),
    the smaller Gram matrix is eigendecomposed once:

    - primal (p <= n): X^T X = V diag(eig) V^T; ``left`` = X V (= U S), ``back`` = V.
    - dual (p > n): X X^T = Q diag(eig) Q^T; ``left`` = Q, with its columns centred when there is an
      intercept (the centring projector: it drops the intercept's direction, the constant vector,
      exactly), ``back`` = X^T ``left``.

    For penalty alpha, w = 1 / (eig + alpha), and training targets Y (n, t) (centred with an
    intercept), the coefficients on X are ``back`` diag(w) ``left``^T Y, the fitted values
    ``left`` diag(w) ``left``^T Y, and a new row z (prepared like X) is predicted by
    (z ``back``) diag(w) ``left``^T Y plus the targets' training mean. ``left``^T Y (r, t) is formed
    once per set of targets and shared by every penalty; each penalty then costs one product with it
    (rows x r x t). The decomposition is several times faster than an SVD and as accurate as
    scikit-learn's Cholesky solve of X^T X + alpha I, which works with the same Gram matrix. All
    arithmetic is float64 (through torch: numpy's bundled OpenBLAS can crash on large self-products).
    Targets are processed in blocks of columns so the temporaries stay near 256 MiB.

    With a ``device`` (:meth:`fit`), the prepared features, ``left``, ``back``, ``eig``, the rotated
    targets and every product live on that device; the methods take and return NumPy arrays, so
    only their results (and ``left``, ``back``, ``eig`` once per fit) come back. The standardisation
    (elementwise) stays on the CPU. Without one, everything runs on the CPU through NumPy-shared tensors.

    Leave-one-out (:meth:`loo_mse`), as scikit-learn's ``RidgeCV`` (efficient generalised CV): in
    the primal the leave-one-out residual is (y - fitted) / (1 - leverage), leverage = (``left``^2) w
    (+ 1/n for the intercept); in the dual the residual is alpha ``left`` diag(w) ``left``^T Y and
    1 - leverage is alpha (``left``^2) w, so their ratio has alpha cancelled and 1 - leverage is never
    formed by subtraction (which loses digits when the fit nearly interpolates: small alpha, more
    features than rows).

    Example::

        path = RidgePath.fit(x_train)  # (n, p): standardised, with an intercept
        errors = path.held_out_sse(y_train, x_test, y_test, DEFAULT_ALPHAS)  # (9, t)
        best = np.asarray(DEFAULT_ALPHAS)[errors.argmin(axis=0)]  # (t,) a penalty per target
        predictions = path.predict(y_train, x_test, best)  # (m, t)

    Attributes:
        mean: (p,) subtracted from the features before scaling (training mean; zeros without an intercept).
        scale: (p,) the features are divided by (training std; ones without ``standardize``).
        offset: (p,) training mean of the scaled features, subtracted again against rounding (zeros
            without an intercept): X = (x - mean) / scale - offset.
        left: (n, r), see above.
        back: (p, r), see above.
        eig: (r,) eigenvalues of the Gram matrix (squared singular values of X), clipped at 0.
        primal: p <= n.
        intercept: whether the fit has an unpenalised intercept.
        device: where the products run; None: the CPU, on tensors sharing the arrays' memory.
    """

    mean: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    left: np.ndarray
    back: np.ndarray
    eig: np.ndarray
    primal: bool
    intercept: bool
    device: torch.device | None = None
    # (left, back, eig) kept on ``device``: uploaded once per fit, not once per call
    _resident: tuple[torch.Tensor, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def fit(
        cls, x: Any, *, intercept: bool = True, standardize: bool = True, device: torch.device | None = None
    ) -> RidgePath:
        """Decompose the training features ``x`` (n, p) once for every penalty and target.

        Args:
            x: (n, p) training features, in their own units.
            intercept: fit an unpenalised intercept (centre features and targets on the training rows).
            standardize: divide each feature by its training standard deviation (``StandardScaler``),
                so the penalty treats every feature alike.
            device: a ``torch.device`` for the decomposition and every later product (any device,
                the CPU included, takes that path); None: the CPU path.
        """
        x = _rows(x, "x")
        n, p = x.shape
        if n == 0:
            raise NeurometryError("ridge needs at least one training row")
        mean, scale = standardise(x)
        if not standardize:
            scale = np.ones(p)
        if not intercept:
            mean = np.zeros(p)
        train = as_tensor((x - mean) / scale)  # a fresh array: safe to centre in place
        if device is not None:
            train = train.to(device)
        if intercept:
            # ridge with an intercept is ridge on exactly centred data: recentre against rounding
            centre = train.mean(dim=0)
            train -= centre
            offset = centre.cpu().numpy()
        else:
            offset = np.zeros(p)
        primal = p <= n
        if primal:
            eig, back = torch.linalg.eigh(train.T @ train)
            left = train @ back  # X V = U diag(s)
        else:
            eig, left = torch.linalg.eigh(train @ train.T)
            if intercept:
                left = left - left.mean(dim=0)
            back = train.T @ left
        eig = eig.clamp(min=0.0)
        return cls(
            mean=mean,
            scale=scale,
            offset=offset,
            left=left.cpu().numpy(),
            back=back.cpu().numpy(),
            eig=eig.cpu().numpy(),
            primal=primal,
            intercept=intercept,
            device=device,
            _resident=() if device is None else (left, back, eig),
        )

    @property
    def n_rows(self) -> int:
        """Training rows n."""
        return len(self.left)

    def transform(self, x: Any) -> np.ndarray:
        """(m, p) rows prepared as the training features were: (x - mean) / scale - offset."""
        x = _rows(x, "x")
        if x.shape[1] != len(self.mean):
            raise NeurometryError(f"x has {x.shape[1]} features; the ridge was fitted on {len(self.mean)}")
        return (x - self.mean) / self.scale - self.offset

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        """``a`` as a float64 tensor on the path's device (sharing ``a``'s memory on the CPU path)."""
        tensor = as_tensor(a)
        return tensor if self.device is None else tensor.to(self.device)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(``left`` (n, r), ``back`` (p, r), ``eig`` (r,)) as tensors where the products run."""
        if self._resident:
            return self._resident
        return as_tensor(self.left), as_tensor(self.back), as_tensor(self.eig)

    def _project(self, x: Any) -> torch.Tensor:
        """(m, r): new rows in the basis of the decomposition, ``transform(x)`` ``back``."""
        return self._tensor(self.transform(x)) @ self._factors()[1]

    def _targets(self, y_train: Any) -> np.ndarray:
        y = _rows(y_train, "y_train")
        if len(y) != self.n_rows:
            raise NeurometryError(f"y_train has {len(y)} rows; the ridge was fitted on {self.n_rows}")
        return y

    def _rotate(self, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(``left``^T Y (r, t), the targets' training mean (t,), zeros without an intercept)."""
        targets = self._tensor(np.array(y, dtype=np.float64))  # a fresh copy: centred in place
        if self.intercept:
            offset = targets.mean(dim=0)
            targets.sub_(offset)
        else:
            offset = torch.zeros(targets.shape[1], dtype=torch.float64, device=targets.device)
        return self._factors()[0].T @ targets, offset

    def coef(self, y_train: Any, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and intercept for penalty ``alpha``, in the units of the raw features.

        ``x @ coef + intercept`` predicts; ``coef`` equals scikit-learn's ``Ridge(alpha).coef_.T``
        fitted on the prepared features, divided by ``scale`` (with ``standardize``). :meth:`predict`
        is the better-conditioned way to predict when some feature's scale is tiny.

        Args:
            y_train: (n, t) targets of the training rows.
            alpha: the penalty, > 0.

        Returns:
            (coef (p, t), intercept (t,), zeros without an intercept).
        """
        value = float(check_alphas(alpha)[0])
        rotated, offset = self._rotate(self._targets(y_train))
        _, back, eig = self._factors()
        weights = 1.0 / (eig + value)
        standardised = (back @ (weights[:, None] * rotated)).cpu().numpy()
        coef = standardised / self.scale[:, None]
        intercept = offset.cpu().numpy() - (self.mean / self.scale + self.offset) @ standardised
        return coef, intercept

    def predict(self, y_train: Any, x: Any, alpha: Any) -> np.ndarray:
        """Predictions for the rows ``x`` of the ridge fitted to ``y_train``.

        Args:
            y_train: (n, t) targets of the training rows.
            x: (m, p) rows to predict, in the units of the training features.
            alpha: one penalty for every target, or (t,) a penalty per target.

        Returns:
            (m, t) predictions.
        """
        y = self._targets(y_train)
        t = y.shape[1]
        penalty = np.asarray(alpha, dtype=np.float64)
        if penalty.ndim == 0:
            penalty = np.full(t, float(penalty))
        if penalty.shape != (t,):
            raise NeurometryError(
                f"alpha has {penalty.size} values for {t} targets; give one or one per target"
            )
        check_alphas(penalty)
        projected = self._project(x)
        eig = self._factors()[2]
        predictions = np.empty((len(projected), t))
        for value in np.unique(penalty):
            columns = np.flatnonzero(penalty == value)
            weighted = projected / (eig + float(value))
            for block in column_blocks(self.n_rows, len(columns)):
                rotated, offset = self._rotate(y[:, columns[block]])
                predictions[:, columns[block]] = (weighted @ rotated + offset).cpu().numpy()
        return predictions

    def held_out_sse(self, y_train: Any, x: Any, y: Any, alphas: Any) -> np.ndarray:
        """Sum over the rows ``x`` of the squared prediction error of ``y``, per penalty and target.

        Args:
            y_train: (n, t) targets of the training rows.
            x: (m, p) held-out rows.
            y: (m, t) their targets.
            alphas: (k,) penalties.

        Returns:
            (k, t) sums of squared errors, rows in the order of ``alphas``.
        """
        targets = self._targets(y_train)
        truth = _rows(y, "y")
        grid = check_alphas(alphas)
        projected = self._project(x)
        if truth.shape != (len(projected), targets.shape[1]):
            raise NeurometryError(
                f"y has shape {truth.shape}; give ({len(projected)}, {targets.shape[1]}): a row per row of x, "
                "a column per target"
            )
        eig = self._factors()[2]
        scaled = [projected / (eig + float(a)) for a in grid]
        sse = torch.zeros((len(grid), targets.shape[1]), dtype=torch.float64, device=eig.device)
        for block in column_blocks(self.n_rows, targets.shape[1]):
            rotated, offset = self._rotate(targets[:, block])  # (r, block): once for all penalties
            residual_base = self._tensor(np.array(truth[:, block])) - offset
            for i, a_rotate in enumerate(scaled):
                residual = residual_base - a_rotate @ rotated
                sse[i, block] += (residual * residual).sum(dim=0)
        return sse.cpu().numpy()

    def loo_mse(self, y_train: Any, alphas: Any) -> np.ndarray:
        """Mean squared leave-one-out error over the training rows, per penalty and target.

        Equals scikit-learn's ``RidgeCV(alphas, store_cv_results=True).cv_results_.mean(axis=0).T``
        on the prepared features (the efficient leave-one-out of the class docstring).

        Args:
            y_train: (n, t) targets of the training rows.
            alphas: (k,) penalties.

        Returns:
            (k, t) mean squared leave-one-out errors, rows in the order of ``alphas``.
        """
        targets = self._targets(y_train)
        grid = check_alphas(alphas)
        n = self.n_rows
        left, _, eig = self._factors()
        weights = 1.0 / (eig[:, None] + self._tensor(grid)[None, :])  # (r, k)
        spread = (left * left) @ weights  # (n, k)
        floor = 1.0 / n if self.intercept else 0.0
        mse = np.empty((len(grid), targets.shape[1]))
        for block in column_blocks(n, targets.shape[1]):
            rotated, offset = self._rotate(targets[:, block])
            centred = self._tensor(np.array(targets[:, block])) - offset
            for i in range(len(grid)):
                smoothed = left @ (weights[:, i, None] * rotated)
                if self.primal:
                    loo = (centred - smoothed) / (1.0 - floor - spread[:, i, None])
                else:
                    loo = smoothed / spread[:, i, None]
                mse[i, block] = (loo * loo).mean(dim=0).cpu().numpy()
        return mse
