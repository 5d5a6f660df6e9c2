"""Reconstruction metrics shared by every decomposition (SAEs, semi-NMF, PCA, ICA).

The definitions follow the SAE literature (Gao et al. 2024; SAELens' evals):

- ``l0``: mean number of non-zero latents per row;
- ``fvu``: fraction of variance unexplained, sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over rows
  (the mean taken over the evaluated rows);
- ``dead_fraction``: latents never non-zero on the evaluated rows;
- ``dense_fraction``: latents non-zero on more than ``dense_threshold`` of the rows.

They accumulate in float64 over blocks of rows, so a held-out set may be streamed from a store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurometry.errors import NeurometryError

DENSE_THRESHOLD = 0.1
"""A latent active on more than this fraction of rows counts as dense."""


@dataclass(frozen=True)
class ReconstructionMetrics:
    """Scores of a decomposition on a set of rows (see the module docstring)."""

    n_rows: int
    l0: float
    fvu: float
    dead_fraction: float
    dense_fraction: float
    mse: float  # mean squared error per element

    @property
    def explained_variance(self) -> float:
        return 1.0 - self.fvu

    def as_dict(self) -> dict[str, float]:
        return {
            "n_rows": self.n_rows,
            "l0": self.l0,
            "fvu": self.fvu,
            "dead_fraction": self.dead_fraction,
            "dense_fraction": self.dense_fraction,
            "mse": self.mse,
        }


def _as64(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t.detach().to(torch.float64).reshape(t.shape[0], -1)


class ReconstructionAccumulator:
    """Streams (x, x_hat, latents) blocks into :class:`ReconstructionMetrics`.

    Shapes per block: x and x_hat (b, d); latents (b, m), the code that made x_hat (dense codes such
    as PCA scores count every non-zero entry).
    """

    def __init__(self, dense_threshold: float = DENSE_THRESHOLD):
        self.dense_threshold = dense_threshold
        self.n = 0
        self.sum_x: torch.Tensor | None = None
        self.sum_x2 = 0.0
        self.sum_err2 = 0.0
        self.active_rows: torch.Tensor | None = None
        self.nonzero = 0.0

    def update(
        self,
        x: np.ndarray | torch.Tensor,
        reconstruction: np.ndarray | torch.Tensor,
        latents: np.ndarray | torch.Tensor,
    ) -> None:
        x64, r64 = _as64(x), _as64(reconstruction)
        if x64.shape != r64.shape:
            raise NeurometryError(f"reconstruction has shape {tuple(r64.shape)}, the rows {tuple(x64.shape)}")
        if not (torch.isfinite(x64).all() and torch.isfinite(r64).all()):
            raise NeurometryError("rows or reconstruction contain NaN or Inf; check the input activations")
        self.n += len(x64)
        s = x64.sum(0)
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.sum_x2 += float((x64 * x64).sum())
        self.sum_err2 += float(((x64 - r64) ** 2).sum())
        z = latents if isinstance(latents, torch.Tensor) else torch.from_numpy(np.asarray(latents))
        if z.shape[0] != len(x64):
            raise NeurometryError(f"latents have {z.shape[0]} rows, the activations {len(x64)}")
        active = z.detach().reshape(len(x64), -1) != 0
        self.nonzero += float(active.sum())
        counts = active.sum(0, dtype=torch.float64)
        self.active_rows = counts if self.active_rows is None else self.active_rows + counts

    def result(self) -> ReconstructionMetrics:
        if self.n < 2 or self.sum_x is None or self.active_rows is None:
            raise NeurometryError(f"reconstruction metrics need at least 2 rows, got {self.n}")
        total = self.sum_x2 - float((self.sum_x * self.sum_x).sum()) / self.n
        if total <= 0:
            raise NeurometryError("the rows have no variance; FVU is undefined (are they all identical?)")
        freq = self.active_rows / self.n
        d = len(self.sum_x)
        return ReconstructionMetrics(
            n_rows=self.n,
            l0=self.nonzero / self.n,
            fvu=self.sum_err2 / total,
            dead_fraction=float((freq == 0).double().mean()),
            dense_fraction=float((freq > self.dense_threshold).double().mean()),
            mse=self.sum_err2 / (self.n * d),
        )


def reconstruction_metrics(
    x: np.ndarray | torch.Tensor,
    reconstruction: np.ndarray | torch.Tensor,
    latents: np.ndarray | torch.Tensor,
    dense_threshold: float = DENSE_THRESHOLD,
) -> ReconstructionMetrics:
    """Metrics of one in-memory set: x, reconstruction (n, d), latents (n, m)."""
    acc = ReconstructionAccumulator(dense_threshold)
    acc.update(x, reconstruction, latents)
    return acc.result()
