"""The probing figure and table of docs/probe.md: MiniLM and SmolLM2-135M, four bundled tasks, every
residual point, last-token representation, 5-fold probes.

    .venv/bin/python scripts/probe_depth.py [--out benchmarks/out/probe-depth] [--figure docs/img/probe-depth.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from neurometry.demo import plot_probe_tasks, print_probe_tasks, probe_tasks

torch.set_num_threads(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/probe-depth"))
    ap.add_argument("--figure", type=Path, default=Path("docs/img/probe-depth.png"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records = probe_tasks(["minilm", "smollm2-135m"], args.out / "store", progress=True)
    print_probe_tasks(records)
    plot_probe_tasks(records, args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
