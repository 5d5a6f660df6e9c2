"""The hallucination figures of docs/detect.md: SmolLM2-135M's own answers about the cities of Marks & Tegmark's
cities set, labelled correct or hallucinated, read from its residual stream.

Steps (what the commands of docs/detect.md do, here in one process): ``export_hallucination_cities`` (the
model's greedy answer for each of the 748 cities after two solved examples), ``record`` of the 30 residual
points at each claim's last token, ``detect_truth`` grouped by city with the semantic-dynamics trajectory and
the output baselines on 200 held-out claims, and two controls that read no activations
(``detect.CategoryPrior`` on the probes' folds): each claim scored by how often claims naming the same answer,
or about a city of the same country, were right in the training folds.

Not a speed comparison: it reproduces accuracy figures. torch runs on ``--threads`` threads.

Run::

    python benchmarks/hallucination_figures.py          # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from neurometry.record import record  # noqa: E402
from neurometry.workflows.detect import detect_truth, export_hallucination_cities  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="hallucination-") as tmp:
        made = export_hallucination_cities("smollm2-135m", Path(tmp) / "data")
        print(f"{made['statements']} claims: {made['correct']} correct, {made['hallucinated']} hallucinated")
        record("smollm2-135m", made["data"], ["resid.*"], Path(tmp) / "s", reduce="last", progress=False)
        found = detect_truth(str(Path(tmp) / "s"), label="truth", group="group", dynamics=True, baselines=True,
                             controls=["answer", "correct_country"], progress=False)
        by_point = {}
        for r in found["results"]:
            by_point.setdefault(r["point"], {})[r["method"]] = r
        for point, methods in by_point.items():
            print(point, "  ".join(f"{m} {r['accuracy']:.3f} ({r['auroc']:.3f})" for m, r in methods.items()))
        for r in found["baselines"]:
            accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            print(f"{r['point']} {r['method']}: accuracy {accuracy}, AUROC {r['auroc']:.3f} ({r['n']} claims)")


if __name__ == "__main__":
    main()
