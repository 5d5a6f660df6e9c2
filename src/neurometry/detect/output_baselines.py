"""What a model says about a statement from its outputs alone, the baselines next to internal truth directions:

- ``log_probability``: the statement's own log-probability (nats) after the BOS token, the sum of its word
  log-probabilities (:func:`neurometry.language.surprisal.word_surprisal`, beginning-of-word corrected): true
  statements tend to be more probable.
- ``few_shot``: the log-odds log P(" True") - log P(" False") after "<statement> This statement is:" in a
  few-shot prompt (:func:`neurometry.detect.truth_steering.truth_gaps`), and its contextually calibrated form
  (Zhao et al. 2021, "Calibrate Before Use"): less the same log-odds for the content-free statement "N/A", so
  that 0 is the model's indifference point. Calibration moves the threshold, not the ranking: it changes the
  accuracy, never the AUROC.

Each is scored like the probes: AUROC of true against false statements (higher = more likely true), and the
accuracy of the sign of the (calibrated) log-odds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from neurometry.detect.evaluation import auroc
from neurometry.detect.truth_steering import few_shot_prompt, truth_gaps
from neurometry.errors import NeurometryError
from neurometry.language.surprisal import word_surprisal
from neurometry.language.words import words_table
from neurometry.models import LoadedModel

CONTENT_FREE = "N/A"


def statement_log_probabilities(model: LoadedModel, statements: Sequence[str]) -> np.ndarray:
    """(n,) each statement's log-probability in nats (read alone after BOS; the first word included only when the
    model has a BOS token)."""
    rows = [{"item": i, "zone": z, "word": w} for i, text in enumerate(statements)
            for z, w in enumerate(text.split(), start=1)]
    if not rows:
        raise NeurometryError("no statements to score; give at least one non-empty statement")
    scores = word_surprisal(model, words_table(pd.DataFrame(rows)), progress=False).words
    return -(scores.groupby("item", sort=True)["surprisal"].sum(min_count=1).to_numpy() * math.log(2.0))


def output_baselines(model: LoadedModel, statements: Sequence[str], truth: Sequence[bool],
                     shots: Sequence[tuple[str, bool]] = ()) -> dict[str, Any]:
    """AUROC (true against false) of each output baseline, and the accuracy of the few-shot answer before and
    after contextual calibration, on ``statements`` with labels ``truth``; ``shots`` are the prompt's solved
    examples. Returns ``{"log_probability": {"auroc"}, "few_shot": {"auroc", "accuracy", "calibrated_accuracy",
    "content_free_gap"}, "n"}``."""
    truth = np.asarray(truth, dtype=bool)
    if len(truth) != len(statements) or truth.all() or not truth.any():
        raise NeurometryError("give one label per statement, with true and false statements both present")
    log_probability = statement_log_probabilities(model, statements)
    gaps = truth_gaps(model, [few_shot_prompt(s, shots) for s in statements])
    content_free = float(truth_gaps(model, [few_shot_prompt(CONTENT_FREE, shots)])[0])
    return {
        "log_probability": {"auroc": auroc(log_probability[~truth], log_probability[truth])},
        "few_shot": {"auroc": auroc(gaps[~truth], gaps[truth]), "accuracy": float(((gaps > 0) == truth).mean()),
                     "calibrated_accuracy": float(((gaps - content_free > 0) == truth).mean()),
                     "content_free_gap": content_free},
        "n": int(len(truth)),
    }
