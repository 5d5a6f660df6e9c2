"""Dynamical Similarity Analysis (DSA): how alike two systems' dynamics are, whatever their coordinates.

Ostrow, Eisen, Kozachkov & Fiete (2023), "Beyond Geometry: Comparing the Temporal Structure of
Computation in Neural Circuits via Dynamical Similarity Analysis" (NeurIPS 2023):

1. Delay-embed each system's trajectories (a Hankel matrix), so that a linear operator can stand for
   nonlinear dynamics (Koopman theory).
2. Fit that operator by HAVOK dynamic mode decomposition: take the SVD of the Hankel matrix, keep the
   leading ``rank`` time-side singular vectors v_t and regress v_{t+1} on v_t; the operator A is
   (rank, rank).
3. Compare two operators by Procrustes analysis over vector fields:
   min over orthogonal C of ||A - C B C^T||_F, scored as the angle arccos(<A, C B C^T> / (||A|| ||B||))
   ("angular", the paper's choice) or as the Frobenius distance between the unit-norm operators
   ("euclidean"). Operators of different sizes are zero-padded to the larger (dsa-metric 2.x instead
   falls back to comparing eigenvalues).

The definitions follow the authors' package ``dsa-metric`` (``DSA.dmd.DMD``, ``DSA.simdist``), in float64
where it works in float32. The minimisation over C differs: theirs runs Adam on a Cayley-parametrised C
for a fixed number of steps from two starts; here a handful of informed and random starts (see
:func:`vector_field_procrustes`) are polished together by Newton's method on the orthogonal group until
the gradient vanishes, which reaches equal or lower distances in a fraction of the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.linalg import thin_svd
from neurometry.threads import blas_threads

Score = Literal["angular", "euclidean"]
SCORES = ("angular", "euclidean")
GRAM_CONDITION = 1e-4  # s_rank / s_1 above which the Gram matrix's eigenvectors are accurate (to ~1e-8)


# ---- 1. delay embedding ---------------------------------------------------------------------------------


def delay_embedding(trajectories: np.ndarray, n_delays: int, delay_interval: int = 1) -> np.ndarray:
    """The delay embedding (Hankel matrix) of ``trajectories``, as ``dsa-metric`` builds it.

    ``trajectories``: (trials, time, units) or (time, units). Returns (trials, time', units * n_delays)
    or (time', units * n_delays), with time' = time - (n_delays - 1) * delay_interval. Row t holds the
    states at t + (n_delays - 1 - k) * delay_interval for k = 0 .. n_delays - 1, newest first: block k of
    the units is the state k delays back (Ostrow et al. 2023).
    """
    x = _as_trajectories(trajectories, "trajectories", keep_2d=True)
    _check_delays(x, n_delays, delay_interval, "trajectories")
    time = x.shape[-2]
    lag = (n_delays - 1) * delay_interval
    blocks = [x[..., lag - k * delay_interval : time - k * delay_interval, :] for k in range(n_delays)]
    return np.concatenate(blocks, axis=-1)


# ---- 2. the linear operator (HAVOK DMD) ---------------------------------------------------------------


@dataclass(frozen=True)
class DMDFit:
    """One system's linear operator from HAVOK DMD on its delay embedding (Ostrow et al. 2023).

    ``operator``: (rank, rank), v_{t+1} ~= operator @ v_t in the leading ``rank`` time-side singular
    vectors of the Hankel matrix: ``dsa-metric``'s ``DMD.A_v`` up to the signs the SVD gives those
    vectors (D A_v D, D diagonal +-1), which change no DSA distance. ``singular_values``: (m,) of the
    Hankel matrix, m = min(trials * time', units * n_delays), time' = time - (n_delays - 1) * delay_interval.
    """

    operator: np.ndarray
    singular_values: np.ndarray
    rank: int
    n_delays: int
    delay_interval: int

    @property
    def eigenvalues(self) -> np.ndarray:
        """The operator's eigenvalues (complex), by decreasing magnitude: invariant to the SVD's basis."""
        values = np.linalg.eigvals(self.operator)
        return values[np.argsort(-np.abs(values), kind="stable")]


def fit_dmd(
    trajectories: np.ndarray,
    n_delays: int,
    delay_interval: int = 1,
    rank: int | None = None,
    lamb: float = 0.0,
) -> DMDFit:
    """Fit one system's linear operator by HAVOK DMD (Ostrow et al. 2023).

    ``trajectories``: (trials, time, units) or (time, units). The delay embedding (see
    :func:`delay_embedding`) is flattened over trials to H (trials * time', units * n_delays) with SVD
    H = V S U^T; the time-side vectors V are split back into trials so that no transition crosses two
    trials, and v_{t+1}[:rank] is regressed on v_t[:rank] with ridge penalty ``lamb`` (principal-component
    regression, as ``dsa-metric``'s ``DMD``, whose own default is ``lamb=1e-8``). ``rank`` None keeps
    every column the regression can identify and the data's numerical rank allows; a larger ``rank``
    than either is an error (``dsa-metric`` fits rounding noise there).
    """
    with blas_threads(torch_threads=True):  # small products: one thread each (see neurometry.threads)
        return _fit_dmd(trajectories, n_delays, delay_interval, rank, lamb, "trajectories")


def _fit_dmd(trajectories: np.ndarray, n_delays: int, delay_interval: int, rank: int | None, lamb: float,
             name: str) -> DMDFit:
    x = _as_trajectories(trajectories, name)
    _check_delays(x, n_delays, delay_interval, name)
    if not np.isfinite(lamb) or lamb < 0:
        raise NeurometryError(f"lamb={lamb} must be a finite ridge penalty >= 0 (0 for plain least squares)")
    hankel = delay_embedding(x, n_delays, delay_interval)
    trials, steps, width = hankel.shape
    most = min(width, trials * (steps - 1))  # trials * (steps - 1) transitions identify no more columns
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise NeurometryError(f"rank={rank!r} must be a whole number >= 1 (or None for the largest possible)")
        if rank > most:
            raise NeurometryError(
                f"rank={rank} is larger than possible for {name} of shape {x.shape} with n_delays={n_delays} "
                f"(at most {most} = min(units * n_delays, trials * transitions)); lower rank"
            )
    flat = hankel.reshape(trials * steps, width)
    modes, singular_values = _time_modes(flat, rank or most)
    numerical = _numerical_rank(singular_values, flat.shape)
    if rank is None:
        rank = min(most, numerical)
    elif rank > numerical:
        raise NeurometryError(
            f"rank={rank} is larger than the numerical rank {numerical} of {name}'s delay embedding (its "
            f"other directions are rounding noise); lower rank"
        )
    if rank == 0:
        raise NeurometryError(f"{name} does not vary (its delay embedding is all zeros); pass recorded activity")
    modes = modes[:, :rank].reshape(trials, steps, rank)
    before = modes[:, :-1].reshape(-1, rank)
    after = modes[:, 1:].reshape(-1, rank)
    coefficients = _ridge(before, after, lamb)  # after ~= before @ coefficients, on row vectors
    return DMDFit(operator=coefficients.T, singular_values=singular_values, rank=int(rank), n_delays=n_delays,
                  delay_interval=delay_interval)


def _time_modes(hankel: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` leading left singular vectors of ``hankel`` (samples, width) and its singular values."""
    samples, width = hankel.shape
    # Through the (width, width) Gram matrix: ~4x faster than an SVD of the tall Hankel matrix, and as
    # accurate while the kept singular values are not small (it squares their condition number).
    variances, directions = np.linalg.eigh(hankel.T @ hankel)
    variances, directions = variances[::-1][: min(samples, width)], directions[:, ::-1]
    singular_values = np.sqrt(np.clip(variances, 0.0, None))
    if singular_values[count - 1] > GRAM_CONDITION * singular_values[0]:
        return hankel @ directions[:, :count] / singular_values[:count], singular_values
    modes, singular_values, _ = thin_svd(hankel)
    return modes[:, :count], singular_values


def _numerical_rank(singular_values: np.ndarray, shape: tuple[int, ...]) -> int:
    """How many singular values stand above rounding error (numpy's matrix_rank tolerance)."""
    tolerance = singular_values[0] * max(shape) * np.finfo(np.float64).eps
    return int(np.sum(singular_values > tolerance)) if singular_values[0] > 0 else 0


def _ridge(before: np.ndarray, after: np.ndarray, lamb: float) -> np.ndarray:
    """argmin_W ||after - before @ W||^2 + lamb ||W||^2, by least squares on the augmented rows (stable)."""
    if lamb == 0:
        return np.linalg.lstsq(before, after, rcond=None)[0]
    size = before.shape[1]
    design = np.vstack([before, np.sqrt(lamb) * np.eye(size)])
    target = np.vstack([after, np.zeros((size, after.shape[1]))])
    return np.linalg.lstsq(design, target, rcond=None)[0]


# ---- 3. Procrustes analysis over vector fields ----------------------------------------------------------


@dataclass(frozen=True)
class VectorFieldAlignment:
    """The orthogonal C that best maps operator B onto A, and the distances under it.

    ``rotation``: (n, n) orthogonal C (n the larger size; the smaller operator zero-padded).
    ``residual``: ||A - C B C^T||_F, the minimum over orthogonal C (Ostrow et al. 2023).
    ``angular``: arccos(<A, C B C^T>_F / (||A||_F ||B||_F)) in radians, in [0, pi].
    ``euclidean``: ||A / ||A|| - C (B / ||B||) C^T||_F, in [0, 2], = sqrt(2 - 2 cos(angular)) (dsa-metric
    normalises both operators before scoring). The same C minimises all three.
    """

    rotation: np.ndarray
    residual: float
    angular: float
    euclidean: float

    def score(self, name: Score = "angular") -> float:
        """The distance named ``name``: "angular" or "euclidean"."""
        return getattr(self, _check_score(name))


def vector_field_procrustes(
    a: np.ndarray,
    b: np.ndarray,
    *,
    restarts: int = 8,
    seed: int = 0,
    gradient_tolerance: float = 1e-9,
    max_iterations: int = 200,
) -> VectorFieldAlignment:
    """min over orthogonal C of ||A - C B C^T||_F (Ostrow et al. 2023) and DSA's distances.

    ``a``: (n, n), ``b``: (k, k); the smaller is zero-padded to the larger size. Minimising the residual
    is maximising <A, C B C^T> (as ||C B C^T|| = ||B||), a quadratic over the orthogonal group with many
    local optima, so several starts are polished at once and the best kept:

    * C aligning real Schur-like bases of A and B, eigenvalues paired at least cost and basis signs set
      greedily: the optimum when A and B are normal (symmetric ones included; Hoffman-Wielandt);
    * C aligning the eigenbases of their symmetric parts;
    * the identity and the swap of the first two axes (DMD operators from SVD bases come with their
      leading directions first, so these are informed starts in both components of the group, as
      ``dsa-metric``'s two runs);
    * ``restarts`` random orthogonal matrices drawn with ``seed``.

    Each is polished by Riemannian Newton-CG until the gradient's norm (for unit-norm operators) is below
    ``gradient_tolerance`` or after ``max_iterations`` Newton steps. Deterministic for a given seed.
    """
    a, b = _as_operator(a, "a"), _as_operator(b, "b")
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 0:
        raise NeurometryError(f"restarts={restarts!r} must be a whole number >= 0")
    size = max(len(a), len(b))
    a, b = _pad(a, size), _pad(b, size)
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a == 0 or norm_b == 0:
        raise NeurometryError("an operator is all zeros, so it has no direction to compare; check its fit")
    unit_a, unit_b = a / norm_a, b / norm_b
    swap = np.eye(size)[[1, 0, *range(2, size)]] if size > 1 else -np.eye(1)
    rng = np.random.default_rng(seed)
    with blas_threads():  # many small products: one thread each (see neurometry.threads)
        starts = [_eigenbasis_start(unit_a, unit_b), _symmetric_part_start(unit_a, unit_b), np.eye(size), swap]
        starts += [_random_orthogonal(size, rng) for _ in range(restarts)]
        rotations = _polish(unit_a, unit_b, np.stack(starts), gradient_tolerance, max_iterations)
    best = rotations[int(np.argmax([_overlap(unit_a, unit_b, rotation) for rotation in rotations]))]
    turned_b = best @ unit_b @ best.T
    gap = np.linalg.norm(unit_a - turned_b)
    return VectorFieldAlignment(
        rotation=best,
        residual=float(np.linalg.norm(a - best @ b @ best.T)),
        # the angle between unit vectors u, v as 2 atan2(|u - v|, |u + v|): exact near 0, unlike arccos
        angular=float(2.0 * np.arctan2(gap, np.linalg.norm(unit_a + turned_b))),
        euclidean=float(gap),
    )


def _overlap(a: np.ndarray, b: np.ndarray, rotation: np.ndarray) -> float:
    """<A, C B C^T>_F."""
    return float(np.sum(a * (rotation @ b @ rotation.T)))


def _polish(a: np.ndarray, b: np.ndarray, starts: np.ndarray, gradient_tolerance: float,
            max_iterations: int) -> np.ndarray:
    """Maximise <A, C B C^T> over orthogonal C from each of ``starts`` (s, n, n) at once; returns (s, n, n).

    Riemannian Newton-CG (Absil, Mahony & Sepulchre 2008, ch. 6; Nocedal & Wright 2006, alg. 7.1) on the
    orthogonal group: C moves along C cay(t D) (the Cayley retraction keeps C exactly orthogonal and in
    its component) with D skew-symmetric from conjugate gradients on the Newton equation, stopped at
    negative curvature, and t from Armijo backtracking. The landscape is badly conditioned (near-
    symmetries of the operators), where first-order methods crawl and Newton steps do not.
    """
    rotations = starts.copy()
    turned = _transpose(rotations) @ a @ rotations  # C^T A C: the objective is <C^T A C, B>
    overlaps = np.sum(turned * b, axis=(1, 2))
    active = np.ones(len(rotations), dtype=bool)
    for _ in range(max_iterations):
        gradients = _skew(_transpose(turned) @ b - b @ _transpose(turned))
        active &= np.linalg.norm(gradients, axis=(1, 2)) > gradient_tolerance
        if not active.any():
            break
        index = np.flatnonzero(active)
        directions = _newton_directions(turned[index], b, gradients[index])
        slopes = np.sum(gradients[index] * directions, axis=(1, 2))
        steps = np.ones(len(index))
        pending = np.ones(len(index), dtype=bool)
        for _ in range(50):  # halvings: 2^-50 is below any useful step
            moved = index[pending]
            candidate = rotations[moved] @ _cayley(steps[pending, None, None] * directions[pending])
            candidate_turned = _transpose(candidate) @ a @ candidate
            candidate_overlaps = np.sum(candidate_turned * b, axis=(1, 2))
            accept = candidate_overlaps >= overlaps[moved] + 1e-4 * steps[pending] * slopes[pending]
            accepted = moved[accept]
            rotations[accepted], turned[accepted] = candidate[accept], candidate_turned[accept]
            overlaps[accepted] = candidate_overlaps[accept]
            pending[np.flatnonzero(pending)[accept]] = False
            steps[pending] *= 0.5
            if not pending.any():
                break
        active[index[pending]] = False  # no ascent along the Newton direction: as good as it gets
    return rotations


def _newton_directions(turned: np.ndarray, b: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Truncated-CG solutions D of Hess[D] = -grad for each start (s, n, n), the Hessian of <C^T A C, B>.

    Each start's CG stops at a residual below min(0.5, sqrt|g|) |g| (superlinear convergence) or at
    negative curvature (then the last iterate, or the gradient itself on the first step, still ascends).
    """
    norms = np.linalg.norm(gradients, axis=(1, 2))
    forcing = np.minimum(0.5, np.sqrt(norms)) * norms
    directions = np.zeros_like(gradients)
    residuals = gradients.copy()
    searches = residuals.copy()
    residual_squares = norms**2
    running = np.ones(len(gradients), dtype=bool)
    size = b.shape[0]
    for iteration in range(max(size * (size - 1) // 2, 1)):
        curved = -_hessian(turned, b, searches)  # the ascent problem's Hessian is negative near a maximum
        curvatures = np.sum(searches * curved, axis=(1, 2))
        negative = running & (curvatures <= 1e-14 * np.sum(searches**2, axis=(1, 2)))
        if iteration == 0:
            directions[negative] = gradients[negative]
        running &= ~negative
        alphas = np.where(running, residual_squares / np.where(running, curvatures, 1.0), 0.0)
        directions += alphas[:, None, None] * searches
        residuals -= alphas[:, None, None] * curved
        new_squares = np.sum(residuals**2, axis=(1, 2))
        running &= np.sqrt(new_squares) >= forcing
        if not running.any():
            break
        betas = np.where(running, new_squares / residual_squares, 0.0)
        searches = residuals + betas[:, None, None] * searches
        residual_squares = new_squares
    return directions


def _hessian(turned: np.ndarray, b: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """Riemannian Hessian of f(C) = <C^T A C, B> applied to skew ``moves`` W (body frame, batched).

    Along C exp(tW), C^T A C moves by [T, W] (T = C^T A C), so d^2f/dt^2 = <[[T, W], W], B>; polarising
    this quadratic form gives Hess[W] = skew(Z^T B - B Z^T + T^T V - V T^T) / 2 with Z = [T, W],
    V = [W, B].
    """
    z = turned @ moves - moves @ turned
    v = moves @ b - b @ moves
    return 0.5 * _skew(_transpose(z) @ b - b @ _transpose(z) + _transpose(turned) @ v - v @ _transpose(turned))


def _cayley(moves: np.ndarray) -> np.ndarray:
    """(I - W/2)^-1 (I + W/2): orthogonal for skew W, and exp(W) to second order."""
    identity = np.eye(moves.shape[-1])
    return np.linalg.solve(identity - 0.5 * moves, identity + 0.5 * moves)


def _skew(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m - _transpose(m))


def _transpose(m: np.ndarray) -> np.ndarray:
    return np.swapaxes(m, -1, -2)


def _eigenbasis_start(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C = Q_A diag(s) Q_B^T from real Schur-like bases of A and B with paired eigenvalues in the same order.

    For normal operators (symmetric ones included) this is the optimum: both are block-diagonal in such
    bases, and pairing the eigenvalues at least cost attains Hoffman-Wielandt's bound. Otherwise a start.
    """
    vectors_a, values_a, _ = _real_eigenvectors(a)
    vectors_b, values_b, units_b = _real_eigenvectors(b)
    # |Im| so that a complex pair meets a pair turning the same way (a real C cannot conjugate one)
    cost = (np.subtract.outer(values_a.real, values_b.real) ** 2
            + np.subtract.outer(np.abs(values_a.imag), np.abs(values_b.imag)) ** 2)
    rows, columns = linear_sum_assignment(cost)
    partner = np.empty(len(b))
    partner[columns] = rows
    # each of B's eigenvalues (a pair moves as one) goes where its partner stands in A's order
    place = np.full(units_b.max() + 1, np.inf)
    np.minimum.at(place, units_b, partner)
    order = np.lexsort((np.arange(len(b)), place[units_b]))
    # QR of eigenvectors in eigenvalue order: a basis in which the operator is block upper triangular
    basis_a = np.linalg.qr(vectors_a)[0]
    basis_b = np.linalg.qr(vectors_b[:, order])[0]
    return _signed_alignment(a, b, basis_a, basis_b)


def _real_eigenvectors(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real vectors spanning the eigenspaces of real ``m`` (n, n): vectors (n, n), eigenvalue (n,) and
    eigenvalue index (n,) of each column. A complex pair lambda, conj(lambda) gives [Re v, Im v] for
    Im lambda > 0, v's phase fixed so that Re v is longest: the two are then orthogonal and fixed by
    the operator up to a common sign, whatever basis it is written in."""
    values, vectors = np.linalg.eig(m)
    columns, column_values, units = [], [], []
    for value, vector in zip(values, vectors.T, strict=True):
        if value.imag < 0:
            continue
        if value.imag == 0:
            parts = [vector.real]
        else:
            vector = vector * np.exp(-0.5j * np.angle(vector @ vector))
            parts = [vector.real, vector.imag]
        unit = units[-1] + 1 if units else 0
        columns += parts
        column_values += [value] * len(parts)
        units += [unit] * len(parts)
    return np.column_stack(columns), np.array(column_values), np.array(units)


def _symmetric_part_start(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C aligning the eigenbases of (A + A^T) / 2 and (B + B^T) / 2, eigenvalues in ascending order."""
    basis_a = np.linalg.eigh(a + a.T)[1]
    basis_b = np.linalg.eigh(b + b.T)[1]
    return _signed_alignment(a, b, basis_a, basis_b)


def _signed_alignment(a: np.ndarray, b: np.ndarray, basis_a: np.ndarray, basis_b: np.ndarray) -> np.ndarray:
    """Q_A diag(s) Q_B^T with the signs s in {-1, 1}^n that (greedily) maximise <A, C B C^T>.

    Each basis vector is fixed only up to sign, and <A, C B C^T> = sum_ij TA_ij TB_ij s_i s_j with
    T = Q^T M Q: signs are set one at a time, then single flips are made while any helps.
    """
    weights = (basis_a.T @ a @ basis_a) * (basis_b.T @ b @ basis_b)
    coupling = weights + weights.T
    np.fill_diagonal(coupling, 0.0)
    signs = np.ones(len(a))
    for j in range(1, len(a)):
        signs[j] = 1.0 if coupling[j, :j] @ signs[:j] >= 0 else -1.0
    for _ in range(len(a) ** 2):  # each flip raises the objective, so this ends; the cap is a guard
        gains = -signs * (coupling @ signs)
        best = int(np.argmax(gains))
        if gains[best] <= 1e-12:
            break
        signs[best] = -signs[best]
    return (basis_a * signs) @ basis_b.T


def _random_orthogonal(size: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (either determinant)."""
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))


def _pad(m: np.ndarray, size: int) -> np.ndarray:
    padded = np.zeros((size, size))
    padded[: len(m), : len(m)] = m
    return padded


# ---- the whole pipeline --------------------------------------------------------------------------------


def dsa(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_delays: int,
    delay_interval: int = 1,
    rank: int | None = None,
    lamb: float = 0.0,
    score: Score = "angular",
    restarts: int = 8,
    seed: int = 0,
) -> float:
    """The DSA distance between systems ``x`` and ``y`` (Ostrow et al. 2023): 0 for the same dynamics.

    ``x``: (trials, time, units_x), ``y``: (trials', time', units_y), or (time, units) for one trial; the
    unit counts may differ. Each is delay-embedded and fitted by :func:`fit_dmd` (``n_delays``,
    ``delay_interval``, ``rank``, ``lamb``), then the two operators are compared by
    :func:`vector_field_procrustes` (``restarts``, ``seed``). ``score``: "angular" (radians, in [0, pi],
    the default) or "euclidean" (between the unit-norm operators, in [0, 2]).
    """
    name = _check_score(score)
    with blas_threads(torch_threads=True):  # small products: one thread each (see neurometry.threads)
        operator_x = _fit_dmd(x, n_delays, delay_interval, rank, lamb, "x").operator
        operator_y = _fit_dmd(y, n_delays, delay_interval, rank, lamb, "y").operator
        return vector_field_procrustes(operator_x, operator_y, restarts=restarts, seed=seed).score(name)


# ---- input checks ---------------------------------------------------------------------------------------


def _as_trajectories(data: np.ndarray, name: str, keep_2d: bool = False) -> np.ndarray:
    """``data`` as float64 (trials, time, units); (time, units) gains a trial axis unless ``keep_2d``."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise NeurometryError(
            f"{name} has {x.ndim} dimension(s), shape {x.shape}; pass (trials, time, units) or (time, units)"
        )
    if 0 in x.shape:
        raise NeurometryError(f"{name} is empty (shape {x.shape}); pass at least one trial, time step and unit")
    if not np.isfinite(x).all():
        raise NeurometryError(f"{name} contains NaN or Inf; drop or interpolate those time steps first")
    return x if keep_2d or x.ndim == 3 else x[None]


def _check_delays(x: np.ndarray, n_delays: int, delay_interval: int, name: str) -> None:
    for label, value in (("n_delays", n_delays), ("delay_interval", delay_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NeurometryError(f"{label}={value!r} must be a whole number >= 1")
    needed = (n_delays - 1) * delay_interval + 2  # two embedded steps make the one transition a fit needs
    time = x.shape[-2]
    if time < needed:
        raise NeurometryError(
            f"{name} has {time} time steps, too few for n_delays={n_delays} with delay_interval="
            f"{delay_interval} (needs at least {needed}); lower n_delays or delay_interval"
        )


def _as_operator(m: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise NeurometryError(f"{name} has shape {m.shape}; pass a square (n, n) operator, e.g. DMDFit.operator")
    if not np.isfinite(m).all():
        raise NeurometryError(f"{name} contains NaN or Inf; refit the operator from finite trajectories")
    return m


def _check_score(name: str) -> str:
    if name not in SCORES:
        raise NeurometryError(f"unknown score {name!r}; use one of {', '.join(SCORES)}{did_you_mean(name, SCORES)}")
    return name
