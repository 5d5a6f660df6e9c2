import numpy as np
import torch

torch.set_num_threads(2)


def planted_subspace(n: int, k: int, d: int, noise: float, seed: int = 0) -> np.ndarray:
    """n points uniform-Gaussian in a random k-dim linear subspace of R^d, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0]
    return rng.normal(size=(n, k)) @ basis.T + noise * rng.normal(size=(n, d))


def with_singular_values(s: np.ndarray, n: int, d: int, seed: int = 0, offset: float = 3.0) -> np.ndarray:
    """(n, d) data whose centred singular values are exactly ``s`` (plus a constant row offset)."""
    rng = np.random.default_rng(seed)
    r = len(s)
    a = rng.normal(size=(n, r))
    u = np.linalg.qr(a - a.mean(0))[0]  # orthonormal columns, each orthogonal to the ones vector
    v = np.linalg.qr(rng.normal(size=(d, r)))[0]
    return (u * s) @ v.T + offset * rng.normal(size=d)
