"""Induction heads: a two-layer attention-only transformer learns in-context copying in one abrupt step.

Olsson et al. (2022), "In-context Learning and Induction Heads" (Transformer Circuits Thread): small
attention-only transformers show a phase change early in training in which the in-context learning
score (loss late in the context minus loss early) falls abruptly while induction heads form: a head
in layer 2 that attends from a token to the token right after its previous occurrence (prefix
matching), fed by a layer-1 head that attends to the previous token. One-layer models, which cannot
compose heads, show no such change.

Here the text is uniform random tokens in which a random segment occurs twice, at random places, so
the only way to predict the second copy well is to find the first one in context (induction); the
random gaps make the distance between the copies vary, so attending by position alone cannot copy it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional

from neurometry.lab.base import CheckpointCallback, Lab, LabPhases, ProbeData
from neurometry.training import find_phases


@dataclass(frozen=True)
class InductionSize:
    """One size of the entry: the text, the model and the training run."""

    vocab: int  # tokens are uniform random draws from this many
    length: int  # the context: positions the model reads (training sequences have one token more)
    segment_range: tuple[int, int]  # the repeated segment's length, drawn uniformly from [low, high]
    d_model: int
    heads: int
    steps: int
    batch: int
    learning_rate: float
    train_sequences: int  # the fixed training set batches are drawn from
    eval_sequences: int  # sequences behind each checkpoint's train/test loss and icl score
    probe_sequences: int  # "segment repeated twice" sequences: probe data, prefix-matching score
    checkpoints: int


SIZE_SETTINGS = {
    "default": InductionSize(
        vocab=64, length=32, segment_range=(10, 15), d_model=64, heads=4, steps=2400, batch=64,
        learning_rate=1e-3, train_sequences=32768, eval_sequences=512, probe_sequences=256, checkpoints=49,
    ),
    "test": InductionSize(
        vocab=64, length=24, segment_range=(7, 11), d_model=32, heads=4, steps=1200, batch=64,
        learning_rate=5e-3, train_sequences=16384, eval_sequences=384, probe_sequences=192, checkpoints=41,
    ),
}


@dataclass(frozen=True)
class RepeatedSegments:
    """Sequences ``tokens`` (n, length) of random tokens in which a segment of ``segment_length`` (n,)
    tokens starting at ``first_start`` (n,) is copied again at ``second_start`` (n,)."""

    tokens: torch.Tensor
    first_start: np.ndarray
    second_start: np.ndarray
    segment_length: np.ndarray


def repeated_segments(
    count: int, length: int, vocab: int, segment_range: tuple[int, int], rng: np.random.Generator,
    adjacent: bool = False,
) -> RepeatedSegments:
    """``count`` sequences of ``length`` uniform random tokens from ``vocab``, each with one segment (of a
    length drawn from ``segment_range``) occurring twice. The free tokens are split at random into a gap
    before, between and after the two copies; ``adjacent=True`` puts the copies back to back at the end
    (the "random tokens repeated twice" of Olsson et al.'s prefix-matching score)."""
    low, high = segment_range
    if 2 * high > length:
        raise ValueError(f"two segments of {high} tokens do not fit in {length}")
    tokens = rng.integers(0, vocab, size=(count, length))
    segment_length = rng.integers(low, high + 1, size=count)
    free = length - 2 * segment_length
    if adjacent:
        first_start = free
        second_start = free + segment_length
    else:
        # two uniform cut points in [0, free] split the free tokens into three gaps
        cuts = np.sort(rng.random((count, 2)), axis=1) * (free + 1)[:, None]
        cuts = np.floor(cuts).astype(np.int64)
        first_start = cuts[:, 0]
        second_start = first_start + segment_length + (cuts[:, 1] - cuts[:, 0])
    for row in range(count):
        first, second, size = first_start[row], second_start[row], segment_length[row]
        tokens[row, second:second + size] = tokens[row, first:first + size]
    return RepeatedSegments(torch.as_tensor(tokens, dtype=torch.long), first_start, second_start, segment_length)


class Attention(nn.Module):
    """Causal multi-head self-attention on (batch, positions, d_model). ``forward(residual, keep_pattern)``
    returns the output and, when asked, the attention pattern (batch, heads, queries, keys)."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.query_key_value = nn.Linear(d_model, 3 * d_model)
        self.output = nn.Linear(d_model, d_model)

    def forward(self, residual: torch.Tensor, keep_pattern: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, positions, d_model = residual.shape
        query, key, value = self.query_key_value(residual).split(d_model, dim=-1)
        query, key, value = (
            t.view(batch, positions, self.heads, self.head_dim).transpose(1, 2) for t in (query, key, value)
        )
        pattern = None
        if keep_pattern:
            scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim)
            future = torch.ones(positions, positions, dtype=torch.bool, device=residual.device).triu(1)
            pattern = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
            mixed = pattern @ value
        else:
            # the fused kernel computes the same thing about twice as fast on a CPU
            mixed = functional.scaled_dot_product_attention(query, key, value, is_causal=True)
        return self.output(mixed.transpose(1, 2).reshape(batch, positions, d_model)), pattern


class AttentionBlock(nn.Module):
    """One attention-only layer: ``residual + attention(residual)``, no MLP and no layer norm (Elhage et
    al. 2021's attention-only models); its output is the residual stream after the layer."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.attention = Attention(d_model, heads)
        self.keep_pattern = False  # set by attention_patterns: keep the pattern of the next forward
        self.pattern: torch.Tensor | None = None

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        update, self.pattern = self.attention(residual, self.keep_pattern)
        return residual + update


class AttentionOnlyTransformer(nn.Module):
    """Token + learned position embedding, ``layers`` attention-only blocks, unembedding.

    ``forward(tokens)``: tokens (batch, positions) -> next-token logits (batch, positions, vocab).
    ``attention_patterns(tokens)``: one (batch, heads, positions, positions) pattern per layer.
    """

    def __init__(self, vocab: int, length: int, d_model: int, heads: int, layers: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d_model)
        self.position_embedding = nn.Embedding(length, d_model)
        self.embed = nn.Identity()  # a named point: the residual stream before the first layer
        self.blocks = nn.ModuleList(AttentionBlock(d_model, heads) for _ in range(layers))
        self.unembed = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        residual = self.embed(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            residual = block(residual)
        return self.unembed(residual)

    def attention_patterns(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        for block in self.blocks:
            block.keep_pattern = True
        try:
            self(tokens)
            return [block.pattern for block in self.blocks]
        finally:
            for block in self.blocks:
                block.keep_pattern = False
                block.pattern = None


def prefix_matching_scores(pattern: torch.Tensor, data: RepeatedSegments) -> torch.Tensor:
    """Per head (heads,): the mean attention from each token of the second copy to the token right after
    the same token's first occurrence (Olsson et al.'s prefix-matching score). ``pattern``: (batch, heads,
    positions, positions) on ``data`` built with ``adjacent=True``."""
    totals = torch.zeros(pattern.shape[1])
    count = 0
    for row in range(pattern.shape[0]):
        size, first, second = int(data.segment_length[row]), int(data.first_start[row]), int(data.second_start[row])
        queries = torch.arange(second, second + size)
        keys = queries - second + first + 1
        totals += pattern[row, :, queries, keys].sum(dim=-1)
        count += size
    return totals / count


def previous_token_scores(pattern: torch.Tensor) -> torch.Tensor:
    """Per head (heads,): the mean attention from each position (but the first) to the one before it.
    ``pattern``: (batch, heads, positions, positions)."""
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))


def token_losses(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (batch, positions - 1): entry ``[b, p]`` is the loss of predicting token
    ``p + 1`` from the tokens up to ``p``."""
    logits = model(tokens[:, :-1])
    return functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")


def icl_score(losses: torch.Tensor, data: RepeatedSegments) -> float:
    """The mean loss on the tokens of the second copy (from its second token on, the ones induction can
    predict) minus the mean loss on the same tokens in the first copy. Negative: the model predicts a
    token better once it has seen the segment before in context. ``losses``: (batch, positions - 1)
    from :func:`token_losses`."""
    second, first = [], []
    for row in range(losses.shape[0]):
        size = int(data.segment_length[row])
        # the target at position t is predicted by losses[:, t - 1]
        second.append(losses[row, data.second_start[row]:data.second_start[row] + size - 1])
        first.append(losses[row, data.first_start[row]:data.first_start[row] + size - 1])
    return float(torch.cat(second).mean() - torch.cat(first).mean())


class InductionLab(Lab):
    """Olsson et al. (2022): the abrupt formation of induction heads in a two-layer attention-only
    transformer trained on random tokens with a repeated segment; ``layers=1`` is the control."""

    name: ClassVar[str] = "induction"
    title: ClassVar[str] = (
        "Induction heads: a 2-layer attention-only transformer on repeated random segments "
        "(Olsson et al. 2022, In-context Learning and Induction Heads)"
    )
    phase_curve: ClassVar[str] = "icl_score"
    phase_transform: ClassVar[str] = "none"  # the score is a loss difference, negative once it works
    reduce: ClassVar[str] = "last"
    options: ClassVar[dict[str, Any]] = {"layers": 2}

    def __init__(self, size: str = "default", steps: int | None = None, seed: int = 0, **options: Any):
        super().__init__(size=size, steps=steps, seed=seed, **options)
        self.config = SIZE_SETTINGS[size]
        self.layers = int(self.settings["layers"])
        self.total_steps = steps if steps is not None else self.config.steps
        config = self.config
        # separate streams so the data do not change when the model or the batch order does
        data_rng = np.random.default_rng([self.seed, 1])
        # one token more than the context: its first `length` tokens are the input, each predicting the
        # next, so every position the probe uses is trained
        self.train_data = repeated_segments(
            config.train_sequences, config.length + 1, config.vocab, config.segment_range, data_rng
        )
        self.test_data = repeated_segments(
            config.eval_sequences, config.length + 1, config.vocab, config.segment_range, data_rng
        )
        self.probe = repeated_segments(
            config.probe_sequences, config.length, config.vocab, config.segment_range, data_rng, adjacent=True
        )

    def build(self) -> nn.Module:
        config = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return AttentionOnlyTransformer(config.vocab, config.length, config.d_model, config.heads, self.layers)

    def points(self) -> dict[str, str]:
        return {"embed": "embed", **{f"resid.{layer}": f"blocks.{layer}" for layer in range(self.layers)}}

    def probe_data(self) -> ProbeData:
        metadata = pd.DataFrame({
            "sequence": np.arange(len(self.probe.tokens)),
            "segment_length": self.probe.segment_length,
            "first_start": self.probe.first_start,
        })
        return ProbeData(self.probe.tokens.clone(), metadata)

    def checkpoint_steps(self) -> list[int]:
        """About ``checkpoints`` evenly spaced steps from 0 to the final step (each once)."""
        return sorted({round(i * self.total_steps / (self.config.checkpoints - 1))
                       for i in range(self.config.checkpoints)})

    @torch.no_grad()
    def metrics(self, model: AttentionOnlyTransformer) -> dict[str, float]:
        """Train and test loss (mean next-token loss on ``eval_sequences`` training and held-out sequences),
        the icl score (held-out sequences, :func:`icl_score`), the best prefix-matching score among the last
        layer's heads (layer 2; layer 1 in the one-layer control) and the best previous-token score among
        the first layer's heads (both on the probe sequences)."""
        was_training = model.training
        model.eval()
        eval_rows = len(self.test_data.tokens)
        train_loss = token_losses(model, self.train_data.tokens[:eval_rows]).mean()
        test_losses = token_losses(model, self.test_data.tokens)
        patterns = model.attention_patterns(self.probe.tokens)
        model.train(was_training)
        return {
            "train_loss": float(train_loss),
            "test_loss": float(test_losses.mean()),
            "icl_score": icl_score(test_losses, self.test_data),
            "prefix_matching_max": float(prefix_matching_scores(patterns[-1], self.probe).max()),
            "previous_token_max": float(previous_token_scores(patterns[0]).max()),
        }

    def train(self, model: nn.Module, checkpoint: CheckpointCallback) -> None:
        config = self.config
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
        batch_rng = np.random.default_rng([self.seed, 2])
        stops = set(self.checkpoint_steps())
        model.train()
        for step in range(self.total_steps + 1):
            if step in stops:
                checkpoint(step, self.metrics(model))
            if step == self.total_steps:
                break
            rows = torch.as_tensor(batch_rng.integers(0, len(self.train_data.tokens), size=config.batch))
            loss = token_losses(model, self.train_data.tokens[rows]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def phases(self, results: list[dict[str, float]]) -> LabPhases | None:
        """Slow, fast and slow again: binary segmentation of the icl score's rate of change (see
        :func:`phase_window`); None with under 7 checkpoints."""
        if len(results) < MIN_CHECKPOINTS_FOR_WINDOW:
            return None
        steps = np.array([r["step"] for r in results], dtype=float)
        rate = icl_rate(steps, np.array([r["icl_score"] for r in results]))
        found = find_phases(steps[1:], rate, method="binseg", n_changes=2, min_size=2)
        return LabPhases("icl_score_rate", found, steps[1:].tolist(), rate.tolist())

    def findings(self, model: nn.Module, results: list[dict[str, float]]) -> dict[str, Any]:
        """The window of the icl score's abrupt fall (:func:`phase_window`; None with under 7 checkpoints),
        the fall inside it and in all, and the induction-head scores at its edges and at the end."""
        steps = np.array([r["step"] for r in results], dtype=float)
        curve = np.array([r["icl_score"] for r in results])
        final = results[-1]  # the last checkpoint is the trained model
        found = {
            "phase_start_step": None,
            "phase_end_step": None,
            "phase_window_fraction": None,
            "icl_score_start": float(curve[0]),
            "icl_score_final": float(final["icl_score"]),
            "icl_drop": float(curve[0] - curve[-1]),
            "icl_drop_in_window": None,
            "prefix_matching_max": float(final["prefix_matching_max"]),
            "previous_token_max": float(final["previous_token_max"]),
            "layers": self.layers,
        }
        if len(results) < MIN_CHECKPOINTS_FOR_WINDOW:
            return found
        start, end = phase_window(steps, curve)
        at = {r["step"]: r for r in results}
        return {
            **found,
            "phase_start_step": int(start),
            "phase_end_step": int(end),
            "phase_window_fraction": float((end - start) / (steps[-1] - steps[0])),
            "icl_drop_in_window": float(at[start]["icl_score"] - at[end]["icl_score"]),
            "prefix_matching_before": float(at[start]["prefix_matching_max"]),
            "prefix_matching_after": float(at[end]["prefix_matching_max"]),
            "previous_token_before": float(at[start]["previous_token_max"]),
            "previous_token_after": float(at[end]["previous_token_max"]),
        }


# binary segmentation of the 6+ differences between them into three phases of at least two
MIN_CHECKPOINTS_FOR_WINDOW = 7


def icl_rate(steps: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """The icl score's change per step between consecutive checkpoints; value i (the fall from checkpoint i
    to i + 1) belongs at checkpoint i + 1's step."""
    return np.diff(curve) / np.diff(steps)


def phase_window(steps: np.ndarray, curve: np.ndarray) -> tuple[float, float]:
    """The window ``(start_step, end_step)`` in which the icl score falls fast.

    Binary segmentation (``find_phases``, ``binseg``, 2 change points) of the score's rate of change, its
    difference between consecutive checkpoints per step, into slow, fast and slow again; the window runs
    from the checkpoint before the fast phase's first difference to the checkpoint ending its last.
    Segmenting the score itself instead puts the change points near a quarter and three quarters of the
    way down the fall (a change in mean splits a ramp at its thirds of height), so the window would hold
    only about half of the fall."""
    phases = find_phases(steps[1:], icl_rate(steps, curve), method="binseg", n_changes=2, min_size=2).phases
    fast = min(phases, key=lambda phase: phase.mean)
    first = int(np.searchsorted(steps, fast.start_step))
    return float(steps[first - 1]), float(fast.end_step)
