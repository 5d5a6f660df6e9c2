"""The causal test of a truth direction (Marks & Tegmark 2023, section 5): adding the direction to the residual
stream while the model reads a statement should make it call the statement true more often, subtracting it
false, in a few-shot "This statement is: True/False" prompt.

The read-out is the log-odds gap log P(" True") - log P(" False") of the next token after the prompt. The
direction is added (``alpha`` times the vector, e.g. the difference of the class means in activation units) at
the statement's last token and every token after it (the suffix "This statement is:"), where the model forms
its judgement; prompts run in left-padded batches, so positions count from each prompt's end.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.models import LoadedModel
from neurometry.models.hooks import left_padded, require_causal, single_token_id
from neurometry.steer import apply

SUFFIX = " This statement is:"
ANSWERS = (" True", " False")


def few_shot_prompt(statement: str, shots: Sequence[tuple[str, bool]]) -> str:
    """``shots`` (statement, is_true) as solved examples, one per line, then ``statement`` to judge."""
    lines = [f"{text}{SUFFIX}{ANSWERS[0] if is_true else ANSWERS[1]}" for text, is_true in shots]
    return "\n".join([*lines, f"{statement}{SUFFIX}"])


@dataclass(frozen=True)
class SteeringEffect:
    """Mean log-odds gap log P(" True") - log P(" False") (nats) per ``alpha``, over the true and the false
    statements; ``shift`` is the gap at the largest alpha minus the gap at the smallest, over all statements
    (positive: the direction pushes towards "True")."""

    alphas: list[float]
    gap_true: list[float]
    gap_false: list[float]
    shift: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def truth_gaps(model: LoadedModel, prompts: Sequence[str], vector: Any = None, point: str | None = None,
               alpha: float = 0.0, steered_tokens: int | None = None, batch_size: int = 16) -> np.ndarray:
    """(n,) log P(" True") - log P(" False") after each prompt, with ``alpha * vector`` added at ``point`` on the
    last ``steered_tokens`` tokens (default: the statement's last token and the suffix) when a vector is given.

    Prompts run ``batch_size`` at a time, padded on the left, with each row's positions counted from its first
    real token: the gaps equal those of each prompt run alone (to float32 rounding; tested), and the steered
    positions, counted from the end, are the same tokens in every row. A model whose forward takes no
    ``position_ids`` runs each prompt alone."""
    require_causal(model, "True/False answer")
    yes, no = single_token_id(model, ANSWERS[0], "answer"), single_token_id(model, ANSWERS[1], "answer")
    steered = steered_tokens or len(model.tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]) + 1
    if "position_ids" not in inspect.signature(model.module.forward).parameters:
        batch_size = 1
    gaps = []
    for start in range(0, len(prompts), batch_size):
        batch = left_padded(model, [model.tokenizer(prompt)["input_ids"] for prompt in prompts[start : start + batch_size]])
        if batch_size == 1:
            del batch["position_ids"]  # one prompt: no padding, and the forward may take no position_ids
        with torch.inference_mode():
            if vector is None or alpha == 0.0:
                logits = model.module(**batch).logits[:, -1]
            else:
                with apply(model, vector, point, alpha, positions=slice(-steered, None)):
                    logits = model.module(**batch).logits[:, -1]
        logp = torch.log_softmax(logits.double(), dim=-1)
        gaps.extend((logp[:, yes] - logp[:, no]).tolist())
    return np.array(gaps)


def steering_effect(model: LoadedModel, statements: Sequence[str], truth: Sequence[bool], vector: Any, point: str,
                    alphas: Sequence[float] = (-1.0, 0.0, 1.0), shots: Sequence[tuple[str, bool]] = ()
                    ) -> SteeringEffect:
    """The truth gap of each statement (in a few-shot prompt with ``shots``) at each ``alpha``: the mean over
    the true and over the false statements, and the shift from the smallest to the largest alpha."""
    truth = np.asarray(truth, dtype=bool)
    if len(truth) != len(statements) or not len(truth):
        raise NeurometryError(f"{len(truth)} labels for {len(statements)} statements; give one label per statement")
    if truth.all() or not truth.any():
        raise NeurometryError(f"the {len(truth)} statements are all {'true' if truth.all() else 'false'}; "
                              "the causal test compares true with false statements: give both")
    alphas = sorted(float(a) for a in alphas)
    if len(set(alphas)) < 2:
        raise NeurometryError(f"alphas {alphas} hold fewer than two values; the shift needs two different alphas")
    prompts = [few_shot_prompt(s, shots) for s in statements]
    gaps = [truth_gaps(model, prompts, vector, point, alpha) for alpha in alphas]
    for alpha, gap in zip(alphas, gaps, strict=True):
        if not np.isfinite(gap).all():
            raise NeurometryError(f"alpha {alpha:g} drove the model's logits to Inf or NaN; use smaller alphas "
                                  f"(the direction's norm is {float(np.linalg.norm(np.asarray(vector))):.3g})")
    return SteeringEffect(alphas, [float(g[truth].mean()) for g in gaps], [float(g[~truth].mean()) for g in gaps],
                          float((gaps[-1] - gaps[0]).mean()), len(truth))
