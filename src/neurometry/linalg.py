"""Linear algebra through torch, shared by the metrics: numpy's bundled OpenBLAS can crash on large
self-products here and its LAPACK is about 10x slower on tall matrices."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """A float64 tensor sharing ``a``'s memory; a read-only array (e.g. a memory map) is copied."""
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def cross_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a^T b for a (n, d1), b (n, d2): (d1, d2)."""
    return (as_tensor(a).T @ as_tensor(b)).numpy()


def thin_svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD (u, s, vt) of a (n, d)."""
    u, s, vt = torch.linalg.svd(as_tensor(a), full_matrices=False)
    return u.numpy(), s.numpy(), vt.numpy()


def principal_plane(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre (d,) and top two principal directions (d, 2) of ``rows`` (n, d), for drawing states in a
    plane; with fewer than two directions of variance, the first units' axes complete the basis."""
    centre = rows.mean(axis=0)
    _, _, directions = np.linalg.svd(rows - centre, full_matrices=False)
    basis = np.eye(rows.shape[1], 2)
    taken = min(2, directions.shape[0])
    basis[:, :taken] = directions[:taken].T
    return centre, basis
