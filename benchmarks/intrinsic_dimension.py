"""twonn and mle_id vs scikit-dimension on 20,000 x 384 planted-subspace data, side by side.

Both run in this process with 2 threads (torch, BLAS, OpenMP); each timing is the median of
--repeats runs. skdim's TwoNN sorts whole distance rows (d > 25); ours screens candidates with a
blocked bfloat16 (AMX) or float32 matmul, recomputes their distances in float64 (compiled with numba,
each candidate row read once) and certifies each row with a rigorous rounding bound (rows that fail go to a float32 screen, then a full float64 search), so
the values agree to rounding. The last lines give how many rows each stage took and the BLAS in use
(numpy's OpenBLAS reads OPENBLAS_CORETYPE, which this machine may set; see the env README).

    .venv/bin/python benchmarks/intrinsic_dimension.py [--n 20000] [--d 384] [--k 10] [--repeats 3]
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import skdim  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from neurometry.measures import intrinsic_dimension, mle_id, twonn  # noqa: E402

torch.set_num_threads(THREADS)


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (first-use detection, kernel JIT) outside the timing
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return float(value), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--k", type=int, default=10, help="planted intrinsic dimension")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(args.d, args.k)))[0]
    x = rng.normal(size=(args.n, args.k)) @ basis.T + 0.01 * rng.normal(size=(args.n, args.d))
    print(
        f"data: {args.n} x {args.d}, planted dimension {args.k}, threads {THREADS}, median of {args.repeats}"
    )
    rows = [
        ("twonn", lambda: twonn(x, max_rows=args.n).value, lambda: skdim.id.TwoNN().fit(x).dimension_),
        (
            "mle_id k=20",
            lambda: mle_id(x, 20, max_rows=args.n).value,
            lambda: skdim.id.MLE().fit(x, n_neighbors=20).dimension_,
        ),
    ]
    print(
        f"{'measure':<12} {'ours':>18} {'skdim':>18} {'rel diff':>9} {'ours s':>8} {'skdim s':>8} {'speed-up':>8}"
    )
    stats = []
    with threadpool_limits(THREADS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, ours, ref in rows:
            v_ours, t_ours = timed(ours, args.repeats)
            v_ref, t_ref = timed(ref, args.repeats)
            rel = abs(v_ours - v_ref) / abs(v_ref)
            print(
                f"{name:<12} {v_ours:>18.12f} {v_ref:>18.12f} {rel:>9.1e} {t_ours:>8.2f} {t_ref:>8.2f} {t_ref / t_ours:>7.1f}x"
            )
            stats.append(dict(intrinsic_dimension.KNN_STATS))
        blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    print(f"bf16 screen fast here: {intrinsic_dimension._bf16_fast()}")
    for (name, _, _), st in zip(rows, stats, strict=True):
        print(f"knn rows per stage, {name}: {st}")
    coretype = {v: os.environ.get(v, "-") for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"BLAS (api, kernel, threads): {blas}; {coretype}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
