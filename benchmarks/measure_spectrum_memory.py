"""The spectrum family over a 1,000,000 x 384 float16 store point: streamed vs plain NumPy in memory.

The rows come from a seeded generator (chunk i is a function of the seed and i only). They are first
written into a temporary store as a point (``neurometry.store.import_array``); the streamed side then
reads that point with ``store.iter_chunks`` into ``run_measures``, and the in-memory side builds the
same full array and uses NumPy. Each side runs in its own subprocess (so their peak resident
memories do not mix). Prints both values of every measure, their relative difference, each side's
peak RSS (resource.getrusage ru_maxrss) and wall time, and the ratios.

    .venv/bin/python benchmarks/measure_spectrum_memory.py [--rows 1000000] [--d 384] [--chunk 20000]
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

NAMES = ["effective_rank", "participation_ratio", "alpha_req", "n_components_90", "n_components_95",
         "n_components_99", "stable_rank", "coding_rate"]  # fmt: skip


def chunk(i: int, rows: int, d: int, seed: int = 0) -> np.ndarray:
    """Chunk i: rows with a decaying spectrum and a mean offset, float16."""
    rng = np.random.default_rng([seed, i])
    mix = np.random.default_rng(seed).normal(size=(d, d)) / np.sqrt(d)
    scale = np.arange(1, d + 1) ** -0.6
    return ((rng.standard_normal((rows, d), dtype=np.float32) * scale) @ mix + 0.5).astype(np.float16)


def chunks(n: int, d: int, size: int):
    return (chunk(i, min(size, n - lo), d) for i, lo in enumerate(range(0, n, size)))


def numpy_in_memory(x: np.ndarray) -> dict[str, float]:
    """The same definitions written directly: one float64 copy, np.cov, eigvalsh."""
    x = x.astype(np.float64)
    n, d = x.shape
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1], 0, None)
    lam[lam <= 10 * d * np.finfo(float).eps * lam[0]] = 0
    sv = np.sqrt(lam[lam > 0])
    p = sv / sv.sum()
    explained = np.cumsum(lam) / lam.sum()
    k = np.arange(1, np.count_nonzero(lam) + 1)
    second = x.T @ x
    eps = 0.5
    return {
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "participation_ratio": float(lam.sum() ** 2 / (lam**2).sum()),
        "alpha_req": float(-np.polyfit(np.log(k), np.log(lam[: len(k)]), 1)[0]),
        "n_components_90": int(np.searchsorted(explained, 0.9 - 1e-12) + 1),
        "n_components_95": int(np.searchsorted(explained, 0.95 - 1e-12) + 1),
        "n_components_99": int(np.searchsorted(explained, 0.99 - 1e-12) + 1),
        "stable_rank": float(lam.sum() / lam[0]),
        "coding_rate": float(0.5 * np.linalg.slogdet(np.eye(d) + d / (n * eps**2) * second)[1]),
    }


def worker(mode: str, n: int, d: int, size: int, store_path: str) -> None:
    import resource
    import time

    import torch

    torch.set_num_threads(THREADS)
    t = time.perf_counter()
    if mode == "write":
        from neurometry.store import import_array, open_store

        import_array(open_store(store_path, create=True), "bench", "point", chunks(n, d, size), n)
        print(json.dumps({"values": {}, "peak_mib": 0, "wall_s": time.perf_counter() - t}))
        return
    if mode == "stream":
        from neurometry.measures import run_measures
        from neurometry.store import open_store

        store = open_store(store_path)
        res = run_measures(lambda: store.iter_chunks("point", run="bench", chunk_rows=size), NAMES)
        values = {k: v.value for k, v in res.items()}
    else:
        values = numpy_in_memory(np.concatenate(list(chunks(n, d, size))))
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"values": values, "peak_mib": peak, "wall_s": wall}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--chunk", type=int, default=20000)
    ap.add_argument("--worker", choices=["write", "stream", "numpy"])
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.rows, args.d, args.chunk, args.store)
        return
    tmp = tempfile.TemporaryDirectory(prefix="nm-spectrum-")
    store_path = os.path.join(tmp.name, "store")
    out = {}
    for mode in ("write", "stream", "numpy"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--rows",
            str(args.rows),
            "--d",
            str(args.d),
            "--chunk",
            str(args.chunk),
            "--store",
            store_path,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    tmp.cleanup()
    s, m = out["stream"], out["numpy"]
    print(
        f"{args.rows} x {args.d} float16 store point ({args.rows * args.d * 2 / 2**20:.0f} MiB, written in "
        f"{out['write']['wall_s']:.1f} s), read in chunks of {args.chunk}, threads {THREADS}"
    )
    print(f"{'measure':<22} {'streamed':>20} {'numpy in memory':>20} {'rel diff':>9}")
    for name in NAMES:
        a, b = s["values"][name], m["values"][name]
        print(f"{name:<22} {a:>20.12g} {b:>20.12g} {abs(a - b) / abs(b):>9.1e}")
    print(
        f"{'peak RSS MiB':<22} {s['peak_mib']:>20.0f} {m['peak_mib']:>20.0f}   ratio {m['peak_mib'] / s['peak_mib']:.1f}x"
    )
    print(
        f"{'wall s':<22} {s['wall_s']:>20.2f} {m['wall_s']:>20.2f}   ratio {m['wall_s'] / s['wall_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
