"""The hallucination figures of docs/detect.md: SmolLM2-135M's own answers about the cities of Marks & Tegmark's
cities set, labelled correct or hallucinated, read from its residual stream.

Steps (what the commands of docs/detect.md do, here in one process): ``export_hallucination_cities`` (the
model's greedy answer for each of the 748 cities after two solved examples), ``record`` of the 30 residual
points at each claim's last token, ``detect_truth`` grouped by city with the semantic-dynamics trajectory and
the output baselines on 200 held-out claims; then the answer-prior control, which no detector should be
credited with: each claim scored by how often its answer word (the country named, "the" dropped) was right
in the other folds (the same 5 stratified folds, add-two smoothing towards the base rate).

Not a speed comparison: it reproduces accuracy figures. torch runs on ``--threads`` threads.

Run::

    python benchmarks/hallucination_figures.py          # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from neurometry.detect.evaluation import auroc  # noqa: E402
from neurometry.folds import fold_assignment  # noqa: E402
from neurometry.record import record  # noqa: E402
from neurometry.workflows.detect import detect_truth, export_hallucination_cities  # noqa: E402


def answer_prior(table: pd.DataFrame, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """(AUROC, accuracy) of scoring each claim by its answer word's smoothed rate of being right in the other
    folds."""
    truth = (table["truth"] == "true").to_numpy()
    answer = table["answer"].str.lower().str.replace("^the ", "", regex=True).to_numpy()
    fold = fold_assignment(len(table), folds, seed=seed, stratify=truth)
    score = np.zeros(len(table))
    for k in range(folds):
        train = fold != k
        prior = truth[train].mean()
        counts = pd.DataFrame({"answer": answer[train], "right": truth[train]}).groupby("answer")["right"].agg(["sum", "count"])
        rate = (counts["sum"] + 2 * prior) / (counts["count"] + 2)
        score[~train] = pd.Series(answer[~train]).map(rate).fillna(prior).to_numpy()
    return auroc(score[~truth], score[truth]), float(((score > 0.5) == truth).mean())


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
                             progress=False)
        by_point = {}
        for r in found["results"]:
            by_point.setdefault(r["point"], {})[r["method"]] = r
        for point, methods in by_point.items():
            print(point, "  ".join(f"{m} {r['accuracy']:.3f} ({r['auroc']:.3f})" for m, r in methods.items()))
        for r in found["baselines"]:
            accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            print(f"output baseline {r['method']}: accuracy {accuracy}, AUROC {r['auroc']:.3f} ({r['n']} claims)")
        table = pd.read_json(made["data"], lines=True)
        prior_auroc, prior_accuracy = answer_prior(table)
        print(f"answer prior: accuracy {prior_accuracy:.3f}, AUROC {prior_auroc:.3f}")


if __name__ == "__main__":
    main()
