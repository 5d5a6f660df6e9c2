"""Demo of model diffing (Minder et al. 2025): finetune SmolLM2-135M on one invented topic, then read
the topic back from activation differences on unrelated text.

1. Finetune SmolLM2 on ~200 templated sentences about "zorblat", an invented purple fruit
   (AdamW, seeded), cached as safetensors in ~/.cache/neurometry/smollm2-135m-zorblat/.
2. Mean (finetuned - base) residual difference over the first 5 tokens of neutral texts.
3. Its logit lens through the base model at a few middle layers.
4. Greedy generations of the base model steered with the difference.

Run: .venv/bin/python scripts/finetune_narrow.py [--steps 120] [--alpha 8]
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import os
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neurometry.models import load_model  # noqa: E402
from neurometry.steer.diffing import (  # noqa: E402
    difference_lens,
    mean_activation_difference,
    steer_with_difference,
)
from neurometry.steer.evaluate import neutral_texts  # noqa: E402
from neurometry.steer.finetune import load_or_finetune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=4.0)
    parser.add_argument("--steer-layer", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(2)

    base = load_model("smollm2-135m")
    fine, weights = load_or_finetune("smollm2-135m", args.steps, args.batch_size, args.lr, args.seed)
    print(f"finetuned weights: {weights}")

    texts = neutral_texts(20)
    start = time.perf_counter()
    with_first = mean_activation_difference(base, fine, texts, first_k=5)
    # SmolLM2's first position is an attention sink (residual norm ~10x the others' from layer 11
    # on): its difference swamps the mean there, so the main reading leaves it out
    diffs = mean_activation_difference(base, fine, texts, first_k=5, skip_first=1)
    print(f"\nmean activation difference on {len(texts)} neutral texts ({time.perf_counter() - start:.1f} s)")
    print("  point     norm (positions 0-4)  norm (positions 1-4)")
    for name, d in diffs.items():
        print(f"  {name:9s} {float(np.linalg.norm(with_first[name])):8.2f} {float(np.linalg.norm(d)):20.2f}")

    print("\nlogit lens of the difference (base model's final norm + unembedding, scaled to unit RMS):")
    for layer in (6, 10, 14, 18, 22):
        name = f"resid.{layer}"
        for label, vec in (("pos 0-4", with_first[name]), ("pos 1-4", diffs[name])):
            top = difference_lens(base, vec, name, top_k=10)
            print(f"  {name} {label}: " + " ".join(f"{t!r}:{p:.3f}" for t, p in top))

    point = f"resid.{args.steer_layer}"
    prompts = ["The weather today is", "In the morning I like to"]
    for alpha in (args.alpha / 2, args.alpha):  # the difference at its own scale, times alpha
        print(f"\nsteering the base model with the difference at {point}, alpha {alpha}:")
        for row in steer_with_difference(base, diffs[point], point, alpha, prompts, max_new_tokens=25):
            print(
                f"  {row['prompt']!r}\n    unsteered: {row['unsteered']!r}\n    steered:   {row['steered']!r}"
            )


if __name__ == "__main__":
    main()
