"""A hallucination set from a model's own answers: does its inside tell when what it says is wrong?

Truth sets (Marks & Tegmark 2023) pair each fact with a false statement someone else wrote. Hallucination
detection asks about the model's own claims: the model completes "The city of X is in" (after two solved
examples), greedily, and its claim "The city of X is in <answer>." is labelled by whether <answer> is the city's
country. The statements it gets right and the ones it makes up are then read by the same detectors as truth
(held-out probes per layer, the layer-wise semantic dynamics detector, the output baselines), as the
semantic-dynamics paper ("The Geometry of Truth: Layer-wise Semantic Dynamics for Hallucination Detection")
does with factual and hallucinated answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from neurometry.errors import NeurometryError
from neurometry.models import LoadedModel
from neurometry.models.hooks import left_padded, pad_token_id, require_causal

SHOTS = (("Paris", "France"), ("Lima", "Peru"))
"""Solved examples before each question, so that the answer comes as a country and a full stop."""

STOP = re.compile(r"[.\n]")


def city_prompt(city: str) -> str:
    """The question about ``city`` after the solved examples: its continuation is the model's answer."""
    solved = "".join(f"The city of {c} is in {country}.\n" for c, country in SHOTS)
    return f"{solved}The city of {city} is in"


def same_country(answer: str, country: str) -> bool:
    """Whether ``answer`` names ``country``: case, a leading "the" and surrounding punctuation ignored."""
    def normal(text: str) -> str:
        text = text.strip().strip(".,;:!?\"'").strip().lower()
        return text[4:] if text.startswith("the ") else text
    return normal(answer) == normal(country) != ""


def greedy_answers(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int = 8,
                   batch_size: int = 32) -> list[str]:
    """Each prompt's greedy continuation up to its first full stop or newline (at most ``max_new_tokens``
    tokens), stripped. Prompts run in left-padded batches after the BOS token (where the model has one); the
    answers equal decoding each prompt alone, one full forward pass per token (tested)."""
    require_causal(model, "answers to generate")
    tokenizer = model.tokenizer
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = left_padded(model, [bos + tokenizer(p, add_special_tokens=False)["input_ids"]
                                    for p in prompts[start : start + batch_size]])
        width = batch["input_ids"].shape[1]
        with torch.inference_mode():  # generate derives the positions from the mask itself
            generated = model.module.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                              max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                              pad_token_id=pad_token_id(model))
        for row in generated[:, width:].tolist():
            text = tokenizer.decode(row, skip_special_tokens=True)
            answers.append(STOP.split(text, maxsplit=1)[0].strip())
    return answers


def city_answers(model: LoadedModel, cities: pd.DataFrame, *, limit: int | None = None,
                 batch_size: int = 32) -> pd.DataFrame:
    """The model's answer for each city of ``cities`` (columns ``city``, ``correct_country``; each city once, in
    first-seen order, the solved examples' cities left out, the first ``limit``), as statements: ``text`` ("The
    city of X is in <answer>."), ``truth`` ("true" when the answer is the country, else "false": a
    hallucination), ``group`` (the city), ``city``, ``answer``, ``correct_country``. Empty answers are dropped."""
    missing = {"city", "correct_country"} - set(cities.columns)
    if missing:
        raise NeurometryError(f"the cities table needs columns city and correct_country (missing {', '.join(sorted(missing))})")
    unique = cities.drop_duplicates("city")
    unique = unique[~unique["city"].isin([c for c, _ in SHOTS])]
    if limit is not None:
        unique = unique.iloc[:limit]
    if unique.empty:
        raise NeurometryError("no cities to ask about")
    answers = greedy_answers(model, [city_prompt(c) for c in unique["city"]], batch_size=batch_size)
    table = pd.DataFrame({"city": unique["city"].to_numpy(), "answer": answers,
                          "correct_country": unique["correct_country"].to_numpy()})
    table = table[table["answer"] != ""].reset_index(drop=True)
    correct = np.array([same_country(a, c) for a, c in zip(table["answer"], table["correct_country"], strict=True)])
    return pd.DataFrame({
        "text": [f"The city of {c} is in {a}." for c, a in zip(table["city"], table["answer"], strict=True)],
        "truth": np.where(correct, "true", "false"), "group": table["city"], "city": table["city"],
        "answer": table["answer"], "correct_country": table["correct_country"],
    })
