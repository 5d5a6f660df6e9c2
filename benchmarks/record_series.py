"""Recording a series of checkpoints against plain forward passes over the same inputs.

What is measured (the grokking lab's model by default, its probe inputs: every pair (a, b) mod p, its
points: the residual stream after the embedding, the attention and the MLP, last position):

* **ours**: ``record_checkpoints(base, probe.npz, points, store, folder)`` into a fresh store: for each of
  the N safetensors state dicts, hash it, load it into the base model, record every point into a run of
  the series (hooks, reduction, Zarr chunks, catalog commits) and add the run to the series. State dicts
  go through the series session (``record/series_session.py``): set up once, one checkpoint's writes and
  commit overlapping the next one's forward passes.
* **plain**: for each state dict, ``load_file`` + ``load_state_dict`` into the same model, then the same
  batches through it under ``torch.inference_mode()``, keeping nothing: the floor any recorder pays.

Both load every checkpoint from disk (the issue asks for model loading on both sides). The state dicts
are the lab's initial weights plus seeded noise growing with the step, so every checkpoint differs (no
duplicate is skipped). Timed runs alternate (the order flips each repetition) with ``gc.collect()``
before each; the machine is shared, so the figure is the median over repetitions of ours / plain.

Target (issue 18): ours / plain <= 1.3 for 50 checkpoints of the grokking model.

Run::

    python benchmarks/record_series.py                    # grokking, default size, 50 checkpoints, 3 repetitions
    python benchmarks/record_series.py --size test --checkpoints 10 --repeats 1    # a smoke run
    python benchmarks/record_series.py --breakdown     # where a checkpoint's time goes (no checkpoint loading)

``--breakdown`` times one ``record`` call's work in steady state instead (each step 8 times in a row, 3 rounds,
medians): the plain forward, the hooked forward alone (``capture``, stopping after the last point),
``record`` with its chunk-file writes made a no-op, and ``record``: what a single run pays, and what the
series session takes off the forward pass's path.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from neurometry.lab import get_lab
from neurometry.models.load import wrap_module
from neurometry.record.checkpoints import record_checkpoints

BATCH_SIZE = 1024  # what `neurometry lab` records with


def make_checkpoints(model: torch.nn.Module, folder: Path, count: int) -> list[Path]:
    generator = torch.Generator().manual_seed(0)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    paths = []
    for i in range(count):
        state = {k: (v + 0.01 * (i + 1) * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v)
                 .contiguous() for k, v in base.items()}
        path = folder / f"step-{(i + 1) * 100:08d}.safetensors"
        save_file(state, str(path))
        paths.append(path)
    return paths


def plain(model: torch.nn.Module, inputs: torch.Tensor, paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        model.load_state_dict(load_file(str(path)), strict=True)
        with torch.inference_mode():
            for start in range(0, len(inputs), BATCH_SIZE):
                model(inputs[start : start + BATCH_SIZE])
    return time.perf_counter() - started


def ours(model: torch.nn.Module, data: Path, points: dict[str, str], reduce: str, paths: list[Path],
         root: Path, repeat: int) -> float:
    loaded = wrap_module(model, "lab").add_aliases(points)  # the lab's aliases, as `neurometry lab` stores them
    started = time.perf_counter()
    record_checkpoints(loaded, data, list(points), root / f"store-{repeat}", paths, series="bench",
                       progress=False, reduce=reduce, batch_size=BATCH_SIZE)
    return time.perf_counter() - started


def breakdown(model: torch.nn.Module, data: Path, points: dict[str, str], reduce: str, inputs: torch.Tensor,
              root: Path) -> None:
    """Print the median milliseconds of one checkpoint's plain forward, hooked forward, record without chunk
    writes and record, each run 8 times in a row (3 rounds)."""
    import neurometry.store.writer as writer
    from neurometry.models.hooks import capture
    from neurometry.record.recorder import record

    loaded = wrap_module(model, "lab").add_aliases(points)
    hook_points = loaded.resolve(list(points))
    write_chunk_file = writer.write_chunk_file
    runs = iter(range(10**6))

    def forward() -> None:
        with torch.inference_mode():
            for start in range(0, len(inputs), BATCH_SIZE):
                model(inputs[start : start + BATCH_SIZE])

    def hooked() -> None:
        for start in range(0, len(inputs), BATCH_SIZE):
            capture(loaded, inputs[start : start + BATCH_SIZE], hook_points, stop_early=True)

    def recorded(write: bool):
        def run() -> None:
            writer.write_chunk_file = write_chunk_file if write else (lambda path, data: None)
            try:
                record(loaded, data, list(points), root / "breakdown", run=f"r{next(runs)}", reduce=reduce,
                       batch_size=BATCH_SIZE, progress=False)
            finally:
                writer.write_chunk_file = write_chunk_file
        return run

    steps = {"plain forward": forward, "hooked forward (capture)": hooked,
             "record, chunk writes a no-op": recorded(False), "record": recorded(True)}
    taken: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(3):
        for name, step in steps.items():
            for _ in range(8):
                started = time.perf_counter()
                step()
                taken[name].append(time.perf_counter() - started)
    floor = statistics.median(taken["plain forward"])
    for name, values in taken.items():
        print(f"{name:30s} {statistics.median(values) * 1000:7.1f} ms  x{statistics.median(values) / floor:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="grokking")
    parser.add_argument("--size", default="default", choices=["default", "test"])
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--breakdown", action="store_true", help="time one checkpoint's parts instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lab = get_lab(args.lab)(size=args.size)
    model = lab.build().eval()
    probe = lab.probe_data()
    model.example_input = probe.inputs[:1]
    with tempfile.TemporaryDirectory(prefix="record-series-") as tmp:
        root = Path(tmp)
        folder = root / "checkpoints"
        folder.mkdir()
        paths = make_checkpoints(model, folder, args.checkpoints)
        data = root / "probe.npz"
        columns = {str(c): (v.to_numpy() if v.dtype.kind in "biuf" else v.astype(str).to_numpy().astype(str))
                   for c, v in probe.metadata.items()}
        np.savez(data, inputs=probe.inputs.numpy(), **columns)
        if args.breakdown:
            breakdown(model, data, lab.points(), lab.reduce, probe.inputs, root)
            return
        print(f"{args.lab} ({args.size}): {len(probe.inputs)} probe inputs, points {', '.join(lab.points())}, "
              f"{args.checkpoints} checkpoints, {args.threads} threads", file=sys.stderr)
        ratios, times = [], {"ours": [], "plain": []}
        for repeat in range(args.repeats):
            order = ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours")
            taken = {}
            for method in order:
                gc.collect()
                if method == "ours":
                    taken[method] = ours(model, data, lab.points(), lab.reduce, paths, root, repeat)
                else:
                    taken[method] = plain(model, probe.inputs, paths)
                times[method].append(taken[method])
            ratios.append(taken["ours"] / taken["plain"])
            print(f"repeat {repeat}: ours {taken['ours']:.2f} s, plain {taken['plain']:.2f} s, "
                  f"ratio {ratios[-1]:.3f}", file=sys.stderr)
    print(f"ours {statistics.median(times['ours']):.2f} s, plain {statistics.median(times['plain']):.2f} s "
          f"(medians of {args.repeats}); ours / plain = {statistics.median(ratios):.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
