"""Dynamical Similarity Analysis: ours (neurometry.dynamics.dsa) against the authors' dsa-metric.

What is measured: the whole DSA pipeline between two systems, from (trials, time, units) arrays to one
angular distance, on three pairs of systems of 10-50 units (each a random noisy linear latent system of
3-7 dimensions read out through tanh, 10 trials of 200 steps; default sizes 10 vs 20, 30 vs 30 and
50 vs 40 units), with the same settings on both sides: n_delays=10, rank=20, no ridge penalty.

* **ours**: ``dsa(x, y, n_delays=10, rank=20)``: HAVOK DMD in float64, then the orthogonal Procrustes
  problem over vector fields solved by Newton's method on the orthogonal group from 12 starts (4 informed,
  8 random).
* **theirs**: ``DSA.DSA(x, y, n_delays=10, rank=20, lamb=0, score_method="angular").fit_score()`` with
  its DSA class's own optimiser defaults (Adam, 1500 steps, lr 5e-3, two starts; float32), seeded.

Both distances are printed: the optimisers differ (the objective has local optima), so ours should be
equal to theirs or lower; a third figure, our optimiser on their fitted (float32) operators, shows that
any difference comes from the optimiser and not from the fit. Timed runs alternate (the order flips each repetition) with ``gc.collect()``
before each; BLAS and torch run on ``--threads`` threads. The figure is the median over repetitions of
theirs / ours, per pair and over the three pairs' total.

Target: theirs / ours > 1 (ours faster) with ours' distance <= theirs' + 1e-4.

Run::

    python benchmarks/dsa.py                      # 3 pairs, 3 repetitions, 1 thread
    python benchmarks/dsa.py --repeats 1 --rank 10    # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from scipy.linalg import block_diag

from neurometry.dynamics.dsa import dsa, vector_field_procrustes
from neurometry.threads import blas_threads

PAIRS = ((10, 20), (30, 30), (50, 40))  # units of x, units of y


def latent_dynamics(size: int, rng: np.random.Generator) -> np.ndarray:
    """A stable, non-normal (size, size) map: damped rotations and decays in a skewed basis."""
    blocks, filled = [], 0
    while filled < size:
        if size - filled >= 2 and rng.random() < 0.5:
            radius, angle = rng.uniform(0.6, 0.98), rng.uniform(0.05, 1.0)
            blocks.append(radius * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]))
            filled += 2
        else:
            blocks.append(np.array([[rng.uniform(-0.5, 0.98)]]))
            filled += 1
    basis = np.eye(size) + 0.5 * rng.standard_normal((size, size))
    return basis @ block_diag(*blocks) @ np.linalg.inv(basis)


def system(units: int, seed: int, trials: int = 10, steps: int = 200) -> np.ndarray:
    """(trials, steps, units) trajectories of a random latent system read out through tanh."""
    rng = np.random.default_rng(seed)
    matrix = latent_dynamics(int(rng.integers(3, 8)), rng)
    size = len(matrix)
    states = np.empty((trials, steps, size))
    states[:, 0] = rng.standard_normal((trials, size))
    for t in range(1, steps):
        states[:, t] = states[:, t - 1] @ matrix.T + 0.1 * rng.standard_normal((trials, size))
    readout = rng.standard_normal((size, units)) / np.sqrt(size)
    return np.tanh(states @ readout) + 0.01 * rng.standard_normal((trials, steps, units))


def ours(x: np.ndarray, y: np.ndarray, n_delays: int, rank: int) -> tuple[float, float]:
    started = time.perf_counter()
    distance = dsa(x, y, n_delays=n_delays, rank=rank)
    return time.perf_counter() - started, distance


def theirs(x: np.ndarray, y: np.ndarray, n_delays: int, rank: int) -> tuple[float, float, float]:
    """Time, distance, and (untimed) our optimiser's distance between their fitted operators."""
    from DSA import DSA

    torch.manual_seed(0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DSA(x, y, n_delays=n_delays, rank=rank, lamb=0.0, score_method="angular")
        distance = model.fit_score()
    taken = time.perf_counter() - started
    operators = [dmds[0].A_v.double().numpy() for dmds in model.dmds]
    return taken, float(distance), vector_field_procrustes(*operators).angular


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-delays", type=int, default=10)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import DSA  # noqa: F401  (its import takes seconds: keep it out of the first timing)

    systems = [(system(nx, seed=2 * i), system(ny, seed=2 * i + 1)) for i, (nx, ny) in enumerate(PAIRS)]
    print(f"{len(PAIRS)} pairs ({', '.join(f'{nx} vs {ny}' for nx, ny in PAIRS)} units), 10 trials x 200 steps, "
          f"n_delays={args.n_delays}, rank={args.rank}, {args.threads} thread(s)", file=sys.stderr)
    times = {name: [[] for _ in PAIRS] for name in ("ours", "theirs")}
    distances = {name: [0.0] * len(PAIRS) for name in ("ours", "theirs", "ours on theirs")}
    with blas_threads(args.threads, torch_threads=True):
        for repeat in range(args.repeats):
            order = ("ours", "theirs") if repeat % 2 == 0 else ("theirs", "ours")
            for pair, (x, y) in enumerate(systems):
                for name in order:
                    gc.collect()
                    if name == "ours":
                        taken, distances["ours"][pair] = ours(x, y, args.n_delays, args.rank)
                    else:
                        taken, distances["theirs"][pair], distances["ours on theirs"][pair] = theirs(
                            x, y, args.n_delays, args.rank)
                    times[name][pair].append(taken)
                print(f"repeat {repeat} pair {pair}: ours {times['ours'][pair][-1]:.3f} s, "
                      f"theirs {times['theirs'][pair][-1]:.3f} s", file=sys.stderr)
    for pair, (nx, ny) in enumerate(PAIRS):
        mine, other = statistics.median(times["ours"][pair]), statistics.median(times["theirs"][pair])
        print(f"{nx:>2} vs {ny:>2} units: ours {mine:.3f} s, theirs {other:.3f} s, theirs / ours = "
              f"{other / mine:.1f}; distance ours {distances['ours'][pair]:.5f}, theirs "
              f"{distances['theirs'][pair]:.5f}, our optimiser on their operators "
              f"{distances['ours on theirs'][pair]:.5f} rad")
    totals = {name: [sum(t[r] for t in times[name]) for r in range(args.repeats)] for name in times}
    ratio = statistics.median(o / m for o, m in zip(totals["theirs"], totals["ours"], strict=True))
    print(f"all pairs: ours {statistics.median(totals['ours']):.3f} s, theirs {statistics.median(totals['theirs']):.3f} s "
          f"(medians of {args.repeats}); theirs / ours = {ratio:.1f} (target > 1)")


if __name__ == "__main__":
    main()
