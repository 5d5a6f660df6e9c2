"""Agreement of neurometry.steer's vectors with steering-vectors and repeng on tiny_llama (and SmolLM2).

`python benchmarks/steering_agreement.py [--smollm2]`. Needs `steering-vectors` and `repeng` installed
(pure Python: `pip install --no-deps steering-vectors repeng`). repeng 0.4.0 references ``np.float_``
(removed in NumPy 2) in an annotation, so this script restores that alias before importing it.

Compares, for the same prompts (the first 24 pairs of steer_sentiment.jsonl), block output and
last-token aggregation:
- mean_diff vs steering-vectors' ``train_steering_vector`` (mean_aggregator): cosine and max |diff|.
- pca vs repeng's ``pca_diff`` (sklearn PCA of the paired differences, centred, unit norm): cosine of
  directions (ours is scaled by the mean projection; repeng's is unit, sign by majority vote).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)
if not hasattr(np, "float_"):
    np.float_ = np.float64  # repeng 0.4.0 annotation uses the NumPy 1 alias

from neurometry.steer.vectors import build_vector  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data" / "steer_sentiment.jsonl"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def compare(model, layer: int) -> dict:
    from repeng import DatasetEntry
    from repeng.extract import read_representations
    from steering_vectors import train_steering_vector

    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:24]]
    pos, neg = [r["positive"] for r in rows], [r["negative"] for r in rows]
    point = f"resid.{layer}"
    ours_mean = build_vector(model, pos, neg, point, "mean_diff")
    sv = train_steering_vector(
        model.module, model.tokenizer, list(zip(pos, neg, strict=True)), layers=[layer]
    )
    theirs_mean = sv.layer_activations[layer].double().numpy()
    ours_pca = build_vector(model, pos, neg, point, "pca")
    with torch.inference_mode():
        rep = read_representations(
            model.module,
            model.tokenizer,
            [DatasetEntry(p, n) for p, n in zip(pos, neg, strict=True)],
            hidden_layers=[layer],
            method="pca_diff",
        )[layer].astype(np.float64)
    return {
        "model": model.name,
        "point": point,
        "mean_diff_cosine_vs_steering_vectors": cosine(ours_mean, theirs_mean),
        "mean_diff_max_abs_diff": float(np.abs(ours_mean - theirs_mean).max()),
        "pca_cosine_vs_repeng_pca_diff": cosine(ours_pca, rep),
    }


def main() -> None:
    from neurometry.models.tiny import tiny_llama

    results = [compare(tiny_llama(seed=3), 1)]
    if "--smollm2" in sys.argv:
        from neurometry.models import load_model

        results.append(compare(load_model("smollm2-135m"), 12))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
