"""Fixed-point search: all initial states in one batch (ours) against the per-state loop of Sussillo & Barak's
algorithm as FixedPointFinder's ``method="sequential"`` runs it.

What is measured: a 128-unit GRU (seeded, recurrent weights scaled by 3) driven by random pulses; initial
states drawn from its trajectories (``sample_states``), searched at zero input (this GRU has one attracting
fixed point there, which every search must reach).

* **ours**: ``find_fixed_points(gru, states)`` on all ``--states`` (default 1,024) at once: batched Adam, then
  Levenberg-Marquardt on the states near a fixed point; float64.
* **plain**: for each state alone, Adam on q(h) = 1/2 ||F(h) - h||^2 (float64, the same learning rate) until
  q < 1e-12 or ``--max-iterations``; timed on the first ``--plain-states`` states (default 24) and scaled to
  all of them, since every state's loop is the same work (the figure says so).

Both stop at the same tolerance, q < 1e-12 (Golub & Sussillo's ``tol_q``); the script prints how many
states reached it on each side, the time per state and the ratio plain / ours.

Target (issue 19): >= 10x.

Run::

    python benchmarks/fixed_points.py                  # 1,024 states, 128 units
    python benchmarks/fixed_points.py --states 128 --plain-states 8     # a smoke run
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from neurometry.dynamics.fixed_points import FIXED_TOLERANCE, find_fixed_points, sample_states
from neurometry.dynamics.recurrent import recurrent_map, trajectories


def build_gru(units: int, seed: int) -> nn.GRU:
    torch.manual_seed(seed)
    gru = nn.GRU(3, units, batch_first=True)
    with torch.no_grad():
        gru.weight_hh_l0.mul_(3.0)  # strong recurrence: slow convergence, as a trained network's memories have
    return gru


def initial_states(gru: nn.GRU, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pulses = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9, 0.05], size=(64, 100, 3))
    dynamics = recurrent_map(copy.deepcopy(gru).double())
    visited = trajectories(dynamics, torch.from_numpy(pulses)).numpy()
    return sample_states(visited, count, seed=seed)


def plain(gru: nn.GRU, states: np.ndarray, max_iterations: int, learning_rate: float) -> tuple[float, int]:
    """Seconds for the per-state loop over ``states``, and how many reached the tolerance."""
    dynamics = recurrent_map(copy.deepcopy(gru).double().requires_grad_(False))
    zero = torch.zeros(1, dynamics.input_size, dtype=torch.float64)
    reached = 0
    started = time.perf_counter()
    for state in states:
        h = torch.tensor(state[None], dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.Adam([h], lr=learning_rate)
        for _ in range(max_iterations):
            optimiser.zero_grad()
            q = 0.5 * (dynamics.step(h, zero) - h).pow(2).sum()
            if q.item() < FIXED_TOLERANCE:
                reached += 1
                break
            q.backward()
            optimiser.step()
    return time.perf_counter() - started, reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--states", type=int, default=1024)
    parser.add_argument("--plain-states", type=int, default=24)
    parser.add_argument("--max-iterations", type=int, default=5000)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gru = build_gru(args.units, args.seed)
    states = initial_states(gru, args.states, args.seed)

    started = time.perf_counter()
    ours = find_fixed_points(gru, states, max_iterations=args.max_iterations, learning_rate=args.learning_rate)
    ours_seconds = time.perf_counter() - started
    # q of every initial state after ours: kept points are unique, so count the states directly
    ours_reached = int((ours.q < FIXED_TOLERANCE).sum())

    plain_seconds, plain_reached = plain(gru, states[: args.plain_states], args.max_iterations, args.learning_rate)
    plain_total = plain_seconds / args.plain_states * args.states
    print(f"GRU {args.units} units, {args.states} initial states, zero input, tolerance q < {FIXED_TOLERANCE:g}, "
          f"{args.threads} thread(s)")
    print(f"ours:  {ours_seconds:8.2f} s for all {args.states} states ({ours_seconds / args.states * 1e3:.2f} ms a "
          f"state); {len(ours)} unique points kept, {ours_reached} fixed, best q {ours.best_q:.2e}")
    print(f"plain: {plain_seconds:8.2f} s for {args.plain_states} states ({plain_seconds / args.plain_states * 1e3:.1f} "
          f"ms a state, {plain_reached} of {args.plain_states} reached the tolerance); {plain_total:.1f} s for "
          f"{args.states} at that rate")
    print(f"plain / ours = {plain_total / ours_seconds:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
