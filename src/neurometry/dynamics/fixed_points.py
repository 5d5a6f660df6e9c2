"""Fixed and slow points of a recurrent system, and the linearisation around them.

Sussillo & Barak (2013), "Opening the black box: low-dimensional dynamics in high-dimensional recurrent
neural networks" (Neural Computation 25(3)): minimise q(h) = 1/2 ||F(h, x*) - h||^2 from many initial
states taken from the network's own trajectories; minima with q = 0 are fixed points, minima with small
q > 0 slow points, and the Jacobian at each says how the dynamics behave nearby. Golub & Sussillo (2018),
"FixedPointFinder" (JOSS 3(31)), fixed the practice followed here: Adam on all initial states jointly,
q tolerance 1e-12, points closer than 1e-3 in every unit merged, and points more than 10x the initial
states' mean distance from their centroid flagged as outliers.

Here every state is optimised in one batch (float64 on a copy of the model), and states already near a
fixed point are finished with Levenberg-Marquardt steps on F(h) - h = 0 (Newton's method, damped where
the Jacobian is singular, as on a line attractor, or where q has a minimum above zero, a slow point),
which reach q ~ 1e-20 where Adam alone crawls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from neurometry.dynamics.recurrent import RecurrentMap, analysed_map
from neurometry.errors import NeurometryError

FIXED_TOLERANCE = 1e-12  # q below which a point is fixed (Golub & Sussillo's tol_q)
SLOW_TOLERANCE = 1e-4  # q below which a minimum is kept as a slow point
UNIQUE_TOLERANCE = 1e-3  # points closer than this in every unit are one point (their tol_unique)
OUTLIER_DISTANCE = 10.0  # in mean distances of the initial states from their centroid
NEWTON_FROM_Q = 1e-3  # states with q below this are finished by Levenberg-Marquardt steps
NEWTON_STEPS = 50  # at the end, for the states still above the polish
CHECK_EVERY = 100  # Adam iterations between Levenberg-Marquardt passes and stall checks
CHECK_NEWTON_STEPS = 8
POLISH = 1e-6  # Levenberg-Marquardt goes on to q below POLISH x the fixed tolerance (a few more steps)
STABILITY_MARGIN = 1e-6  # |lambda| beyond 1 (or Re lambda beyond 0) by more than this is unstable


@dataclass(frozen=True)
class FixedPoints:
    """The points found, one row each (k of them), with their linearisation.

    ``states`` (k, state); ``inputs`` (k, input) the x* each was found at; ``q`` (k,); ``kind`` (k,) "fixed"
    or "slow"; ``outlier`` (k,) True far from the initial states; ``jacobians`` (k, state, state) dF/dh;
    ``input_jacobians`` (k, state, input) dF/dx; ``eigenvalues`` (k, state) complex, by decreasing
    magnitude (a map) or real part (a flow); ``eigenvectors`` (k, state, state), column j for eigenvalue j;
    ``unstable_directions`` (k,) how many eigenvalues lie outside the unit circle (a map) or in the right
    half plane (a flow); ``stability`` (k,) "stable", "saddle" or "unstable". ``best_q`` is the smallest q any
    initial state reached, ``converged`` whether any reached the fixed tolerance.
    """

    states: np.ndarray
    inputs: np.ndarray
    q: np.ndarray
    kind: np.ndarray
    outlier: np.ndarray
    jacobians: np.ndarray
    input_jacobians: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    unstable_directions: np.ndarray
    stability: np.ndarray
    continuous: bool
    n_initial: int
    best_q: float
    converged: bool
    iterations: int

    def __len__(self) -> int:
        return len(self.states)

    def select(self, keep: np.ndarray) -> FixedPoints:
        """The points where ``keep`` (k,) is True."""
        keep = np.asarray(keep, dtype=bool)
        per_point = ("states", "inputs", "q", "kind", "outlier", "jacobians", "input_jacobians", "eigenvalues",
                     "eigenvectors", "unstable_directions", "stability")
        return FixedPoints(**{f: getattr(self, f)[keep] for f in per_point}, continuous=self.continuous,
                           n_initial=self.n_initial, best_q=self.best_q, converged=self.converged,
                           iterations=self.iterations)

    def table(self) -> pd.DataFrame:
        """One row per point: kind, q, stability, unstable directions, outlier and the largest eigenvalue."""
        return pd.DataFrame({
            "kind": self.kind, "q": self.q, "stability": self.stability,
            "unstable_directions": self.unstable_directions, "outlier": self.outlier,
            "top_eigenvalue_abs": np.abs(self.eigenvalues[:, 0]) if len(self) else np.zeros(0),
            "top_eigenvalue_real": self.eigenvalues[:, 0].real if len(self) else np.zeros(0),
        })


def find_fixed_points(
    model: nn.Module | RecurrentMap,
    initial_states: np.ndarray | torch.Tensor,
    inputs: np.ndarray | torch.Tensor | None = None,
    *,
    module: str | None = None,
    noise: float = 0.0,
    seed: int = 0,
    fixed_tolerance: float = FIXED_TOLERANCE,
    slow_tolerance: float = SLOW_TOLERANCE,
    unique_tolerance: float = UNIQUE_TOLERANCE,
    outlier_distance: float = OUTLIER_DISTANCE,
    max_iterations: int = 5000,
    learning_rate: float = 0.01,
    progress: Callable[[int, float], None] | None = None,
) -> FixedPoints:
    """Fixed and slow points of ``model`` at constant input x*, from ``initial_states``.

    ``model``: a recurrent model or :class:`RecurrentMap` (see :func:`recurrent_map`; ``module`` picks the
    recurrent module of a model holding several). A module is analysed as a float64 copy. ``initial_states``:
    (n, state), typically states of recorded trajectories (:func:`sample_states`), each moved by Gaussian
    noise of standard deviation ``noise``. ``inputs``: x*, (input,) for every state or (n, input) one per
    state; None is zero input. Adam (``learning_rate``) runs on all states at once for at most
    ``max_iterations`` steps, a state stopping once its q is below ``fixed_tolerance``; then Newton steps
    finish those near a fixed point. Minima with q below ``slow_tolerance`` are kept, near-duplicates
    merged. ``progress(iteration, best q)`` is called every 100 iterations.
    """
    dynamics = analysed_map(model, module)
    dtype = dynamics.dtype
    states = torch.as_tensor(np.asarray(initial_states), dtype=dtype)
    if states.ndim != 2 or states.shape[1] != dynamics.state_size or len(states) == 0:
        raise NeurometryError(
            f"initial states have shape {tuple(states.shape)}; give (n, {dynamics.state_size}): states of "
            f"{dynamics.name}, e.g. sampled from its recorded trajectories"
        )
    if not torch.isfinite(states).all():
        raise NeurometryError("the initial states hold NaN or Inf; sample them from finite trajectories")
    fixed_inputs = _inputs_for(dynamics, inputs, len(states))
    if noise < 0:
        raise NeurometryError(f"noise {noise} must be zero or positive (a standard deviation)")
    if noise:
        generator = torch.Generator().manual_seed(seed)
        states = states + noise * torch.randn(states.shape, generator=generator, dtype=dtype)
    start = states.clone()
    states, q, iterations = _minimise_q(dynamics, states, fixed_inputs, fixed_tolerance, max_iterations,
                                        learning_rate, progress)
    states, q = _newton_finish(dynamics, states, fixed_inputs, q, fixed_tolerance)
    best_q = float(q.min())
    keep = q < slow_tolerance
    order = torch.argsort(q[keep])
    kept_states, kept_inputs, kept_q = states[keep][order], fixed_inputs[keep][order], q[keep][order]
    unique = _unique(kept_states, unique_tolerance)
    kept_states, kept_inputs, kept_q = kept_states[unique], kept_inputs[unique], kept_q[unique]
    centroid = start.mean(dim=0)
    scale = (start - centroid).norm(dim=1).mean().clamp_min(torch.finfo(dtype).tiny)
    outlier = ((kept_states - centroid).norm(dim=1) / scale > outlier_distance).numpy()
    jacobians, input_jacobians = jacobians_at(dynamics, kept_states, kept_inputs)
    eigenvalues, eigenvectors = _eigen(jacobians, dynamics.continuous)
    unstable = count_unstable(eigenvalues, dynamics.continuous)
    size = dynamics.state_size
    return FixedPoints(
        states=kept_states.numpy(), inputs=kept_inputs.numpy(), q=kept_q.numpy(),
        kind=np.where(kept_q.numpy() < fixed_tolerance, "fixed", "slow"), outlier=outlier,
        jacobians=jacobians, input_jacobians=input_jacobians, eigenvalues=eigenvalues, eigenvectors=eigenvectors,
        unstable_directions=unstable,
        stability=np.where(unstable == 0, "stable", np.where(unstable == size, "unstable", "saddle")),
        continuous=dynamics.continuous, n_initial=len(start), best_q=best_q,
        converged=best_q < fixed_tolerance, iterations=iterations,
    )


def sample_states(trajectories: np.ndarray, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` states drawn at random (seeded, with replacement) from ``trajectories`` (trials, time,
    state) or (rows, state): the initial states Sussillo & Barak start from. Returns (count, state)."""
    trajectories = np.asarray(trajectories)
    rows = trajectories.reshape(-1, trajectories.shape[-1])
    if len(rows) == 0 or count < 1:
        raise NeurometryError(f"cannot draw {count} states from {len(rows)}; give trajectories and count >= 1")
    return rows[np.random.default_rng(seed).integers(0, len(rows), size=count)]


def jacobians_at(dynamics: RecurrentMap, states: torch.Tensor, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """dF/dh (n, state, state) and dF/dx (n, state, input) at each (state, input) pair, by autograd."""
    if len(states) == 0:
        size, width = dynamics.state_size, dynamics.input_size
        return np.zeros((0, size, size)), np.zeros((0, size, width))

    def summed(batch_states: torch.Tensor, batch_inputs: torch.Tensor) -> torch.Tensor:
        # each row of F depends on its own state and input only, so the Jacobian of the sum over rows holds
        # every row's Jacobian: one vectorised backward pass per output unit, not a vmap(jacrev) per row
        return dynamics.step(batch_states, batch_inputs).sum(dim=0)

    with torch.enable_grad():
        jacobian_h, jacobian_x = torch.autograd.functional.jacobian(summed, (states, inputs), vectorize=True)
    return jacobian_h.detach().permute(1, 0, 2).numpy(), jacobian_x.detach().permute(1, 0, 2).numpy()


def count_unstable(eigenvalues: np.ndarray, continuous: bool, margin: float = STABILITY_MARGIN) -> np.ndarray:
    """Unstable directions per point of ``eigenvalues`` (k, state): |lambda| > 1 for a map, Re lambda > 0 for
    a flow (beyond ``margin``, so a marginal direction such as a line attractor's counts as stable). (k,)"""
    if continuous:
        return (eigenvalues.real > margin).sum(axis=1)
    return (np.abs(eigenvalues) > 1 + margin).sum(axis=1)


def _inputs_for(dynamics: RecurrentMap, inputs, count: int) -> torch.Tensor:
    if inputs is None:
        return torch.zeros(count, dynamics.input_size, dtype=dynamics.dtype)
    values = torch.as_tensor(np.asarray(inputs), dtype=dynamics.dtype)
    dynamics.check_inputs(values)
    if not torch.isfinite(values).all():
        raise NeurometryError("the inputs x* hold NaN or Inf; give finite inputs")
    if values.ndim == 1:
        return values.expand(count, -1).clone()
    if values.shape != (count, dynamics.input_size):
        raise NeurometryError(
            f"inputs have shape {tuple(values.shape)}; give one x* ({dynamics.input_size},) or one per initial "
            f"state ({count}, {dynamics.input_size})"
        )
    return values


def _q(dynamics: RecurrentMap, states: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return 0.5 * dynamics.velocity(states, inputs).pow(2).sum(dim=1)


def _minimise_q(dynamics: RecurrentMap, states: torch.Tensor, inputs: torch.Tensor, tolerance: float,
                max_iterations: int, learning_rate: float, progress) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Adam on every state at once (each with its own moments), only the states still moving computed. Every
    CHECK_EVERY iterations the states near a fixed point are finished by Levenberg-Marquardt, and a state whose
    best q fell by less than 0.1% since the last check stops (Golub & Sussillo's tol_dq): a slow point, or
    one that will not get anywhere. Returns the states at the lowest q each reached, those q, and the
    iterations run."""
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8
    position = states.clone()
    with torch.no_grad():
        best_q = _q(dynamics, position, inputs)
    if not torch.isfinite(best_q).all():
        raise NeurometryError(f"{dynamics.name} gives NaN or Inf at the initial states; check the model and states")
    best = position.clone()
    first, second = torch.zeros_like(position), torch.zeros_like(position)
    moving = best_q >= tolerance
    checked_q = best_q.clone()
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        rows = torch.nonzero(moving).flatten()
        if len(rows) == 0:
            break
        with torch.enable_grad():
            current = position[rows].requires_grad_(True)
            q = _q(dynamics, current, inputs[rows])
            (gradient,) = torch.autograd.grad(q.sum(), current)  # states are independent: each its own q's
        q = q.detach()
        better = q < best_q[rows]
        best_q[rows[better]] = q[better]
        best[rows[better]] = current.detach()[better]
        first[rows] = beta1 * first[rows] + (1 - beta1) * gradient
        second[rows] = beta2 * second[rows] + (1 - beta2) * gradient.pow(2)
        corrected = (first[rows] / (1 - beta1**iteration)) / ((second[rows] / (1 - beta2**iteration)).sqrt() + epsilon)
        position[rows] = current.detach() - learning_rate * corrected
        if iteration % CHECK_EVERY == 0:
            near = rows[best_q[rows] < NEWTON_FROM_Q]
            if len(near):
                best[near], best_q[near] = _levenberg_marquardt(dynamics, best[near], inputs[near], best_q[near],
                                                                CHECK_NEWTON_STEPS, tolerance)
                position[near] = best[near]
            moving &= (best_q >= tolerance) & (best_q < (1 - 1e-3) * checked_q)
            checked_q = best_q.clone()
            if progress is not None:
                progress(iteration, float(best_q.min()))
    return best, best_q, iteration


def _newton_finish(dynamics: RecurrentMap, states: torch.Tensor, inputs: torch.Tensor, q: torch.Tensor,
                   tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The last Levenberg-Marquardt steps, for every state with q < NEWTON_FROM_Q not yet polished."""
    near = torch.nonzero(q < NEWTON_FROM_Q).flatten()
    states, q = states.clone(), q.clone()
    if len(near):
        states[near], q[near] = _levenberg_marquardt(dynamics, states[near], inputs[near], q[near], NEWTON_STEPS,
                                                     tolerance)
    return states, q


def _levenberg_marquardt(dynamics: RecurrentMap, states: torch.Tensor, inputs: torch.Tensor, q: torch.Tensor,
                         steps: int, tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Levenberg-Marquardt steps on the residual r = F(h) - h (a map) or F(h) (a flow): Newton's method where
    the Jacobian of r is regular (q falls from 1e-3 to ~1e-20 in a few steps), damped where it is singular (a
    continuum of fixed points) or where r has a minimum above zero (a slow point, where Adam crawls). Each
    state has its own damping, takes a step only where it lowers q, and stops once q is below
    POLISH * ``tolerance``."""
    states, q = states.clone(), q.clone()
    identity = torch.eye(dynamics.state_size, dtype=states.dtype)
    damping = torch.full((len(states),), 1e-3, dtype=states.dtype)
    for _ in range(steps):
        rows = torch.nonzero((q >= POLISH * tolerance) & (damping < 1e12)).flatten()
        if len(rows) == 0:
            break
        current = states[rows]
        jacobian, _ = jacobians_at(dynamics, current, inputs[rows])
        system = torch.as_tensor(jacobian) - (0 if dynamics.continuous else identity)
        with torch.no_grad():
            residual = dynamics.velocity(current, inputs[rows])
        gradient = (system.transpose(1, 2) @ residual[..., None])[..., 0]
        normal = system.transpose(1, 2) @ system
        scale = normal.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
        step = torch.linalg.solve(normal + (damping[rows] * scale)[:, None, None] * identity, -gradient)
        with torch.no_grad():
            moved_q = _q(dynamics, current + step, inputs[rows])
        better = torch.isfinite(moved_q) & (moved_q < q[rows])
        states[rows[better]] = current[better] + step[better]
        q[rows[better]] = moved_q[better]
        damping[rows] = torch.where(better, damping[rows] / 10, damping[rows] * 10).clamp(1e-12, 1e12)
    return states, q


def _unique(states: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Indices of ``states`` (in order: the lowest q first) that differ from every earlier kept one by at
    least ``tolerance`` in some unit."""
    kept: list[int] = []
    for i in range(len(states)):
        if not kept or (states[kept] - states[i]).abs().amax(dim=1).min() >= tolerance:
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


def _eigen(jacobians: np.ndarray, continuous: bool) -> tuple[np.ndarray, np.ndarray]:
    if len(jacobians) == 0:
        size = jacobians.shape[1]
        return np.zeros((0, size), dtype=complex), np.zeros((0, size, size), dtype=complex)
    values, vectors = np.linalg.eig(jacobians)
    key = -values.real if continuous else -np.abs(values)
    order = np.argsort(key, axis=1, kind="stable")
    values = np.take_along_axis(values, order, axis=1)
    vectors = np.take_along_axis(vectors, order[:, None, :], axis=2)
    return values.astype(complex), vectors.astype(complex)
