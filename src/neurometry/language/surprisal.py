"""Word surprisal and next-word entropy from a causal language model, at its output and through the logit
lens at inner layers, with the word-level hidden states of the same pass.

A word's surprisal is -log2 p(word | the text before it). Its subword tokens' log-probabilities are summed.
For tokenizers that attach the space to the *next* word's first token (GPT-2/Llama byte-level BPE: "Ġyou";
SentencePiece: "▁you"), that sum is not the word's probability: the tokens of " you" say where the word
starts but not that it has ended ("you" could continue as "young"), and the previous word's tokens never
said the word after them would start. The beginning-of-word correction of Pimentel & Meister (2024, "How to
Compute the Probability of a Word") and Oh & Schuler (2024, "Leading Whitespaces of Language Models' Subword
Vocabulary Pose a Confound for Calculating Word Probabilities") fixes both:

    log p(w | c) = sum_i log p(t_i | c, t_<i) + log P_B(c, w) - log P_B(c),

where P_B(x) is the probability that the token after x begins a new word: the total probability of the
tokens that start with the tokenizer's space symbol, plus the end-of-text token. The first word of a text
(no space before it) has no P_B(c) term. ``correction="bow"`` applies it, ``"none"`` gives the plain sum
(right for tokenizers that mark word ends instead), ``"auto"`` picks ``"bow"`` exactly when the tokenizer puts
the space on the next word.

Each text is read with its own preceding context only, after the tokenizer's BOS token where it has one (else
the first word's surprisal is missing: NaN, counted in the settings). A text longer than ``window`` tokens is
read in windows of ``window`` tokens that overlap by ``overlap`` (default half a window): every token is
scored in the first window that reaches it after the overlap, so it sees at least ``overlap`` tokens of
context; windows after the first start mid-text, without a BOS token.

``entropy`` is the entropy (bits) of the next-token distribution just before the word's first token: the
model's uncertainty about what comes next, read at the word's onset (the first-token approximation of
next-word entropy; the word-level entropy sums over every word the model could produce, which is
intractable).

Inner layers (Kuribayashi et al. 2025, "Large Language Models Are Human-Like Internally"): a residual point's
states go through the model's final norm and unembedding (the logit lens, nostalgebraist 2020), and the same
word surprisal and entropy are read from those distributions.

Word-level hidden states: each word's state at a point is the state at its last token (``word_state="last"``,
which has read the whole word) or the mean over its tokens (``"mean"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.language.words import POSITION, TEXT, build_texts, token_words
from neurometry.models import LoadedModel
from neurometry.models.hooks import capture, require_causal, unembedding
from neurometry.models.points import HookPoint
from neurometry.record.batching import pack

CORRECTIONS = ("auto", "bow", "none")
WORD_STATES = ("last", "mean")
DEFAULT_WINDOW = 2048  # tokens per forward at most (or the model's context, if shorter)
LOGIT_CHUNK = 256  # positions whose vocabulary-wide probabilities are held in float64 at once (~100 MB at 49k)
LOG2 = math.log(2.0)


@dataclass
class WordScores:
    """Per-word results of :func:`word_surprisal`.

    ``words``: the words table (``item``, ``zone``, ``word`` and the input's other columns) plus ``surprisal``
    and ``entropy`` (bits), ``tokens`` (subword tokens of the word) and, per lens point P, ``surprisal_P``
    and ``entropy_P``. ``states``: point -> (words, d) float32 hidden states. ``settings``: how they were
    computed (``correction``, ``bos``, ``window``, ``overlap``, ``word_state``, ``missing_first_words``)."""

    words: pd.DataFrame
    states: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def space_symbol(tokenizer: Any) -> str | None:
    """The character the tokenizer writes for a leading space in its token strings ("Ġ" for byte-level BPE,
    "▁" for SentencePiece), or None when a space is not written as part of a word's token."""
    ids = tokenizer(" ", add_special_tokens=False)["input_ids"]
    if not ids:
        return None
    symbol = tokenizer.convert_ids_to_tokens(ids[0])[:1]
    special = {tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token}
    return symbol if symbol and symbol not in special and tokenizer.convert_ids_to_tokens(ids[0]) not in special else None


def attaches_space_to_next_word(tokenizer: Any) -> bool:
    """Whether the tokenizer puts the space between two words on the second word's first token (so the
    beginning-of-word correction applies): the tokens of "a b" are ["a", "<space>b"]."""
    symbol = space_symbol(tokenizer)
    if symbol is None:
        return False
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a b", add_special_tokens=False)["input_ids"])
    return len(tokens) >= 2 and tokens[-1].startswith(symbol) and not tokens[0].endswith(symbol)


def word_start_tokens(tokenizer: Any, vocabulary_size: int) -> torch.Tensor:
    """(vocabulary_size,) bool: the tokens that begin a new word: those whose string starts with the space
    symbol, and the end-of-text token (a text's last word ends there too)."""
    symbol = space_symbol(tokenizer)
    starts = torch.zeros(vocabulary_size, dtype=torch.bool)
    for token, index in tokenizer.get_vocab().items():
        if index < vocabulary_size and symbol is not None and token.startswith(symbol):
            starts[index] = True
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id < vocabulary_size:
        starts[tokenizer.eos_token_id] = True
    return starts


@dataclass(frozen=True)
class _Window:
    """Tokens ``[start, stop)`` of text ``text`` (its full sequence, BOS included) in one forward; the
    distributions after positions ``[scored_from, stop)`` are taken from this window."""

    text: int
    start: int
    stop: int
    scored_from: int


def _windows(lengths: Sequence[int], window: int, overlap: int) -> list[_Window]:
    windows = []
    for text, length in enumerate(lengths):
        start, stop, scored = 0, min(length, window), 0
        windows.append(_Window(text, start, stop, scored))
        while stop < length:
            scored, start = stop, stop - overlap
            stop = min(start + window, length)
            windows.append(_Window(text, start, stop, scored))
    return windows


def next_token_statistics(
    logits: torch.Tensor, next_ids: torch.Tensor, word_starts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For logits (positions, vocabulary) of the next token: the log-probability of ``next_ids`` (positions,)
    (an id of -1 gives 0: no next token), the log of the total probability of the ``word_starts`` tokens, and
    the entropy; each (positions,) float64 in nats.

    The logits less their maximum are exponentiated in the model's precision (float32: each term to a relative
    1e-7, the subtraction to ~1e-6 nats), then every sum over the vocabulary runs in float64: float32 sums over
    49,152 terms moved word surprisal by up to 1e-3 bits."""
    logits = logits.float()
    shifted = logits - logits.max(dim=1, keepdim=True).values
    scaled = torch.exp(shifted).double()
    total = scaled.sum(dim=1)
    log_total = torch.log(total)
    starts = scaled @ word_starts.to(scaled.dtype) if bool(word_starts.any()) else torch.zeros_like(total)
    log_starts = torch.log(starts) - log_total
    entropy = log_total - (scaled * shifted.double()).sum(dim=1) / total
    picked = shifted.gather(1, next_ids.clamp(min=0)[:, None])[:, 0].double() - log_total
    return torch.where(next_ids >= 0, picked, torch.zeros_like(picked)), log_starts, entropy


class _Readout:
    """Applies the unembedding (after the final norm, for a lens point) to captured states, chunk by chunk."""

    def __init__(self, model: LoadedModel):
        self.norm, self.head = unembedding(model)
        head_path = next((path for path, module in model.module.named_modules() if module is self.head), None)
        if head_path is None:
            raise NeurometryError(f"{model.name}'s unembedding is not one of its modules; it cannot be read")
        self.final = HookPoint("unembedding_input", head_path, "tokens", capture="input")

    def logits(self, states: torch.Tensor, lens: bool) -> torch.Tensor:
        if lens and self.norm is not None:
            states = self.norm(states[None])[0]  # the norm sees (batch, tokens, d) as in the model
        return self.head(states)


def word_surprisal(
    model: LoadedModel,
    words: pd.DataFrame,
    *,
    points: Sequence[str] = (),
    lens: Sequence[str] = (),
    correction: str = "auto",
    window: int | None = None,
    overlap: int | None = None,
    word_state: str = "last",
    max_batch_tokens: int = 4096,
    progress: bool = True,
) -> WordScores:
    """Surprisal and entropy of every word of ``words`` (a :func:`neurometry.language.words.read_words` table:
    ``item``, ``zone``, ``word``), at the output and at each ``lens`` point, and the word-level states of
    ``points`` (names or globs of ``model``'s points, e.g. ``resid.*``). See the module docstring for the
    definitions; ``window`` tokens per forward (default the model's context, at most 2,048), ``overlap``
    tokens of context kept between windows (default half a window). Returns :class:`WordScores`."""
    require_causal(model)
    tokenizer = model.tokenizer
    if correction not in CORRECTIONS:
        raise NeurometryError(f"correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    if word_state not in WORD_STATES:
        raise NeurometryError(f"word_state must be one of {', '.join(WORD_STATES)}, not {word_state!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise NeurometryError(f"{model.name}'s tokenizer gives no character offsets (not a fast tokenizer); "
                              "words cannot be lined up with its tokens")
    applied = ("bow" if attaches_space_to_next_word(tokenizer) else "none") if correction == "auto" else correction
    context = int(getattr(getattr(model.module, "config", None), "max_position_embeddings", 0) or DEFAULT_WINDOW)
    window = int(window) if window is not None else min(context, DEFAULT_WINDOW)
    overlap = int(overlap) if overlap is not None else window // 2
    if window < 2 or not 0 < overlap < window:
        raise NeurometryError(f"window {window} and overlap {overlap}: give a window of at least 2 tokens and "
                              "an overlap of at least 1 and below the window")
    if window > context:
        raise NeurometryError(f"window {window} is longer than {model.name}'s context of {context} tokens")

    readout = _Readout(model)
    state_points = model.resolve(list(points)) if points else []
    lens_points = model.resolve(list(lens)) if lens else []
    for point in lens_points:
        if point.kind != "tokens":
            raise NeurometryError(f"lens point {point.name!r} is not a residual stream point; use resid.* or embed")
    captured_points = list({p.name: p for p in [readout.final, *state_points, *lens_points]}.values())

    words = words.sort_values([TEXT, POSITION], kind="stable").reset_index(drop=True)
    texts = build_texts(words)
    bos = tokenizer.bos_token_id
    sequences, owners = [], []
    for text in texts:
        encoded = tokenizer(text.string, add_special_tokens=False, return_offsets_mapping=True)
        owner = token_words(text, np.asarray(encoded["offset_mapping"]))
        if len(np.unique(owner)) != len(text):
            missing = sorted(set(range(len(text))) - set(owner.tolist()))[0]
            raise NeurometryError(f"word {text.words[missing]!r} of text {text.text_id!r} has no token of its own")
        ids = list(encoded["input_ids"])
        sequences.append(np.asarray(([bos] if bos is not None else []) + ids, dtype=np.int64))
        owners.append(owner)
    prefix = 1 if bos is not None else 0

    vocabulary = readout.head.weight.shape[0]
    word_starts = word_start_tokens(tokenizer, vocabulary).to(model.device)
    if applied == "bow" and space_symbol(tokenizer) is None:
        raise NeurometryError(f"{model.name}'s tokenizer writes no space into its tokens, so it has no beginning-of-word "
                              "tokens to correct with; use correction 'none' (or 'auto')")
    sources = [("", False)] + [(p.name, True) for p in lens_points]  # "" = the model's own output
    # per text and source: log p(next), log P(word start next) and entropy after every position
    statistics = [{name: np.zeros((3, len(seq))) for name, _ in sources} for seq in sequences]
    n_words = [len(text) for text in texts]
    states = {p.name: [np.zeros((n, 0), dtype=np.float32) for n in n_words] for p in state_points}

    windows = _windows([len(s) for s in sequences], window, overlap)
    batches = pack(np.array([w.stop - w.start for w in windows]), max_batch_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=sum(len(s) for s in sequences), desc=f"surprisal {model.name}", unit="tok",
               disable=not progress)
    for batch in batches:
        chosen = [windows[i] for i in batch]
        width = max(w.stop - w.start for w in chosen)
        input_ids = torch.full((len(chosen), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, w in enumerate(chosen):
            input_ids[row, : w.stop - w.start] = torch.from_numpy(sequences[w.text][w.start : w.stop])
            mask[row, : w.stop - w.start] = 1
        _, got = capture(model, {"input_ids": input_ids.to(model.device), "attention_mask": mask.to(model.device)},
                         captured_points, stop_early=True)
        with torch.no_grad():
            for row, w in enumerate(chosen):
                local = slice(w.scored_from - w.start, w.stop - w.start)
                sequence = sequences[w.text]
                following = np.full(w.stop - w.scored_from, -1, dtype=np.int64)
                ahead = sequence[w.scored_from + 1 : w.stop + 1]
                following[: len(ahead)] = ahead
                following = torch.from_numpy(following).to(model.device)
                for name, through_lens in sources:
                    hidden = got[readout.final.name if not through_lens else name][row, local]
                    rows = []
                    for chunk in range(0, hidden.shape[0], LOGIT_CHUNK):
                        logits = readout.logits(hidden[chunk : chunk + LOGIT_CHUNK], through_lens)
                        rows.append(torch.stack(next_token_statistics(
                            logits, following[chunk : chunk + LOGIT_CHUNK], word_starts)))
                    values = torch.cat(rows, dim=1).cpu().numpy()
                    if not np.isfinite(values[[0, 2]]).all():  # row 1 is -inf for a tokenizer without word starts
                        raise NeurometryError(f"{model.name} gave NaN or Inf logits on text {texts[w.text].text_id!r}; "
                                              "run it in float32")
                    statistics[w.text][name][:, w.scored_from : w.stop] = values
                for point in state_points:
                    _gather_states(states[point.name], w, got[point.name][row], owners[w.text], prefix, word_state)
        bar.update(sum(w.stop - w.scored_from for w in chosen))
    bar.close()

    frame = words.copy()
    missing_first = 0
    for name, _ in sources:
        column = [], []
        for text_index, text in enumerate(texts):
            surprisal, entropy = _word_values(statistics[text_index][name], owners[text_index], len(text), prefix,
                                              applied == "bow")
            column[0].append(surprisal)
            column[1].append(entropy)
        suffix = f"_{name}" if name else ""
        frame[f"surprisal{suffix}"] = np.concatenate(column[0])
        frame[f"entropy{suffix}"] = np.concatenate(column[1])
        if not name:
            missing_first = int(np.isnan(frame["surprisal"]).sum())
    frame["tokens"] = np.concatenate([np.bincount(owner, minlength=len(text)) for owner, text in zip(owners, texts, strict=True)])
    settings = {
        "correction": applied, "bos": tokenizer.bos_token if bos is not None else None, "window": window,
        "overlap": overlap, "word_state": word_state, "missing_first_words": missing_first,
        "entropy": "next-token entropy before the word's first token", "lens": [p.name for p in lens_points],
        "points": [p.name for p in state_points],
    }
    stacked = {name: np.concatenate(parts, axis=0) for name, parts in states.items()}
    return WordScores(frame, stacked, settings)


def _word_values(statistics: np.ndarray, owner: np.ndarray, n_words: int, prefix: int, correct: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Word surprisal and entropy (bits) of one text from its per-position statistics (3, sequence): row 0
    log p(next token), row 1 log P(next token starts a word), row 2 entropy, after each position."""
    log_next, log_starts, entropy = statistics
    positions = np.arange(len(owner)) + prefix  # each token's index in the sequence
    first = np.searchsorted(owner, np.arange(n_words), side="left")
    last = np.searchsorted(owner, np.arange(n_words), side="right") - 1
    predicted = positions - 1  # the token at sequence index i is predicted after index i - 1
    token_log = np.where(predicted >= 0, log_next[np.maximum(predicted, 0)], np.nan)
    word_log = np.add.reduceat(token_log, first) if len(token_log) else np.zeros(0)
    if correct:
        word_log = word_log + log_starts[last + prefix]
        before = first + prefix - 1  # the position before each word: the previous word's last token
        word_log[1:] = word_log[1:] - log_starts[before[1:]]
    onset = first + prefix - 1
    word_entropy = np.where(onset >= 0, entropy[np.maximum(onset, 0)], np.nan)
    return -word_log / LOG2, word_entropy / LOG2


def _gather_states(target: list[np.ndarray], window: _Window, hidden: torch.Tensor, owner: np.ndarray, prefix: int,
                   word_state: str) -> None:
    """Put the states of the positions this window scores into their words' rows (``target[window.text]``)."""
    rows = target[window.text]
    if rows.shape[1] == 0:
        rows = np.zeros((rows.shape[0], hidden.shape[-1]), dtype=np.float32)
        target[window.text] = rows
    token_index = np.arange(window.scored_from, window.stop) - prefix
    keep = token_index >= 0
    token_index = token_index[keep]
    values = hidden[window.scored_from - window.start : window.stop - window.start][torch.from_numpy(keep)]
    values = values.float().cpu().numpy()
    word = owner[token_index]
    if word_state == "last":
        is_last = np.r_[owner[1:] != owner[:-1], True][token_index]
        rows[word[is_last]] = values[is_last]
    else:
        counts = np.bincount(owner, minlength=rows.shape[0]).astype(np.float32)
        np.add.at(rows, word, values / counts[word][:, None])

