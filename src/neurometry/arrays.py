"""Validation shared by every metric: the one place that turns user arrays into float64 rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurometry.errors import NeurometryError


def as_rows(x: Any, name: str = "x", min_rows: int = 2) -> np.ndarray:
    """``x`` as a C-contiguous float64 array (n_stimuli, n_features).

    A (n,) vector becomes (n, 1); more than two dimensions are flattened per row (e.g. spatial maps).
    Raises NeurometryError for non-numbers, fewer than ``min_rows`` rows, or NaN / Inf (naming the row).
    """
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise NeurometryError(f"{name} must be real numbers, got dtype {a.dtype}; convert it to float32")
    if a.ndim == 0:
        raise NeurometryError(f"{name} is a scalar; give an array shaped (stimuli, features)")
    if len(a) < min_rows:
        raise NeurometryError(f"{name} has {len(a)} stimuli (rows); this needs at least {min_rows}")
    a = a.reshape(len(a), int(np.prod(a.shape[1:]))) if a.ndim != 1 else a[:, None]
    if a.shape[1] == 0:
        raise NeurometryError(
            f"{name} has no features (shape {a.shape}); give an array shaped (stimuli, features)"
        )
    a = np.ascontiguousarray(a, dtype=np.float64)
    finite = np.isfinite(a).all(1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise NeurometryError(f"{name} row {row} contains NaN or Inf; remove or fix that stimulus")
    return a


def check_same_rows(a: Any, b: Any, what: str = "representations") -> None:
    """Two representations of the same stimuli must have the same number of rows."""
    na, nb = len(a), len(b)
    if na != nb:
        raise NeurometryError(
            f"the two {what} have {na} and {nb} stimuli (rows); compare responses to the same stimuli, in the same order"
        )


def plain_value(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (for messages and JSON: ``1``, not ``np.int64(1)``)."""
    return value.item() if isinstance(value, np.generic) else value
