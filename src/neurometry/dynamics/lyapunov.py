"""Lyapunov spectra along trajectories: how fast nearby states separate or converge, direction by direction.

The QR method (Benettin et al. 1980; Eckmann & Ruelle 1985, "Ergodic theory of chaos and strange
attractors", Rev. Mod. Phys. 57): carry an orthonormal frame Q along the trajectory, at each step
multiply it by the Jacobian J_t = dF/dh(h_t, x_t) and re-orthonormalise, J_t Q_t = Q_{t+1} R_t; the
exponents are the time averages of log |diag R_t|, in nats per step. For a linear map h' = A h they are
log |eig(A)|, sorted. A flow dh/dt = F(h, x) is stepped with Euler steps of ``dt`` (J = I + dt dF/dh)
and its exponents are per unit time. The Kaplan-Yorke dimension (Kaplan & Yorke 1979) reads the local
dimension of the dynamics off the spectrum.

All trials are carried at once: one batched Jacobian and one batched QR per time step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neurometry.dynamics.fixed_points import jacobians_at
from neurometry.dynamics.recurrent import RecurrentMap, analysed_map
from neurometry.errors import NeurometryError


@dataclass(frozen=True)
class LyapunovSpectrum:
    """``exponents`` (state,) in decreasing order, averaged over trials (nats per step, or per unit time for a
    flow); ``per_trial`` (trials, state); ``kaplan_yorke_dimension`` of the mean spectrum; ``steps`` averaged
    over (after ``discarded`` transient steps)."""

    exponents: np.ndarray
    per_trial: np.ndarray
    kaplan_yorke_dimension: float
    steps: int
    discarded: int


def lyapunov_spectrum(
    model: nn.Module | RecurrentMap,
    inputs: np.ndarray | torch.Tensor,
    initial_states: np.ndarray | torch.Tensor | None = None,
    *,
    module: str | None = None,
    discard: int = 0,
    count: int | None = None,
    dt: float = 1.0,
) -> LyapunovSpectrum:
    """The Lyapunov spectrum of ``model`` along the trajectories its ``inputs`` drive.

    ``inputs``: (trials, time, input) (or (time, input), one trial); ``initial_states``: (trials, state), default
    zeros. The first ``discard`` steps let the frame align before averaging. ``count``: how many leading
    exponents (default all). ``dt``: the Euler step of a flow (``RecurrentMap(continuous=True)``), ignored for
    maps. A module is analysed as a float64 copy.
    """
    dynamics = analysed_map(model, module)
    values = torch.as_tensor(np.array(inputs), dtype=dynamics.dtype)  # a copy: stored inputs are read-only
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise NeurometryError(f"inputs have shape {tuple(values.shape)}; give (trials, time, {dynamics.input_size})")
    dynamics.check_inputs(values)
    if not torch.isfinite(values).all():
        raise NeurometryError("the inputs hold NaN or Inf; give finite inputs")
    trials, time, _ = values.shape
    if not 0 <= discard < time:
        raise NeurometryError(f"discard {discard} must leave some of the {time} steps; give 0 <= discard < {time}")
    size = dynamics.state_size
    count = size if count is None else int(count)
    if not 1 <= count <= size:
        raise NeurometryError(f"count {count} must be between 1 and the state size {size}")
    if dynamics.continuous and dt <= 0:
        raise NeurometryError(f"dt {dt} must be positive")
    states = (torch.zeros(trials, size, dtype=dynamics.dtype) if initial_states is None
              else torch.as_tensor(np.asarray(initial_states), dtype=dynamics.dtype))
    if states.shape != (trials, size):
        raise NeurometryError(f"initial states have shape {tuple(states.shape)}; give ({trials}, {size})")
    frame = torch.eye(size, count, dtype=dynamics.dtype).expand(trials, -1, -1).clone()
    identity = torch.eye(size, dtype=dynamics.dtype)
    total = torch.zeros(trials, count, dtype=dynamics.dtype)
    for t in range(time):
        jacobian = torch.as_tensor(jacobians_at(dynamics, states, values[:, t])[0])
        with torch.no_grad():
            moved = dynamics.step(states, values[:, t])
        if dynamics.continuous:
            jacobian = identity + dt * jacobian
            moved = states + dt * moved
        if not torch.isfinite(moved).all():
            raise NeurometryError(f"the trajectory left the finite numbers at step {t}; give smaller inputs or states")
        frame, upper = torch.linalg.qr(jacobian @ frame)
        growth = upper.diagonal(dim1=1, dim2=2).abs()
        if t >= discard:
            total += torch.log(growth.clamp_min(torch.finfo(dynamics.dtype).tiny))
        states = moved
    steps = time - discard
    per_trial = (total / (steps * (dt if dynamics.continuous else 1.0))).numpy()
    per_trial = -np.sort(-per_trial, axis=1)
    exponents = per_trial.mean(axis=0)
    return LyapunovSpectrum(exponents, per_trial, kaplan_yorke_dimension(exponents), steps, discard)


def kaplan_yorke_dimension(exponents: np.ndarray) -> float:
    """D = k + (l_1 + ... + l_k) / |l_{k+1}|, k the largest number of leading exponents (in decreasing order)
    whose sum is not negative; 0 when the first is negative, the count of exponents when every partial sum is
    non-negative."""
    ordered = -np.sort(-np.asarray(exponents, dtype=float))
    sums = np.cumsum(ordered)
    k = int(np.sum(sums >= 0)) if sums[0] >= 0 else 0
    if k == 0:
        return 0.0
    if k == len(ordered):
        return float(k)
    # sums >= 0 is a prefix: after the first negative partial sum the exponents only get more negative
    return float(k + sums[k - 1] / abs(ordered[k]))
