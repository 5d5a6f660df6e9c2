"""RSA (correlation RDMs + Spearman comparison) vs rsatoolbox at 92, 500 and 2,000 conditions, side by side.

Both run in this process with 2 threads (torch, BLAS, OpenMP; --threads). One run builds the two RDMs from
activations (n_conditions x 512, seeded Gaussian data sharing a 16-dimensional latent structure, so the
RDMs correlate) and compares them: ours is ``rsa(x, y)`` (``compute_rdm`` twice, ``compare_rdms``),
rsatoolbox's is ``compare(calc_rdm(Dataset(x), "correlation"), calc_rdm(Dataset(y), ...), "spearman")``.
Each timing is the median of --repeats runs after one warm-up (rsatoolbox gets fewer at 2,000
conditions when it is slow). The values must agree to 1e-6; the script exits 1 when they do not.

Where the time goes: at 2,000 conditions each RDM has 1,999,000 pairs. rsatoolbox builds the Gram
matrix with a plain ``np.einsum`` (no BLAS) and ranks with ``scipy.stats.rankdata``; ours uses one BLAS
syrk per RDM and ranks with an exact sort of packed integer keys (see ``rsa._sorted_groups``).

    .venv/bin/python benchmarks/rsa.py [--sizes 92 500 2000] [--d 512] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os

# thread counts must be in the environment before numpy / torch load their thread pools
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=2)
THREADS = _pre.parse_known_args()[0].threads
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from neurometry.compare.rdm_comparison import rsa  # noqa: E402

torch.set_num_threads(THREADS)


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up outside the timing
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return float(value), statistics.median(times)


def planted(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 16))
    x = latent @ rng.normal(size=(16, d)) + 2.0 * rng.normal(size=(n, d))
    y = latent @ rng.normal(size=(16, d)) + 2.0 * rng.normal(size=(n, d))
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[92, 500, 2000])
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP / torch threads (default 2)")
    args = ap.parse_args()

    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, compare

    print(
        f"correlation RDMs + Spearman, d = {args.d}, threads {THREADS}, median of {args.repeats} (after a warm-up)"
    )
    print(
        f"{'conditions':>10} {'ours':>18} {'rsatoolbox':>18} {'abs diff':>9} {'ours s':>8} {'rsatb s':>8} {'speed-up':>8}"
    )
    agree = True
    with threadpool_limits(THREADS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in args.sizes:
            x, y = planted(n, args.d, seed=n)

            def ours(x=x, y=y) -> float:
                return rsa(x, y, rdm="correlation", compare="spearman")

            def theirs(x=x, y=y) -> float:
                a = calc_rdm(Dataset(x), method="correlation")
                b = calc_rdm(Dataset(y), method="correlation")
                return compare(a, b, method="spearman")[0, 0]

            v_ours, t_ours = timed(ours, args.repeats)
            v_ref, t_ref = timed(theirs, args.repeats if n < 1000 else max(1, min(args.repeats, 3)))
            diff = abs(v_ours - v_ref)
            agree &= diff < 1e-6
            print(
                f"{n:>10} {v_ours:>18.12f} {v_ref:>18.12f} {diff:>9.1e} {t_ours:>8.4f} {t_ref:>8.4f} "
                f"{t_ref / t_ours:>7.1f}x"
            )
    if not agree:
        print("values differ by more than 1e-6", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
