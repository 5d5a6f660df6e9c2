"""Pieces shared by the ridge fits of every stage (linear predictivity, encoding models): the penalty
grid check and the training-fold standardisation scikit-learn's StandardScaler would apply."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurometry.errors import NeurometryError


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
