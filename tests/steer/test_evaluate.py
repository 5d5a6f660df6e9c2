"""Steering evaluation: alpha = 0 changes nothing (exactly), the measures match their definitions, and
on SmolLM2 the sentiment vector raises positive continuations monotonically at bounded perplexity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry.models import load_model
from neurometry.models.tiny import tiny_llama
from neurometry.steer import build_vector, neutral_texts, steering_pairs, sweep

NEUTRAL = ["The farmer opened the red door.", "A woman carried a heavy box to the station."]


def perplexity(model, texts):
    nll, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            batch = model.tokenizer(text, return_tensors="pt")
            logits = model.module(**batch).logits[0, :-1].double()
            ids = batch["input_ids"][0, 1:]
            nll -= float(torch.log_softmax(logits, -1)[torch.arange(len(ids)), ids].sum())
            count += len(ids)
    return float(np.exp(nll / count))


def test_alpha_zero_is_the_unsteered_model_and_measures_follow_their_definitions():
    model = tiny_llama()
    pairs = [
        {"positive": "the cat sat", "negative": "the dog ran", "target": " good", "opposite": " bad"},
        {"positive": "a happy day", "negative": "a sad night", "target": " good", "opposite": " bad"},
    ]
    vector = np.random.default_rng(0).normal(size=model.module.config.hidden_size)
    rows = sweep(model, vector, "resid.0", [0.0, 3.0], pairs, NEUTRAL)
    assert rows[0].target_logprob_shift == 0.0 and rows[0].kl == 0.0
    assert rows[0].perplexity == pytest.approx(perplexity(model, NEUTRAL), rel=1e-12)
    assert rows[1].kl > 0 and rows[1].perplexity != rows[0].perplexity


@pytest.mark.slow
def test_sentiment_vector_on_smollm2_is_monotonic_at_bounded_perplexity():
    model = load_model("smollm2-135m")
    pairs = steering_pairs("sentiment")
    train, held_out = pairs[:40], pairs[40:48]
    vector = build_vector(model, [p["positive"] for p in train], [p["negative"] for p in train], "resid.12")
    rows = sweep(model, vector, "resid.12", [-2.0, 0.0, 1.0, 2.0, 4.0], held_out, neutral_texts(10))
    shifts = [r.target_logprob_shift for r in rows]
    assert all(a < b for a, b in zip(shifts, shifts[1:], strict=False)), shifts
    assert shifts[-1] > 1.0  # docs/steer.md: about +3.8 nats at alpha 4 on 20 held-out pairs
    # neutral-text perplexity: within 10% of unsteered up to alpha 2, within 50% at alpha 4 (docs/steer.md)
    base = rows[1].perplexity
    assert all(abs(r.perplexity / base - 1) < 0.10 for r in rows[1:4]), [r.perplexity for r in rows]
    assert rows[4].perplexity < 1.5 * base
