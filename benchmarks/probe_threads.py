"""`probe` on a shared machine: time with and without a competing CPU-bound process, BLAS threads
limited (the default, ``neurometry.threads``) and not (the old behaviour).

The workload has the shape of the SmolLM2 case of issue 15 (30 layers x 1,496 rows x 576 took 12 min
46 s with 2 BLAS threads on a busy 2-core machine, 19 s with 1): --points seeded synthetic points of
--rows x --units, float32, with binary labels along a planted direction plus noise, each probed the
way ``neurometry probe POINT.npy --labels labels.npy`` does (``workflows.probe.run_probe``: 5-fold
logistic probe, leak-free standardisation).

Configurations, run in this process:

- ``limited``: ``NEUROMETRY_BLAS_THREADS`` unset, so the probe's fits run on
  ``neurometry.threads.DEFAULT_THREADS`` BLAS threads;
- ``unlimited``: ``NEUROMETRY_BLAS_THREADS`` = the core count (--cores), which is what NumPy's and
  SciPy's OpenBLAS use when nothing limits them: the behaviour before the limit.

The competitor is a child process running a busy loop of 300 x 300 NumPy matmuls on one BLAS thread
(it keeps one core busy, like another user's job); it is started before and stopped after each timed
run. Repetitions are interleaved (without/with the competitor, limited/unlimited); each time is the
median over --repeats runs (the slow unlimited configuration runs only --old-repeats times). Target: with the competitor, the limited probe is at most 2x slower than
without it. The scores must agree across configurations to 1e-10 (the script exits 1 when they do not).

--paths adds the other paths that run under the limit, on the first point only: ``sparse`` (sparse
probe, k = 1, 2, 4, ..., 512, 576), ``control`` (selectivity against a control task over 200 token
types), ``nc4`` (the measure workflow's nc4, which fits a logistic classifier), ``encode`` (nested
cross-validated ridge to 30 targets, through torch: limited means 1 torch thread too) and ``neurons``
(the dashboard's neuron table of a 20,000 x 576 stored point).

    .venv/bin/python benchmarks/probe_threads.py [--points 10] [--repeats 5] [--old-repeats 1] [--paths probe,...]
"""

from __future__ import annotations

import argparse
import os

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--cores", type=int, default=os.cpu_count() or 2)
CORES = _pre.parse_known_args()[0].cores
# the unlimited configuration must see OpenBLAS's own default (one thread per core), whatever the
# caller's environment says; threadpoolctl then sets the counts per configuration
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(CORES)

import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from neurometry.threads import DEFAULT_THREADS, ENV_VAR  # noqa: E402

torch.set_num_threads(CORES)

COMPETITOR = """
import numpy as np
a = np.random.default_rng(0).standard_normal((300, 300)) / 20
while True:
    a = np.tanh(a @ a)
"""
PATHS = ("probe", "sparse", "control", "nc4", "encode", "neurons")


class Competitor:
    """A child process keeping one core busy with NumPy matmuls on one BLAS thread."""

    def __enter__(self) -> Competitor:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
        time.sleep(1.0)  # past its imports: busy when the timing starts
        if self.process.poll() is not None:
            raise SystemExit("the competing process exited early")
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def planted_points(folder: Path, points: int, rows: int, units: int, seed: int = 0) -> tuple[list[Path], Path]:
    """``points`` .npy files of (rows, units) float32 and one labels file: binary labels along a planted
    direction (logit = x . w + noise), the direction differing per point."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, units))
    signal = rng.standard_normal(rows)
    labels = (signal > 0).astype(np.int64)
    paths = []
    for p in range(points):
        w = rng.standard_normal(units)
        w /= np.linalg.norm(w)
        x = base + rng.standard_normal((rows, units)) * 0.5 + np.outer(signal * (0.2 + 0.1 * p), w)
        path = folder / f"resid.{p}.npy"
        np.save(path, x.astype(np.float32))
        paths.append(path)
    labels_path = folder / "labels.npy"
    np.save(labels_path, labels)
    return paths, labels_path


def workloads(folder: Path, paths: list[Path], labels_path: Path, chosen: list[str]) -> dict[str, Callable]:
    """name -> function running that path once and returning its numbers (to compare across configurations)."""
    from neurometry.probe import encode, selectivity, sparse_probe
    from neurometry.workflows.measure import npy_source
    from neurometry.workflows.probe import run_probe

    labels = np.load(labels_path)
    first = np.load(paths[0]).astype(np.float64)
    jobs: dict[str, Callable] = {}
    if "probe" in chosen:
        def probe_all():
            return [run_probe(str(p), labels_file=str(labels_path), progress=False)["results"][0]["score"]
                    for p in paths]
        jobs["probe"] = probe_all
    if "sparse" in chosen:
        jobs["sparse"] = lambda: [r.score for r in sparse_probe(first, labels)]
    if "control" in chosen:
        types = np.random.default_rng(1).integers(0, 200, len(first))
        jobs["control"] = lambda: [selectivity(first, labels, types).selectivity]
    if "nc4" in chosen:
        from neurometry.workflows.measure import measure_sources

        source = npy_source(paths[0])
        jobs["nc4"] = lambda: [r["value"] for r in measure_sources([source], ["nc4"], label_values=labels,
                                                                  progress=False)]
    if "encode" in chosen:
        rng = np.random.default_rng(2)
        targets = first[:, :20] @ rng.standard_normal((20, 30)) + 4 * rng.standard_normal((len(first), 30))
        jobs["encode"] = lambda: list(encode(first, targets).r)
    if "neurons" in chosen:
        from neurometry.app.neurons import neuron_table
        from neurometry.store import import_array, open_store

        store = open_store(folder / "store", create=True)
        big = np.random.default_rng(3).standard_normal((20_000, first.shape[1])).astype(np.float32)
        import_array(store, "r", "p", [big], len(big), pd.DataFrame({"row_id": np.arange(len(big))}))
        jobs["neurons"] = lambda: list(neuron_table(store, "r", "p").std)
    return jobs


CONFIGS = {"limited": None, "unlimited": str(CORES)}


def run(job: Callable, config: str) -> tuple[float, float, list[float]]:
    """(wall seconds, this process's CPU seconds, the job's numbers) of one run under ``config``."""
    if CONFIGS[config] is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = CONFIGS[config]
    start, cpu = time.perf_counter(), time.process_time()
    values = job()
    return time.perf_counter() - start, time.process_time() - cpu, values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[_pre])
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1496)
    parser.add_argument("--units", type=int, default=576)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old-repeats", type=int, default=1,
                        help="runs of the (slow) unlimited configuration; 0 skips it")
    parser.add_argument("--paths", default="probe", help=f"comma-separated, from {', '.join(PATHS)}, or 'all'")
    args = parser.parse_args()
    chosen = list(PATHS) if args.paths == "all" else args.paths.split(",")
    unknown = set(chosen) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; choose from {', '.join(PATHS)}")

    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"cores {CORES}, BLAS libraries {blas}, torch threads {torch.get_num_threads()}, "
          f"limited = {DEFAULT_THREADS} thread(s), unlimited = {CORES}; load average {os.getloadavg()[0]:.2f}")
    print(f"workload: {args.points} points x {args.rows} rows x {args.units} units, 5-fold logistic probe each")

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels_path = planted_points(Path(tmp), args.points, args.rows, args.units)
        jobs = workloads(Path(tmp), paths, labels_path, chosen)
        for name, job in jobs.items():
            run(job, "limited")  # warm-up: imports, first-call costs
            times: dict[tuple[str, bool], list[float]] = {}
            cpu: dict[tuple[str, bool], list[float]] = {}
            values: dict[str, list[float]] = {}
            for repeat in range(max(args.repeats, args.old_repeats)):
                configs = [c for c in CONFIGS if repeat < (args.repeats if c == "limited" else args.old_repeats)]
                for busy in (False, True):
                    for config in configs:
                        if busy:
                            with Competitor():
                                elapsed, used, got = run(job, config)
                        else:
                            elapsed, used, got = run(job, config)
                        times.setdefault((config, busy), []).append(elapsed)
                        cpu.setdefault((config, busy), []).append(used)
                        values.setdefault(config, got)
            med = {key: statistics.median(ts) for key, ts in times.items()}
            for config in values:
                idle, busy = med[(config, False)], med[(config, True)]
                spread = " ".join(f"{t:.2f}" for t in times[(config, True)])
                used = statistics.median(cpu[(config, False)]), statistics.median(cpu[(config, True)])
                print(f"{name:8s} {config:9s} without competitor {idle:7.2f} s (cpu {used[0]:6.2f} s)   "
                      f"with {busy:7.2f} s (cpu {used[1]:6.2f} s; runs {spread})   with / without {busy / idle:5.2f}x")
            ratio = med[("limited", True)] / med[("limited", False)]
            if "unlimited" in values:
                print(f"{name:8s} unlimited / limited: {med[('unlimited', False)] / med[('limited', False)]:.1f}x "
                      f"without competitor, {med[('unlimited', True)] / med[('limited', True)]:.1f}x with")
            if name == "probe":
                print(f"target: limited probe with competitor <= 2x without: {ratio:.2f}x "
                      f"{'pass' if ratio <= 2 else 'FAIL'}")
            gap = float(np.max(np.abs(np.subtract(values["limited"], values.get("unlimited", values["limited"])))))
            if gap > 1e-10:
                print(f"{name}: results differ between limited and unlimited by {gap:.2e}")
                failures += 1
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
