"""The figures of docs/detect.md that no test prints whole: SmolLM2-135M on the cities statements of Marks &
Tegmark 2023.

* **causal test**: the mass-mean direction of the first 1,000 statements' last-token states (difference of the
  class means) at resid.8, resid.10 and resid.12, added with alpha -3 / 0 / +3 while the model judges 60
  held-out statements (1,000-1,059) in a 4-shot "This statement is: True/False" prompt: the mean log-odds gap
  log P(" True") - log P(" False") for true and false statements, and the shift from -3 to +3.
* **output baselines**: on statements 1,000-1,199, the AUROC of the statement's log-probability and of the
  few-shot log-odds, and the few-shot accuracy before and after contextual calibration.

Not a speed comparison: it reproduces accuracy figures. torch runs on ``--threads`` threads.

Run::

    python benchmarks/truth_figures.py          # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from neurometry.datasets import truth_statements  # noqa: E402
from neurometry.detect.output_baselines import output_baselines  # noqa: E402
from neurometry.detect.truth_steering import steering_effect  # noqa: E402
from neurometry.models import load_model  # noqa: E402
from neurometry.models.hooks import capture  # noqa: E402

POINTS = ["resid.8", "resid.10", "resid.12"]
TRAIN = 1000


def last_token_states(model, texts: list[str], points: list[str], batch: int = 50) -> dict[str, np.ndarray]:
    """Each point's state at each statement's last token, (n, d)."""
    hook_points = model.resolve(points)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in points}
    for start in range(0, len(texts), batch):
        encoded = model.tokenizer(texts[start : start + batch], return_tensors="pt", padding=True)
        _, got = capture(model, dict(encoded), hook_points, stop_early=True)
        last = encoded["attention_mask"].sum(dim=1) - 1  # right padding
        for p in points:
            parts[p].append(got[p][np.arange(len(last)), last].double().numpy())
    return {p: np.concatenate(v) for p, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m")
    table = truth_statements("cities")
    texts, truth = table["text"].tolist(), (table["truth"] == "true").to_numpy()
    shots = [(texts[i], bool(truth[i])) for i in (0, 3, 4, 7)]
    states = last_token_states(model, texts[:TRAIN], POINTS)
    held_out = np.arange(TRAIN, TRAIN + 60)
    for point in POINTS:
        started = time.perf_counter()
        vector = states[point][truth[:TRAIN]].mean(axis=0) - states[point][~truth[:TRAIN]].mean(axis=0)
        effect = steering_effect(model, [texts[i] for i in held_out], truth[held_out], vector, point,
                                 alphas=(-3.0, 0.0, 3.0), shots=shots)
        print(f"causal {point}: gap true {' / '.join(f'{g:.3f}' for g in effect.gap_true)}, false "
              f"{' / '.join(f'{g:.3f}' for g in effect.gap_false)}, shift {effect.shift:+.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    started = time.perf_counter()
    chosen = np.arange(TRAIN, TRAIN + 200)
    baselines = output_baselines(model, [texts[i] for i in chosen], truth[chosen], shots)
    print(f"output baselines on {baselines['n']} statements: log-probability AUROC "
          f"{baselines['log_probability']['auroc']:.3f}; few-shot AUROC {baselines['few_shot']['auroc']:.3f}, "
          f"accuracy {baselines['few_shot']['accuracy']:.3f}, calibrated {baselines['few_shot']['calibrated_accuracy']:.3f} "
          f"(content-free gap {baselines['few_shot']['content_free_gap']:+.3f}; {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
