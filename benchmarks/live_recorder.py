"""Overhead of recording during training: each lab model trained with and without a live ``Recorder``.

What is measured, per lab (grokking, induction, superposition, collapse; default size unless ``--size``):

* **plain**: ``lab.train(model, checkpoint)`` with a checkpoint callback that does nothing (the lab still
  computes its own metrics at its checkpoints, on both sides).
* **recorded**: the same, with ``Recorder(model, lab.points(), lab.probe_data(), store, every=100,
  background="process")`` (``--background thread``: a worker thread; ``none``: recording in the training
  thread) set up inside the timing and called after every optimiser step (a global optimiser step hook counts the steps,
  so the labs' loops are unchanged): every 100th step records every point of the lab over its probe
  inputs into a new run of a series. The timing ends when every recording is stored.

The two alternate (the order flips each repetition); both start from the same seeded model, and the
recorder draws no random numbers, so both train identically. The figure is the median over repetitions
of recorded / plain - 1, per lab.

Target (issue 18): overhead <= 5% of training time at every=100.

Run::

    python benchmarks/live_recorder.py                       # every lab, default size, 3 repetitions
    python benchmarks/live_recorder.py --lab superposition --size test --repeats 1   # a smoke run

Measured (2 shared cores, 1 training thread, medians of 3, 2026-12-07, the recorder process): superposition
+4.8%, collapse +3.9%, induction +1.4%, grokking (test size) -2.2%; repeats range about +-10%. With a worker
thread superposition was +8.4% and collapse +12.8%.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import threadpoolctl
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from neurometry.lab import LABS, get_lab
from neurometry.record.live import Recorder


def train_once(name: str, size: str, every: int | None, root: Path, tag: str, background: str | bool) -> tuple[float, int]:
    """Seconds to train lab ``name`` (with a recorder every ``every`` steps, or none), and how many runs it recorded."""
    lab = get_lab(name)(size=size)
    model = lab.build()
    started = time.perf_counter()
    recorder = None
    if every is not None:
        probe = lab.probe_data()
        recorder = Recorder(model, lab.points(), (probe.inputs, probe.metadata), root / f"store-{tag}", every=every,
                            series=name, reduce=lab.reduce, batch_size=1024, background=background)
    steps = 0

    def after_step(optimizer, args, kwargs) -> None:
        nonlocal steps
        steps += 1
        if recorder is not None:
            recorder.step(steps)

    handle = register_optimizer_step_post_hook(after_step)
    try:
        lab.train(model, lambda step, metrics: None)
    finally:
        handle.remove()
    if recorder is not None:
        recorder.close()  # every recording stored: inside the timing
    seconds = time.perf_counter() - started
    return seconds, len(recorder.runs) if recorder is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", nargs="+", default=list(LABS), choices=list(LABS))
    parser.add_argument("--size", default="default", choices=["default", "test"])
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--background", default="process", choices=["process", "thread", "none"],
                        help="where the Recorder records (none: in the training thread)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (`neurometry lab` uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads)
    lines = []
    with tempfile.TemporaryDirectory(prefix="live-recorder-") as tmp:
        root = Path(tmp)
        for name in args.lab:
            overheads, times = [], {"plain": [], "recorded": []}
            runs = 0
            for repeat in range(args.repeats):
                order = ("plain", "recorded") if repeat % 2 == 0 else ("recorded", "plain")
                taken = {}
                for method in order:
                    gc.collect()
                    every = args.every if method == "recorded" else None
                    taken[method], recorded = train_once(name, args.size, every, root, f"{name}-{repeat}",
                                                         False if args.background == "none" else args.background)
                    runs = max(runs, recorded)
                    times[method].append(taken[method])
                overheads.append(taken["recorded"] / taken["plain"] - 1)
                print(f"{name} repeat {repeat}: plain {taken['plain']:.1f} s, recorded {taken['recorded']:.1f} s, "
                      f"overhead {overheads[-1]:+.1%}", file=sys.stderr)
            lines.append(f"{name:14s} plain {statistics.median(times['plain']):7.1f} s   recorded "
                         f"{statistics.median(times['recorded']):7.1f} s   {runs:3d} runs   overhead "
                         f"{statistics.median(overheads):+.1%} (target <= 5%)")
    print(f"every={args.every}, size {args.size}, {args.threads} threads, medians of {args.repeats}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
