"""Linear CKA: streamed over 200,000 x 384 rows in O(d^2) memory, and feature space vs the n x n Gram path.

(a) ``LinearCKAAccumulator`` over n = 200,000 rows of two d = 384 representations, the rows generated
    chunk by chunk from a seed (chunk i is a function of the seed and i only), so the full arrays never
    exist. The same is run at n = 20,000; each run is its own subprocess, so the peak resident memory
    (resource.getrusage ru_maxrss: the kernel's high-water mark, which psutil does not expose on Linux)
    of one does not mix with the other. Memory O(d^2) means the peak does not grow with n.
(b) At n = 20,000, d = 384, both in memory: CKA in feature space (||Xc'Yc||^2, three d x d products)
    against our n x n Gram path (float64 Gram tiles of 256 x 256 rebuilt on the fly, never the whole
    3.2 GB matrix), both estimators, and against the textbook n x n computation (two whole 3.2 GB
    Gram matrices, double-centred): same value to 1e-8, and the ratios of their times.

    .venv/bin/python benchmarks/cka.py [--n 200000] [--n-small 20000] [--d 384] [--chunk 10000] [--skip-gram]

Threads are pinned to 2. Machines here are shared, so absolute times are noisy; the ratios are
measured side by side in one run.
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def chunk_pair(i: int, rows: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Chunk i of two float32 representations sharing a 20-dimensional signal, with mean offsets."""
    mixing = np.random.default_rng(seed)
    shared_x = mixing.normal(size=(20, d)).astype(np.float32)
    shared_y = mixing.normal(size=(20, d)).astype(np.float32)
    scale = (np.arange(1, d + 1) ** -0.5).astype(np.float32)
    rng = np.random.default_rng([seed, i])
    signal = rng.standard_normal((rows, 20), dtype=np.float32)
    x = signal @ shared_x + rng.standard_normal((rows, d), dtype=np.float32) * scale + 2.0
    y = signal @ shared_y + 1.5 * rng.standard_normal((rows, d), dtype=np.float32) - 1.0
    return x, y


def chunk_pairs(n: int, d: int, size: int):
    return (chunk_pair(i, min(size, n - lo), d) for i, lo in enumerate(range(0, n, size)))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def stream(n: int, d: int, size: int) -> dict:
    """Child process: accumulate n rows chunk by chunk; report values, time and memory."""
    from neurometry.compare.kernel_alignment import LinearCKAAccumulator

    chunk_pair(0, 1, d)  # warm up imports and the generator, so the baseline includes them
    baseline = peak_rss_mib()
    acc = LinearCKAAccumulator(d, d)
    start = time.perf_counter()
    for x, y in chunk_pairs(n, d, size):
        acc.update(x, y)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "biased": acc.result("biased"),
        "unbiased": acc.result("unbiased"),
        "seconds": seconds,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_child(n: int, d: int, size: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), "--d", str(d), "--chunk", str(size)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def feature_vs_gram(n: int, d: int, size: int) -> None:
    cka = importlib.import_module("neurometry.compare.kernel_alignment")
    pairs = list(chunk_pairs(n, d, size))
    x = np.concatenate([p[0] for p in pairs]).astype(np.float64)
    y = np.concatenate([p[1] for p in pairs]).astype(np.float64)

    def both_estimators(build) -> tuple[dict, float]:
        start = time.perf_counter()
        a, b = build(x), build(y)
        cross = cka._cross(a, b)
        seconds = time.perf_counter() - start
        values = {}
        for estimator in ("biased", "unbiased"):
            hsic = cka._hsic_value(cross, float(a.diag @ b.diag), a.trace, b.trace, n, estimator)
            values[estimator] = hsic / np.sqrt(
                cka._self_hsic(a, estimator, "x") * cka._self_hsic(b, estimator, "y")
            )
        return values, seconds

    feature, feature_s = both_estimators(cka._FeatureKernel.build)
    gram, gram_s = both_estimators(lambda rows: cka._StreamedGram.build(rows, "linear", 0.0))
    print(f"\n(b) n = {n:,}, d = {d}: feature space vs n x n Gram (float64, {cka._TILE} x {cka._TILE} tiles)")
    for estimator in ("biased", "unbiased"):
        diff = abs(feature[estimator] - gram[estimator])
        print(
            f"  {estimator:9s} features {feature[estimator]:.15f}  gram {gram[estimator]:.15f}  |diff| {diff:.1e}"
        )
        assert diff < 1e-8, f"{estimator}: paths differ by {diff}"
    print(
        f"  time      features {feature_s:.2f} s  gram {gram_s:.2f} s  gram / features = {gram_s / feature_s:.0f}x"
    )
    public_times = []
    for _ in range(3):
        start = time.perf_counter()
        public = cka.cka(x, y)
        public_times.append(time.perf_counter() - start)
    public_s = sorted(public_times)[1]
    textbook, textbook_s = textbook_gram_cka(x, y)
    diff = abs(textbook - public)
    print(
        f"  cka(x, y), the public function (validation, one pass over row blocks in feature space): {public:.15f}, {public_s:.2f} s (median of 3)"
    )
    print(
        f"  textbook n x n (K = X X', L = Y Y' as whole float64 matrices, centred, <Kc, Lc>): {textbook:.15f} "
        f"|diff| {diff:.1e}, {textbook_s:.2f} s"
    )
    print(f"  textbook n x n / cka(x, y) = {textbook_s / public_s:.0f}x")
    assert diff < 1e-8, f"textbook path differs by {diff}"


def textbook_gram_cka(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Biased linear CKA the way it is usually written (Kornblith et al.'s notebook): whole n x n Gram
    matrices, double-centred (in place here, to spare memory), then <Kc, Lc> / (||Kc|| ||Lc||). torch's
    matmul, since numpy's bundled OpenBLAS segfaults on X @ X.T at this size."""
    import torch

    start = time.perf_counter()
    grams = []
    for rows in (x, y):
        t = torch.from_numpy(rows)
        k = t @ t.T
        means = k.mean(0)
        k -= means[None, :]
        k -= means[:, None] - means.mean()
        grams.append(k)
    kc, lc = grams
    value = float(torch.vdot(kc.view(-1), lc.view(-1)) / (kc.norm() * lc.norm()))
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--n-small", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--skip-gram", action="store_true", help="skip (b), the slow n x n side")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(stream(args.child, args.d, args.chunk)))
        return

    print(
        f"(a) LinearCKAAccumulator, d = {args.d}, chunks of {args.chunk:,} rows generated on the fly, {THREADS} threads"
    )
    runs = [run_child(n, args.d, args.chunk) for n in (args.n_small, args.n)]
    for r in runs:
        print(
            f"  n = {r['n']:>9,}: biased {r['biased']:.6f}  unbiased {r['unbiased']:.6f}  {r['seconds']:6.1f} s  "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (baseline {r['baseline_rss_mib']:.0f} MiB, "
            f"+{r['peak_rss_mib'] - r['baseline_rss_mib']:.0f} MiB while streaming)"
        )
    small, large = runs
    full_array_mib = 2 * args.n * args.d * 8 / 2**20
    print(
        f"  n x{large['n'] / small['n']:.0f}: peak RSS x{large['peak_rss_mib'] / small['peak_rss_mib']:.3f}, "
        f"time x{large['seconds'] / small['seconds']:.1f}; the two float64 arrays would be {full_array_mib:,.0f} MiB"
    )
    if not args.skip_gram:
        feature_vs_gram(args.n_small, args.d, args.chunk)


if __name__ == "__main__":
    main()
