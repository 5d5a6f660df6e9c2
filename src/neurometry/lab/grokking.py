"""Grokking: a one-layer transformer memorises modular addition, then generalises long after.

Power et al. (2022), "Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets": on
(a + b) mod p, trained on a fraction of all pairs, test accuracy jumps to 100% long after train accuracy
did. Nanda et al. (2023), "Progress measures for grokking via mechanistic interpretability" (ICLR), with
the setup of TransformerLens' grokking demo: inputs [a, b, =] (token p is "="), 30% of the p^2 pairs for
training, a one-layer transformer without layer norm, full-batch AdamW with weight decay 1.0. The trained
model adds numbers by rotation: it embeds each number on a few key frequencies k (cos, sin of
2 pi k a / p) and reads out cos(2 pi k (a + b - c) / p). Their progress measures show the algorithm forms
well before test accuracy jumps: the *restricted loss* (the model's logits kept to the key frequencies'
components) falls and the *excluded loss* (those components removed) rises during "circuit formation",
while train loss is flat; "clean-up" then removes the memorising parts (weight norm falls) and test loss
drops.

What differs from Nanda (measured figures in docs/dynamics/grokking.md): their model (d_model 128,
d_mlp 512) at lr 1e-3 groks after ~10k full-batch steps, too slow for 2 CPU cores, so the default size
(p = 113, 30% of pairs) uses d_model 64, d_mlp 256 and lr 5e-3 for 3,500 steps, and the test size p = 53
with 45% of pairs (at 30% and 40%, p = 53 did not generalise within 1,500-2,000 steps), lr 1e-2, 1,200
steps. Test accuracy is then often above chance (0.1-0.45) right after memorisation and climbs rather
than waiting at chance for a cliff, but still reaches 99% 5.6-22x later than train accuracy. The
restricted and excluded losses follow Nanda's definitions with the key frequencies of the final
embedding (as Nanda does); they are computed in :meth:`GrokkingLab.findings` from CPU copies of the
weights that :meth:`GrokkingLab.train` keeps at each checkpoint, so they are findings (curves aligned
with ``steps``), not checkpoint metrics.
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

from neurometry.errors import NeurometryError
from neurometry.lab.base import CheckpointCallback, Lab, LabPhases, ProbeData
from neurometry.training import find_phases

KEY_FREQUENCY_COUNT = 5  # Nanda et al. found 5 key frequencies at p = 113
WARMUP_STEPS = 10  # linear learning-rate warm-up, as in the TransformerLens demo
ADAM_BETAS = (0.9, 0.98)  # the TransformerLens demo's
ACCURACY_LEVEL = 0.99  # train_99_step / test_99_step: the first checkpoint at or above it
LOSS_LEVEL = 0.1  # "has fallen": the restricted loss and the test loss are compared at this level (nats)
EXCLUDED_RISE_FACTOR = 2.0  # "has risen": the excluded loss at this multiple of its minimum
PHASE_CHANGES = 3  # memorisation | circuit formation | clean-up | after


@dataclass(frozen=True)
class GrokkingSize:
    """One size of the entry: the task, the model and the training run."""

    modulus: int  # the prime p
    train_fraction: float  # of the p^2 pairs
    d_model: int
    heads: int
    d_mlp: int
    steps: int
    learning_rate: float
    checkpoints: int  # about this many (log-spaced early, evenly spaced after)


SIZE_SETTINGS = {
    "default": GrokkingSize(
        modulus=113, train_fraction=0.3, d_model=64, heads=4, d_mlp=256, steps=3500, learning_rate=5e-3,
        checkpoints=50,
    ),
    "test": GrokkingSize(
        modulus=53, train_fraction=0.45, d_model=64, heads=4, d_mlp=256, steps=1200, learning_rate=1e-2,
        checkpoints=50,
    ),
}


class TokenAndPositionEmbedding(nn.Module):
    """``tokens`` (n, positions) -> ``W_E[tokens] + W_pos`` (n, positions, d_model)."""

    def __init__(self, vocab: int, positions: int, d_model: int):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(vocab, d_model))
        self.W_pos = nn.Parameter(torch.empty(positions, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens] + self.W_pos[: tokens.shape[1]]


class CausalAttention(nn.Module):
    """Multi-head causal self-attention without biases: (n, positions, d_model) -> the heads' summed
    output (n, positions, d_model). ``attend`` mixes given queries, keys and values."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.W_Q = nn.Parameter(torch.empty(d_model, d_model))
        self.W_K = nn.Parameter(torch.empty(d_model, d_model))
        self.W_V = nn.Parameter(torch.empty(d_model, d_model))
        self.W_O = nn.Parameter(torch.empty(d_model, d_model))

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return self.attend(residual @ self.W_Q, residual @ self.W_K, residual @ self.W_V)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``query`` (n, queries, d_model), the last ``queries`` of the positions; ``key``, ``value``
        (n, positions, d_model) -> the output at those queries (n, queries, d_model)."""
        n, positions, d_model = key.shape
        queries, d_head = query.shape[1], d_model // self.heads
        # (n, positions, heads, d_head): three positions are too few for batched matmuls to pay off,
        # so scores and mixing are broadcast products
        query = query.view(n, queries, 1, self.heads, d_head)
        key = key.view(n, 1, positions, self.heads, d_head)
        scores = (query * key).sum(dim=-1) / math.sqrt(d_head)  # (n, queries, positions, heads)
        query_positions = torch.arange(positions - queries, positions, device=key.device)
        future = torch.arange(positions, device=key.device)[None, :] > query_positions[:, None]
        pattern = scores.masked_fill(future[None, :, :, None], float("-inf")).softmax(dim=2)
        mixed = (pattern[..., None] * value.view(n, 1, positions, self.heads, d_head)).sum(dim=2)
        return mixed.reshape(n, queries, d_model) @ self.W_O


class ReluMLP(nn.Module):
    """(..., d_model) -> ``relu(x W_in + b_in) W_out + b_out`` (..., d_model)."""

    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.empty(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.empty(d_model))

    def neurons(self, residual: torch.Tensor) -> torch.Tensor:
        return functional.relu(residual @ self.W_in + self.b_in)

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return self.neurons(residual) @ self.W_out + self.b_out


class ModularAdditionTransformer(nn.Module):
    """One-layer transformer without layer norm (Nanda et al. 2023): token + position embedding, one
    causal attention block, one ReLU MLP, unembedding to the p answers.

    ``model(tokens)``: tokens (n, 3) = [a, b, =] -> logits (n, 3, p); the answer is read at the last
    position. ``embed``, ``resid_mid`` and ``resid_post`` output the residual stream (n, 3, d_model)
    after the embedding, after attention and after the MLP (the points to record).
    """

    def __init__(self, modulus: int, d_model: int, heads: int, d_mlp: int):
        super().__init__()
        self.embed = TokenAndPositionEmbedding(modulus + 1, 3, d_model)
        self.attention = CausalAttention(d_model, heads)
        self.resid_mid = nn.Identity()
        self.mlp = ReluMLP(d_model, d_mlp)
        self.resid_post = nn.Identity()
        self.W_U = nn.Parameter(torch.empty(d_model, modulus))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        residual = self.embed(tokens)
        residual = self.resid_mid(residual + self.attention(residual))
        residual = self.resid_post(residual + self.mlp(residual))
        return residual @ self.W_U

    def last_position(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLP's neuron activations (n, d_mlp) and the logits (n, p) at the last position only: the
        same numbers as ``forward(tokens)[:, -1]`` at about half the cost (training reads only the last
        position; in a one-layer model the other positions' MLP outputs reach no logit there)."""
        positions = tokens.shape[1]
        # an embedded token depends only on (token, position): project the (vocab x positions) table of
        # embeddings once and look the inputs' rows up, instead of projecting every input
        table = (self.embed.W_E[:, None] + self.embed.W_pos[None, :positions]).flatten(0, 1)
        rows = tokens * positions + torch.arange(positions, device=tokens.device)  # (n, positions)
        last = rows[:, -1:]
        mixed = self.attention.attend(
            functional.embedding(last, table @ self.attention.W_Q),
            functional.embedding(rows, table @ self.attention.W_K),
            functional.embedding(rows, table @ self.attention.W_V),
        )
        middle = (functional.embedding(last, table) + mixed)[:, 0]
        neurons = self.mlp.neurons(middle)
        return neurons, (middle + neurons @ self.mlp.W_out + self.mlp.b_out) @ self.W_U


def addition_tokens(modulus: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All p^2 inputs [a, b, =] (p^2, 3) in the order a * p + b, and their answers (a + b) mod p (p^2,)."""
    numbers = torch.arange(modulus)
    a = numbers.repeat_interleave(modulus)
    b = numbers.repeat(modulus)
    tokens = torch.stack([a, b, torch.full_like(a, modulus)], dim=1)
    return tokens, (a + b) % modulus


def fourier_basis(modulus: int) -> torch.Tensor:
    """The orthonormal Fourier basis over Z_p (p odd), (p, p): row 0 constant, rows 2k-1 and 2k the
    cos and sin of 2 pi k x / p for k = 1..(p-1)/2."""
    x = torch.arange(modulus, dtype=torch.float64)
    rows = [torch.full((modulus,), 1.0 / math.sqrt(modulus), dtype=torch.float64)]
    for frequency in range(1, (modulus - 1) // 2 + 1):
        angle = 2 * math.pi * frequency * x / modulus
        rows += [torch.cos(angle) * math.sqrt(2 / modulus), torch.sin(angle) * math.sqrt(2 / modulus)]
    return torch.stack(rows)


def frequency_shares(embedding: torch.Tensor) -> np.ndarray:
    """Each frequency k's share (cos and sin together) of the squared norm of the number embeddings
    ``embedding`` (p, d_model), as ((p-1)/2,) for k = 1..(p-1)/2 (the constant's share is the rest)."""
    modulus = embedding.shape[0]
    squared = (fourier_basis(modulus) @ embedding.detach().double().cpu()).pow(2).sum(dim=1)
    per_frequency = squared[1::2] + squared[2::2]
    return (per_frequency / squared.sum()).numpy()


def cross_entropy(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy in float64: late in training the loss reaches 1e-7, below float32's resolution
    of a log-softmax near 0 (Nanda et al. compute it the same way)."""
    return functional.cross_entropy(logits.double(), answers)


def restricted_and_excluded_losses(
    model: ModularAdditionTransformer, key_frequencies: list[int], train_index: torch.Tensor
) -> tuple[float, float]:
    """Nanda et al.'s restricted and excluded losses on the training pairs.

    Over all p^2 pairs, the directions cos(w (a+b)) and sin(w (a+b)) (w = 2 pi k / p, k a key frequency)
    are orthonormal (once normalised) across pairs. Restricted: the MLP's last-position neuron
    activations (p^2, d_mlp) are replaced by their mean plus their components along those directions,
    mapped to logits through W_out W_U, plus the full logits' mean over pairs. Excluded: the logits'
    (p^2, p) components along those directions are removed.
    """
    modulus = model.W_U.shape[1]
    tokens, answers = addition_tokens(modulus)
    with torch.no_grad():
        neurons, logits = model.last_position(tokens)
        total = (tokens[:, 0] + tokens[:, 1]).double()
        directions = []
        for frequency in key_frequencies:
            angle = 2 * math.pi * frequency * total / modulus
            directions += [torch.cos(angle), torch.sin(angle)]
        basis = torch.stack(directions, dim=1)  # (p^2, 2 * keys)
        basis = (basis / basis.norm(dim=0)).float()
        kept_neurons = neurons.mean(dim=0) + basis @ (basis.T @ neurons)
        restricted = kept_neurons @ model.mlp.W_out @ model.W_U
        restricted = restricted + logits.mean(dim=0) - restricted.mean(dim=0)
        excluded = logits - basis @ (basis.T @ logits)
        restricted_loss = cross_entropy(restricted[train_index], answers[train_index])
        excluded_loss = cross_entropy(excluded[train_index], answers[train_index])
    return float(restricted_loss), float(excluded_loss)


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """About ``count`` checkpoint steps from 0 to ``steps``: two fifths log-spaced up to ``steps / 8``
    (memorisation is fast and early), the rest evenly spaced after (circuit formation and clean-up take
    most of training)."""
    early_end = max(steps / 8, 1.0)
    early = np.geomspace(1, early_end, 2 * count // 5)
    late = np.linspace(early_end, steps, count - len(early) + 1)
    return sorted({0, steps, *(int(round(s)) for s in early), *(int(round(s)) for s in late)})


def first_step(steps: list[int], reached: list[bool] | np.ndarray) -> int | None:
    """The first step at which ``reached`` holds (None if never)."""
    return next((step for step, hit in zip(steps, reached, strict=True) if hit), None)


def phase_curves(
    train_loss: np.ndarray, train_accuracy: np.ndarray, test_loss: np.ndarray, excluded_loss: np.ndarray
) -> np.ndarray:
    """(checkpoints, 4): log train loss and train accuracy (memorisation), log test loss (clean-up) and
    log excluded loss (circuit formation), each standardised so that they weigh the same in the
    change-point cost. Train accuracy is there because the log train loss keeps falling for decades after
    memorisation, which alone pulls every boundary late."""
    # a loss of exactly 0 (float64 underflow) would make the log infinite
    losses = np.log(np.maximum(np.stack([train_loss, test_loss, excluded_loss], axis=1), 1e-300))
    curves = np.column_stack([losses[:, 0], train_accuracy, losses[:, 1], losses[:, 2]])
    return (curves - curves.mean(axis=0)) / (curves.std(axis=0) + 1e-12)


class GrokkingLab(Lab):
    """Modular addition (a + b) mod p on a one-layer transformer: memorisation, then grokking.

    Checkpoint metrics: train/test loss and accuracy at the "=" position, ``weight_norm`` (L2 norm of all
    parameters) and ``embedding_fourier_top5_share``. Findings: ``train_99_step`` / ``test_99_step``
    (first checkpoint with accuracy >= 0.99), ``fourier_top5_share`` and ``key_frequencies`` of the
    final embedding, the restricted and excluded loss curves over checkpoints (Nanda et al.'s progress
    measures, with the final key frequencies) and the steps where they move, the weight norm's peak and
    end, and ``phase_boundaries`` from binary segmentation. Options: ``train_fraction`` (None: the
    size's), ``weight_decay``.
    """

    name = "grokking"
    title = "modular addition grokking in a one-layer transformer (Power et al. 2022; Nanda et al. 2023)"
    phase_curve = "test_loss"
    phase_transform = "log"
    reduce = "last"
    options: ClassVar[dict[str, Any]] = {"train_fraction": None, "weight_decay": 1.0}  # None: the size's

    def __init__(self, size: str = "default", steps: int | None = None, seed: int = 0, **options: Any):
        super().__init__(size, steps, seed, **options)
        self.setting = SIZE_SETTINGS[size]
        self.total_steps = steps if steps is not None else self.setting.steps
        chosen = self.settings["train_fraction"]
        fraction = self.setting.train_fraction if chosen is None else float(chosen)
        if not 0 < fraction < 1:
            raise NeurometryError(f"train_fraction {fraction} must be between 0 and 1")
        modulus = self.setting.modulus
        order = np.random.default_rng(seed).permutation(modulus * modulus)
        train_count = int(round(fraction * modulus * modulus))
        self.train_index = torch.as_tensor(np.sort(order[:train_count]))
        self.test_index = torch.as_tensor(np.sort(order[train_count:]))
        self.states: dict[int, dict[str, torch.Tensor]] = {}  # step -> CPU copy of the weights

    def build(self) -> nn.Module:
        setting = self.setting
        model = ModularAdditionTransformer(setting.modulus, setting.d_model, setting.heads, setting.d_mlp)
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.startswith("mlp.b_"):
                    parameter.zero_()
                else:
                    # Nanda et al.'s init: unit-variance entries over sqrt(d_model)
                    parameter.normal_(0.0, 1.0 / math.sqrt(setting.d_model), generator=generator)
        return model

    def phases(self, results: list[dict[str, float]]) -> LabPhases | None:
        """Memorisation, circuit formation, clean-up: binary segmentation (3 changes) of the standardised
        progress curves :func:`phase_curves` stacks (found by :meth:`findings`, which runs first); the values
        saved are their mean, for drawing."""
        if getattr(self, "phase_input", None) is None:
            return None
        steps, curves = self.phase_input
        found = find_phases(steps, curves, method="binseg", n_changes=PHASE_CHANGES)
        return LabPhases("progress_curves", found, [float(s) for s in steps],
                         [float(v) for v in np.asarray(curves).reshape(len(steps), -1).mean(axis=1)])

    def points(self) -> dict[str, str]:
        # not the embedding: at the "=" position it is the same vector for every input
        return {"resid_mid": "resid_mid", "resid_post": "resid_post"}

    def probe_data(self) -> ProbeData:
        modulus = self.setting.modulus
        tokens, answers = addition_tokens(modulus)
        split = np.full(modulus * modulus, "test", dtype=object)
        split[self.train_index.numpy()] = "train"
        metadata = pd.DataFrame({
            "a": tokens[:, 0].numpy(), "b": tokens[:, 1].numpy(), "answer": answers.numpy(), "split": split,
        })
        return ProbeData(tokens, metadata)

    def train(self, model: nn.Module, checkpoint: CheckpointCallback) -> None:
        device = next(model.parameters()).device
        tokens, answers = (t.to(device) for t in addition_tokens(self.setting.modulus))
        train_tokens, train_answers = tokens[self.train_index], answers[self.train_index]
        test_tokens, test_answers = tokens[self.test_index], answers[self.test_index]
        weight_decay = float(self.settings["weight_decay"])
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.setting.learning_rate, weight_decay=weight_decay, betas=ADAM_BETAS
        )
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min((k + 1) / WARMUP_STEPS, 1.0))
        saves = set(checkpoint_steps(self.total_steps, self.setting.checkpoints))
        self.states = {}
        model.train()
        for step in range(self.total_steps + 1):
            if step in saves:
                with torch.no_grad():
                    train_logits = model.last_position(train_tokens)[1]
                    test_logits = model.last_position(test_tokens)[1]
                    metrics = {
                        "train_loss": float(cross_entropy(train_logits, train_answers)),
                        "test_loss": float(cross_entropy(test_logits, test_answers)),
                        "train_accuracy": float((train_logits.argmax(-1) == train_answers).float().mean()),
                        "test_accuracy": float((test_logits.argmax(-1) == test_answers).float().mean()),
                        "weight_norm": float(torch.sqrt(sum(p.pow(2).sum() for p in model.parameters()))),
                        "embedding_fourier_top5_share": float(
                            np.sort(frequency_shares(model.embed.W_E[:-1]))[-KEY_FREQUENCY_COUNT:].sum()
                        ),
                    }
                # kept for findings(): the progress measures need the final model's key frequencies
                self.states[step] = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
                checkpoint(step, metrics)
            if step == self.total_steps:
                break
            loss = cross_entropy(model.last_position(train_tokens)[1], train_answers)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            warmup.step()

    def findings(self, model: nn.Module, results: list[dict[str, float]]) -> dict[str, Any]:
        if not self.states:
            raise NeurometryError("grokking findings need the weights kept by train(); train this lab first")
        steps = [int(r["step"]) for r in results]
        missing = [step for step in steps if step not in self.states]
        if missing:
            raise NeurometryError(f"no weights kept for step {missing[0]:g}; pass this lab's own results")
        shares = frequency_shares(model.embed.W_E[:-1])
        # Nanda et al. take the key frequencies from the final model and track them back over training
        key_frequencies = [int(k) + 1 for k in np.argsort(shares)[::-1][:KEY_FREQUENCY_COUNT]]
        replay = self.build()
        restricted, excluded = [], []
        for step in steps:
            replay.load_state_dict(self.states[step])
            losses = restricted_and_excluded_losses(replay, key_frequencies, self.train_index)
            restricted.append(losses[0])
            excluded.append(losses[1])
        excluded_array, weight_norm = np.array(excluded), np.array([r["weight_norm"] for r in results])
        train_loss = np.array([r["train_loss"] for r in results])
        test_loss = np.array([r["test_loss"] for r in results])
        lowest = int(np.argmin(excluded_array))
        rise = excluded_array >= EXCLUDED_RISE_FACTOR * excluded_array[lowest]
        rise[:lowest] = False
        # binseg needs two checkpoints per phase; a run of a few --steps has too few for phases
        enough = len(steps) >= 2 * (PHASE_CHANGES + 1)
        train_accuracy = np.array([r["train_accuracy"] for r in results])
        curves = phase_curves(train_loss, train_accuracy, test_loss, excluded_array)
        self.phase_input = (steps, curves) if enough else None  # what phases() segments
        boundaries = None
        if enough:
            boundaries = find_phases(steps, curves, method="binseg", n_changes=PHASE_CHANGES).boundaries
        train_99 = first_step(steps, train_accuracy >= ACCURACY_LEVEL)
        test_99 = first_step(steps, [r["test_accuracy"] >= ACCURACY_LEVEL for r in results])
        return {
            "modulus": self.setting.modulus,
            "train_fraction": len(self.train_index) / self.setting.modulus**2,
            "train_99_step": train_99,
            "test_99_step": test_99,
            "grokking_delay_ratio": round(test_99 / train_99, 2) if train_99 and test_99 else None,
            "final_train_accuracy": results[-1]["train_accuracy"],
            "final_test_accuracy": results[-1]["test_accuracy"],
            "fourier_top5_share": float(np.sort(shares)[-KEY_FREQUENCY_COUNT:].sum()),
            "fourier_top5_share_at_init": results[0].get("embedding_fourier_top5_share"),
            "key_frequencies": key_frequencies,
            "steps": steps,
            "restricted_loss": restricted,
            "excluded_loss": excluded,
            "restricted_loss_fall_step": first_step(steps, np.array(restricted) <= LOSS_LEVEL),
            "excluded_loss_rise_step": first_step(steps, rise),
            "test_loss_drop_step": first_step(steps, test_loss <= LOSS_LEVEL),
            "weight_norm_peak": float(weight_norm.max()),
            "weight_norm_peak_step": steps[int(np.argmax(weight_norm))],
            "weight_norm_final": float(weight_norm[-1]),
            "phase_boundaries": boundaries,
            "phase_method": f"binseg, {PHASE_CHANGES} changes, standardised log train loss, train accuracy, "
            "log test loss, log excluded loss",
        }

    def describe(self, findings: dict[str, Any]) -> list[str]:
        """Lines for people: the grokking delay, the Fourier embedding, the progress measures, the phases."""
        return [
            f"p = {findings['modulus']}, {findings['train_fraction']:.0%} of pairs for training",
            f"train accuracy >= {ACCURACY_LEVEL} at step {findings['train_99_step']}, test accuracy at step "
            f"{findings['test_99_step']} (ratio {findings['grokking_delay_ratio']})",
            f"embedding: top {KEY_FREQUENCY_COUNT} Fourier frequencies {findings['key_frequencies']} carry "
            f"{findings['fourier_top5_share']:.2f} of its squared norm (at init "
            f"{findings['fourier_top5_share_at_init']:.2f})",
            f"excluded loss x{EXCLUDED_RISE_FACTOR:g} from its low at step "
            f"{findings['excluded_loss_rise_step']}, restricted loss <= {LOSS_LEVEL} at step "
            f"{findings['restricted_loss_fall_step']}, test loss <= {LOSS_LEVEL} at step "
            f"{findings['test_loss_drop_step']}",
            f"weight norm {findings['weight_norm_peak']:.1f} at step {findings['weight_norm_peak_step']:g}, "
            f"{findings['weight_norm_final']:.1f} at the end",
            f"phase boundaries ({findings['phase_method']}): {findings['phase_boundaries']}",
        ]
