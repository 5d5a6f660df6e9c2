"""Recording on Ray against the single-process recorder, in one process tree on this machine.

What is measured (all-MiniLM-L6-v2, every ``resid.*`` point, one float16 row per real token, batches of 32,
``--n`` sentences from ``record_overhead.write_sentences``): the whole ``record(...)`` call into a fresh
store, single-process (``engine="local"``) and on a local Ray started once outside the timings
(``engine="ray"`` with 1 and with 2 actors; each call starts its actor pool and loads the model in every
actor, as a user's command does). Runs are interleaved, the order rotating each repetition; the medians of
the per-repetition ratios are printed. Targets (issue 17): ray with 1 actor / single process <= 1.25; 2
actors / 1 actor is reported as it is (the two cores are shared, so near 1 is expected here).

    python benchmarks/record_ray.py [--n 2000] [--repeats 3]
    python benchmarks/record_ray.py --memory [--n 2000]     # actor peak RSS at n and 10n sentences

``--memory`` records with 1 actor at ``n`` and ``10 n`` sentences and reports the actor's peak resident
memory (``VmHWM`` of the actor process, read from /proc while it runs); target: flat (< +10%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_overhead import write_sentences  # noqa: E402


def actor_peaks(stop: threading.Event, peaks: dict[int, float]) -> None:
    """Until ``stop``: the peak RSS (MiB) of every ChunkRecorder actor process, by pid."""
    while not stop.is_set():
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if b"ChunkRecorder" not in handle.read():
                        continue
                with open(f"/proc/{entry}/status") as handle:
                    for line in handle:
                        if line.startswith("VmHWM:"):
                            peaks[int(entry)] = max(peaks.get(int(entry), 0.0), int(line.split()[1]) / 1024)
            except OSError:
                continue
        time.sleep(0.2)


def memory(n: int, tmp: Path) -> None:
    from neurometry import record

    rows = []
    for size in (n, 10 * n):
        data = write_sentences(size, tmp / f"sentences_{size}.jsonl")
        peaks: dict[int, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=actor_peaks, args=(stop, peaks))
        watcher.start()
        start = time.perf_counter()
        record("minilm", data, ["resid.*"], tmp / f"store_{size}", reduce="tokens", dtype="float16", batch_size=32,
               progress=False, engine="ray", actors=1)
        seconds = time.perf_counter() - start
        stop.set()
        watcher.join()
        rows.append((size, max(peaks.values(), default=float("nan")), seconds))
        print(f"# {size} sentences: actor peak RSS {rows[-1][1]:.0f} MiB, {seconds:.1f} s", flush=True)
    growth = rows[1][1] / rows[0][1] - 1
    print(f"actor peak RSS, {n} -> {10 * n} sentences: {rows[0][1]:.0f} -> {rows[1][1]:.0f} MiB ({growth:+.1%}; "
          f"target < +10%: {'PASS' if growth < 0.10 else 'FAIL'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (and torch threads of the single process)")
    parser.add_argument("--memory", action="store_true", help="actor peak RSS at n and 10n instead of the timings")
    args = parser.parse_args()
    torch.set_num_threads(args.cpus)
    import ray

    from neurometry import record

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    if args.memory:
        with tempfile.TemporaryDirectory(prefix="nm-ray-") as name:
            memory(args.n, Path(name))
        ray.shutdown()
        return 0
    methods = {
        "single": {"engine": "local"},
        "ray x1": {"engine": "ray", "actors": 1},
        "ray x2": {"engine": "ray", "actors": 2},
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    with tempfile.TemporaryDirectory(prefix="nm-ray-") as name:
        tmp = Path(name)
        data = write_sentences(args.n, tmp / "sentences.jsonl")
        names = list(methods)
        for rep in range(args.repeats):
            for method in names[rep % len(names):] + names[: rep % len(names)]:
                out = Path(tempfile.mkdtemp(dir=tmp)) / "store"
                start = time.perf_counter()
                record("minilm", data, ["resid.*"], out, reduce="tokens", dtype="float16", batch_size=32,
                       progress=False, **methods[method])
                times[method].append(time.perf_counter() - start)
            print(f"# rep {rep + 1}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in names), flush=True)
    ray.shutdown()

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    print(f"\nminilm resid.*, {args.n} sentences, {args.cpus} CPUs, {args.repeats} repetitions")
    print("median seconds: " + ", ".join(f"{m} {statistics.median(v):.2f}" for m, v in times.items()))
    one = ratio("ray x1", "single")
    print(f"ray with 1 actor / single process: {one:.3f} (target <= 1.25: {'PASS' if one <= 1.25 else 'FAIL'})")
    print(f"throughput, 2 actors / 1 actor: {1 / ratio('ray x2', 'ray x1'):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
