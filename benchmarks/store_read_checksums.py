"""Read overhead of checked chunks: ``Store.activations`` / ``iter_chunks`` (every chunk's size and CRC-32C
checked against the catalog) against a plain Zarr read of the same array (no checks) and against our
reader with the checksum pass left out (presence and size only), all in one run.

The data: one imported point of ``--rows`` x ``--width`` float32 (default 50,000 x 1,024 = 205 MB, 2 MiB
chunks), read from the page cache after a warm-up read (the worst case for the relative overhead: no disk
time to hide the CRC pass). Timed reads are interleaved, repeated, and the median of each is reported with
the ratios to the Zarr read; the machine is shared, so only those ratios mean anything.

Run::

    python benchmarks/store_read_checksums.py            # 50,000 x 1,024, 5 repetitions
    python benchmarks/store_read_checksums.py --quick    # 5,000 x 1,024, 3 repetitions
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from neurometry.store import import_array, open_store
from neurometry.store.chunks import PointChunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 5_000, 3

    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        store = open_store(Path(folder) / "s", create=True)
        block = 5_000
        rng = np.random.default_rng(0)
        chunks = (rng.standard_normal((min(block, args.rows - lo), args.width)).astype(np.float32)
                  for lo in range(0, args.rows, block))
        import_array(store, "r", "p", chunks, args.rows)
        info = store.point_info("p")
        array = zarr.open_array(str(store.path / "arrays" / "r" / "p"), mode="r")
        unchecked = PointChunks(store.path, "r", "p", info.n_rows, recorded={})

        readers = {
            "zarr (no checks)": lambda: array[: info.n_rows],
            "ours, size only": lambda: unchecked.read(0, info.n_rows),
            "ours, CRC-32C (activations)": lambda: store.activations("p"),
            "ours, CRC-32C (iter_chunks)": lambda: sum(len(b) for b in store.iter_chunks("p")),
        }
        np.testing.assert_array_equal(readers["zarr (no checks)"](), readers["ours, CRC-32C (activations)"]())
        times: dict[str, list[float]] = {name: [] for name in readers}
        for repeat in range(args.repeats + 1):  # the first round warms the page cache and is dropped
            for name, read in readers.items():
                start = time.perf_counter()
                read()
                if repeat:
                    times[name].append(time.perf_counter() - start)
        base = statistics.median(times["zarr (no checks)"])
        mb = info.n_rows * args.width * 4 / 1e6
        print(f"{info.n_rows} x {args.width} float32 ({mb:.0f} MB, {array.chunks[0]} rows a chunk), "
              f"median of {args.repeats}:")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:30s} {median * 1e3:8.1f} ms  {mb / median / 1e3:5.2f} GB/s  x{median / base:.2f} of zarr")
        store.close()


if __name__ == "__main__":
    main()
