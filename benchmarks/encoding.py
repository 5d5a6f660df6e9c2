"""Encoding-model penalty selection: one k-fold pass over all targets vs scikit-learn's RidgeCV.

Data (seeded): n = 1,000 stimuli, d = 768 features sharing a 32-dimensional latent signal (plus
independent noise), 20,000 targets each a random mix of that latent signal with its own noise level
(from nearly pure signal to nearly pure noise, so the best penalty differs across targets); 7 penalties
10^-1 .. 10^5 on standardised features.

- ours: ``select_alphas(x, y, alphas, folds=5)``: 5-fold cross-validation, one eigendecomposition per
  fold shared by every penalty and target, one penalty per target (lowest held-out mean squared error).
- RidgeCV: ``RidgeCV(alphas, alpha_per_target=True).fit(standardised x, y)``: scikit-learn's efficient
  leave-one-out over all targets at once (a cheaper scheme: no refits, one decomposition in total).
- loop: the common hand-written loop, one ``RidgeCV(alphas)`` per target. Timed on the first
  --loop-targets targets and extrapolated linearly to all of them (printed as extrapolated).

All three run in this process with 2 threads (torch, BLAS, OpenMP; --threads), each once after a small
warm-up. Targets: ours / RidgeCV <= 1 and loop / ours >= 100. The two schemes choose penalties by
different cross-validation (k-fold vs leave-one-out), so only the fraction of targets where they pick
the same penalty is reported. Machines here are shared, so absolute times are noisy; the ratios are
measured side by side in one run.

    .venv/bin/python benchmarks/encoding.py [--n 1000] [--d 768] [--targets 20000] [--loop-targets 200]
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

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from neurometry.probe.encoding import DEFAULT_ALPHAS, select_alphas  # noqa: E402

torch.set_num_threads(THREADS)


def planted(n: int, d: int, t: int, seed: int = 0, rank: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Activations with a rank-``rank`` latent signal; targets = latent mixes + per-target noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, rank))
    x = latent @ rng.standard_normal((rank, d)) + 2.0 * rng.standard_normal((n, d))
    x = x * rng.uniform(0.5, 2.0, size=d) + rng.normal(size=d)  # unequal scales and offsets
    signal = latent @ rng.standard_normal((rank, t)) / np.sqrt(rank)
    noise_sd = np.geomspace(0.3, 30.0, t)[rng.permutation(t)]
    y = signal + noise_sd * rng.standard_normal((n, t))
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--targets", type=int, default=20000)
    ap.add_argument("--loop-targets", type=int, default=200)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = ap.parse_args()

    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    alphas = np.asarray(DEFAULT_ALPHAS)
    x, y = planted(args.n, args.d, args.targets)
    print(
        f"n = {args.n}, d = {args.d}, targets = {args.targets}, {len(alphas)} alphas "
        f"({alphas[0]:g} .. {alphas[-1]:g}), threads {THREADS}"
    )
    with threadpool_limits(THREADS):
        # warm-up: thread pools, LAPACK workspaces, imports
        select_alphas(x[:, :64], y[:, :50], alphas, folds=args.folds)
        RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[:, :64], y[:, :50])

        start = time.perf_counter()
        ours, _ = select_alphas(x, y, alphas, folds=args.folds)
        t_ours = time.perf_counter() - start

        start = time.perf_counter()
        standardised = StandardScaler().fit_transform(x)
        theirs = RidgeCV(alphas=alphas, alpha_per_target=True).fit(standardised, y).alpha_
        t_ridgecv = time.perf_counter() - start

        m = min(args.loop_targets, args.targets)
        start = time.perf_counter()
        looped = np.array([RidgeCV(alphas=alphas).fit(standardised, y[:, j]).alpha_ for j in range(m)])
        t_loop_part = time.perf_counter() - start
    t_loop = t_loop_part * args.targets / m
    agree = float(np.mean(ours == theirs))
    assert np.array_equal(looped, theirs[:m]), "per-target RidgeCV disagrees with alpha_per_target=True"

    print(f"ours   select_alphas, {args.folds}-fold, all targets at once : {t_ours:8.2f} s")
    print(f"sklearn RidgeCV(alpha_per_target=True), leave-one-out     : {t_ridgecv:8.2f} s")
    print(
        f"loop of RidgeCV per target: {t_loop_part:.2f} s for {m} targets, "
        f"EXTRAPOLATED linearly to {args.targets}: {t_loop:8.1f} s"
    )
    print(f"ours / RidgeCV = {t_ours / t_ridgecv:.2f}   (target <= 1)")
    print(f"loop / ours    = {t_loop / t_ours:.0f}   (target >= 100, loop extrapolated)")
    chosen = {f"{a:g}": int(np.sum(ours == a)) for a in alphas}
    print(f"penalties chosen by ours: {chosen}")
    print(f"same penalty as RidgeCV (k-fold vs leave-one-out): {agree:.1%} of targets")
    if args.json:
        print(
            json.dumps(
                {
                    "n": args.n,
                    "d": args.d,
                    "targets": args.targets,
                    "alphas": alphas.tolist(),
                    "threads": THREADS,
                    "ours_s": t_ours,
                    "ridgecv_s": t_ridgecv,
                    "loop_s_extrapolated": t_loop,
                    "loop_targets_timed": m,
                    "ours_over_ridgecv": t_ours / t_ridgecv,
                    "loop_over_ours": t_loop / t_ours,
                    "alpha_agreement": agree,
                }
            )
        )


if __name__ == "__main__":
    main()
