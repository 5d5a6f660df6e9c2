"""Superposition: a ReLU model with fewer hidden dimensions than features stores more features than it has
dimensions once the features are sparse, placing them at the corners of regular polytopes.

Elhage et al. (2022), "Toy Models of Superposition" (Transformer Circuits Thread). Each input x in R^n
has features that are independently 0 with probability S (the sparsity) and otherwise uniform on [0, 1];
the model maps it through m < n hidden dimensions and back with tied weights, x' = ReLU(W^T W x + b), W
(m, n), and is trained on the importance-weighted squared error sum_i I_i (x_i - x'_i)^2. With dense
features it keeps the m most important features in orthogonal directions (like PCA) and drops the rest;
with sparse ones it packs all n in, e.g. n = 5 features in m = 2 dimensions as a regular pentagon (72
degrees apart), using the ReLU and a negative bias to filter the interference. The paper measures this by
the columns' norms ||W_i|| (a feature is represented when its norm is near 1, dropped when near 0) and by
the dimensions per feature D* = m / ||W||_F^2 (1 for orthogonal features, 1/2 for antipodal pairs, 2/5
for a unit pentagon); over a grid of sparsities D* falls and the represented features rise from m
towards n (the paper's n = 20, m = 5 figure).

Here: n = 5, m = 2, feature probability 1 - S = 0.05 and importance 0.9^i, as in the paper's
reference notebook (whose 0.9^i pentagon forms at every seed tried), trained with Adam on fresh seeded
batches of 1,024 inputs. ``sweep=True`` also trains n = 20, m = 5 models at feature probabilities 1 ..
0.003, all at once as one batch of independent models, and reports the represented features and D* of
each.

What differs from the paper: the learning rate is 1e-2 (the notebook trains 10,000 steps at 1e-3; 1e-2
reaches the same shapes within 3,000 CPU steps). The trained pentagon's columns are longer
than 1 (norms about 1.13 at 0.05): the negative bias that filters interference needs the gain, so D* is
about 0.31 rather than the unit pentagon's 2/5 (the antipodal 1/2 of the sweep's 0.3 comes out exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.lab.base import CheckpointCallback, Lab, ProbeData, as_bool, log_spaced_steps

BATCH = 1024  # fresh inputs per Adam step, as in the paper's notebook
LEARNING_RATE = 1e-2  # the notebook trains 10,000 steps at 1e-3; 1e-2 reaches the same shapes in 3,000
REPRESENTED_NORM = 0.5  # a feature counts as represented when ||W_i|| exceeds this (kept ones are ~1, dropped ~0)
PROBE_SAMPLES = 1000  # sparse probe inputs, before the n one-hot inputs
TEST_ROWS = 10000  # the fixed held-out batch of test_loss (about 500 active inputs per feature at 0.05)
CHECKPOINTS = 40  # log-spaced: the features separate within the first few hundred steps
SWEEP_FEATURES = 20  # the paper's n = 20, m = 5 sparsity figure
SWEEP_HIDDEN = 5
SWEEP_PROBABILITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)  # feature probability 1 - S, dense to S = 0.997
# each part of the seed's random choices draws from its own generator, so changing one leaves the others
SEED_OFFSETS = {"build": 0, "train": 1, "test": 2, "probe": 3, "sweep": 4}


@dataclass(frozen=True)
class SuperpositionSize:
    """One size of the entry: Adam steps of the main model and of the sweep's models."""

    steps: int
    sweep_steps: int


SIZE_SETTINGS = {
    "default": SuperpositionSize(steps=10000, sweep_steps=6000),
    "test": SuperpositionSize(steps=3000, sweep_steps=3000),
}


class HiddenProjection(nn.Module):
    """h = W x: ``weight`` W (m, n), column i is feature i's direction; (rows, n) -> (rows, m)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T


class ReluReadout(nn.Module):
    """x' = ReLU(W^T h + b) with the hidden projection's W (tied weights): (rows, m) -> (rows, n)."""

    def __init__(self, features: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.relu(hidden @ weight + self.bias)


class ToyModel(nn.Module):
    """The paper's ReLU output model x' = ReLU(W^T W x + b): ``hidden`` computes W x, ``output`` x'.

    ``model(x)``: x (rows, n) floats -> x' (rows, n)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.hidden = HiddenProjection(weight)
        self.output = ReluReadout(weight.shape[1])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(features), self.hidden.weight)


def sample_features(
    generator: torch.Generator, shape: tuple[int, ...], probability: float | torch.Tensor
) -> torch.Tensor:
    """Sparse inputs of ``shape`` (..., n): each feature independently uniform on [0, 1] with ``probability``
    (1 - S, a float or a tensor broadcasting against ``shape``) and 0 otherwise."""
    values = torch.rand(shape, generator=generator)
    active = torch.rand(shape, generator=generator) < probability
    return values * active


def importance_weights(features: int, decay: float) -> torch.Tensor:
    """The paper's feature importance I_i = decay^i, i = 0..n-1: (n,)."""
    return decay ** torch.arange(features, dtype=torch.float32)


def weighted_loss(output: torch.Tensor, target: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """sum_i I_i (x_i - x'_i)^2 averaged over rows: (..., rows, n) -> (...)."""
    return ((output - target) ** 2 * importance).sum(-1).mean(-1)


def column_norms(weight: torch.Tensor) -> torch.Tensor:
    """||W_i|| of each feature's column: (..., m, n) -> (..., n)."""
    return weight.detach().norm(dim=-2)


def dimensions_per_feature(weight: torch.Tensor) -> torch.Tensor:
    """The paper's D* = m / ||W||_F^2: (..., m, n) -> (...)."""
    weight = weight.detach()
    return weight.shape[-2] / (weight**2).sum((-2, -1))


def feature_dimensionality(weight: torch.Tensor) -> list[float]:
    """Each feature's share of a dimension, D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (Elhage et al. 2022,
    "feature dimensionality"): (m, n) -> n values. Unlike D*, it does not depend on the columns' length:
    2/5 for every column of a regular pentagon, 1 for a feature with a dimension of its own."""
    weight = weight.detach().double()
    norms = weight.norm(dim=0)
    unit = weight / norms.clamp_min(1e-12)
    overlaps = (unit.T @ weight) ** 2
    return [float(v) for v in norms**2 / overlaps.sum(dim=1).clamp_min(1e-12)]


def represented_features(weight: torch.Tensor) -> torch.Tensor:
    """How many columns have ||W_i|| > REPRESENTED_NORM: (..., m, n) -> (...)."""
    return (column_norms(weight) > REPRESENTED_NORM).sum(-1)


def adjacent_angles(weight: torch.Tensor) -> list[float]:
    """Angles in degrees between the represented columns of W (m, n).

    With m = 2: the columns' directions sorted around the circle and the angle from each to the next,
    the last wrapping to the first (they sum to 360; a regular pentagon gives five 72s). With m > 2 no
    circle orders them, so each represented column's angle to its nearest represented neighbour, sorted.
    Fewer than two represented columns give an empty list."""
    weight = weight.detach().double()
    columns = weight[:, column_norms(weight) > REPRESENTED_NORM]
    if columns.shape[1] < 2:
        return []
    if weight.shape[0] == 2:
        directions = torch.sort(torch.atan2(columns[1], columns[0])).values
        gaps = torch.diff(torch.cat([directions, directions[:1] + 2 * math.pi]))
        return [math.degrees(float(gap)) for gap in gaps]
    unit = columns / columns.norm(dim=0)
    cosines = (unit.T @ unit).clamp(-1.0, 1.0)
    cosines.fill_diagonal_(-1.0)  # a column is not its own neighbour
    return sorted(math.degrees(math.acos(float(cosine))) for cosine in cosines.max(dim=1).values)


def train_sweep(
    probabilities: tuple[float, ...], features: int, hidden: int, decay: float, steps: int, seed: int
) -> list[dict[str, float]]:
    """Train one toy model per feature probability, all at once as a batch of independent models (W of
    (models, m, n)), with the main model's initialisation, optimiser and batches, and report each one's
    ``feature_probability``, ``represented_features`` and ``dimensions_per_feature``."""
    generator = torch.Generator().manual_seed(seed)
    count = len(probabilities)
    probability = torch.tensor(probabilities, dtype=torch.float32)[:, None, None]
    weight = nn.Parameter(xavier_normal(generator, (count, hidden, features)))
    bias = nn.Parameter(torch.zeros(count, 1, features))
    importance = importance_weights(features, decay)
    optimizer = torch.optim.Adam([weight, bias], lr=LEARNING_RATE)
    for _ in range(steps):
        inputs = sample_features(generator, (count, BATCH, features), probability)
        hidden_values = torch.einsum("kmn,krn->krm", weight, inputs)
        output = torch.relu(torch.einsum("kmn,krm->krn", weight, hidden_values) + bias)
        # the models share no parameters and Adam's update is per element, so each trains as if alone
        loss = weighted_loss(output, inputs, importance).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    represented = represented_features(weight)
    dimensions = dimensions_per_feature(weight)
    return [
        {
            "feature_probability": float(probabilities[index]),
            "represented_features": int(represented[index]),
            "dimensions_per_feature": float(dimensions[index]),
        }
        for index in range(count)
    ]


def xavier_normal(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Glorot-normal weights of ``shape`` (..., m, n), std sqrt(2 / (m + n)) (the notebook's init)."""
    return torch.randn(shape, generator=generator) * math.sqrt(2.0 / (shape[-2] + shape[-1]))



class SuperpositionLab(Lab):
    """n sparse features through m < n hidden dimensions (Elhage et al. 2022): the pentagon at n = 5, m = 2.

    Options: ``n`` features (5), ``m`` hidden dimensions (2), ``feature_probability`` 1 - S (0.05),
    ``importance`` the decay base of I_i = importance^i (0.9), ``sweep`` (False: also train n = 20, m = 5
    models over :data:`SWEEP_PROBABILITIES` and report them under ``sweep``)."""

    name: ClassVar[str] = "superposition"
    title: ClassVar[str] = (
        "Sparse features stored in superposition, the n=5, m=2 pentagon (Elhage et al. 2022, Toy Models of "
        "Superposition)"
    )
    phase_curve: ClassVar[str] = "test_loss"
    reduce: ClassVar[str] = "none"
    options: ClassVar[dict[str, Any]] = {
        "n": 5, "m": 2, "feature_probability": 0.05, "importance": 0.9, "sweep": False,
    }

    def __init__(self, size: str = "default", steps: int | None = None, seed: int = 0, **options: Any):
        super().__init__(size=size, steps=steps, seed=seed, **options)
        self.setting = SIZE_SETTINGS[size]
        try:
            self.features = int(self.settings["n"])
            self.hidden = int(self.settings["m"])
            self.feature_probability = float(self.settings["feature_probability"])
            self.decay = float(self.settings["importance"])
        except (TypeError, ValueError) as error:
            raise NeurometryError(f"superposition options n, m, feature_probability, importance: {error}") from None
        self.sweep = as_bool(self.settings["sweep"])
        if self.features < 1 or self.hidden < 1:
            raise NeurometryError(f"n={self.features} and m={self.hidden} must both be at least 1")
        if not 0.0 < self.feature_probability <= 1.0:
            raise NeurometryError(f"feature_probability {self.feature_probability} must be in (0, 1]")
        if self.decay <= 0.0:
            raise NeurometryError(f"importance {self.decay} must be positive (the decay base of I_i)")
        self.importance = importance_weights(self.features, self.decay)

    def total_steps(self) -> int:
        return self.steps if self.steps is not None else self.setting.steps

    def generator(self, part: str) -> torch.Generator:
        """A fresh generator for one part of the lab (``build``, ``train``, ``test``, ``probe``, ``sweep``)."""
        return torch.Generator().manual_seed(self.seed * len(SEED_OFFSETS) + SEED_OFFSETS[part])

    def build(self) -> nn.Module:
        return ToyModel(xavier_normal(self.generator("build"), (self.hidden, self.features)))

    def points(self) -> dict[str, str]:
        return {"hidden": "hidden", "output": "output"}

    def probe_data(self) -> ProbeData:
        """PROBE_SAMPLES seeded inputs at the lab's sparsity, then the n one-hot inputs (feature i = 1).
        Metadata: ``kind`` (sample / one_hot), ``active_count`` (nonzero features) and ``active_feature``
        (the one active feature's index, -1 when none or several are)."""
        samples = sample_features(self.generator("probe"), (PROBE_SAMPLES, self.features), self.feature_probability)
        inputs = torch.cat([samples, torch.eye(self.features)])
        active = (inputs > 0).numpy()
        counts = active.sum(1)
        metadata = pd.DataFrame({
            "kind": ["sample"] * PROBE_SAMPLES + ["one_hot"] * self.features,
            "active_count": counts.astype(int),
            "active_feature": np.where(counts == 1, active.argmax(1), -1).astype(int),
        })
        return ProbeData(inputs=inputs, metadata=metadata)

    def train(self, model: nn.Module, checkpoint: CheckpointCallback) -> None:
        steps = self.total_steps()
        record_at = set(log_spaced_steps(steps, CHECKPOINTS))
        generator = self.generator("train")
        test_inputs = sample_features(self.generator("test"), (TEST_ROWS, self.features), self.feature_probability)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        for step in range(steps + 1):
            inputs = sample_features(generator, (BATCH, self.features), self.feature_probability)
            loss = weighted_loss(model(inputs), inputs, self.importance)
            if step in record_at:
                # train_loss is this fresh batch's loss before the step's update
                checkpoint(step, self.metrics(model, loss.item(), test_inputs))
            if step == steps:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def metrics(self, model: nn.Module, train_loss: float, test_inputs: torch.Tensor) -> dict[str, float]:
        weight = model.hidden.weight
        with torch.no_grad():
            test_loss = float(weighted_loss(model(test_inputs), test_inputs, self.importance))
        return {
            "train_loss": train_loss,
            "test_loss": test_loss,
            "represented_features": float(represented_features(weight)),
            "dimensions_per_feature": float(dimensions_per_feature(weight)),
        }

    def findings(self, model: nn.Module, results: list[dict[str, float]]) -> dict[str, Any]:
        """The trained model's ``represented_features``, ``dimensions_per_feature``, ``column_norms`` and
        ``angles_degrees`` (see :func:`adjacent_angles`); with ``sweep`` also ``sweep``, which trains the
        n = 20, m = 5 models here (seeded, so the same each call)."""
        weight = model.hidden.weight
        found: dict[str, Any] = {
            "represented_features": int(represented_features(weight)),
            "dimensions_per_feature": float(dimensions_per_feature(weight)),
            "column_norms": [float(norm) for norm in column_norms(weight)],
            "angles_degrees": adjacent_angles(weight),
            "feature_dimensionality": feature_dimensionality(weight),
        }
        if self.sweep:
            sweep_steps = self.steps if self.steps is not None else self.setting.sweep_steps
            found["sweep"] = train_sweep(
                SWEEP_PROBABILITIES, SWEEP_FEATURES, SWEEP_HIDDEN, self.decay, sweep_steps,
                seed=int(self.generator("sweep").initial_seed()),
            )
        return found

    def describe(self, findings: dict[str, Any]) -> list[str]:
        norms = ", ".join(f"{norm:.2f}" for norm in findings["column_norms"])
        angles = ", ".join(f"{angle:.1f}" for angle in findings["angles_degrees"])
        lines = [
            f"{findings['represented_features']} of {self.features} features represented in {self.hidden} "
            f"dimensions (||W_i|| > {REPRESENTED_NORM}) at feature probability {self.feature_probability}",
            f"dimensions per feature m/||W||_F^2: {findings['dimensions_per_feature']:.3f}; each feature's "
            "dimensionality ||W_i||^2 / sum_j (W_i_hat.W_j)^2: "
            + ", ".join(f"{d:.3f}" for d in findings["feature_dimensionality"]),
            f"column norms: {norms}",
            f"angles between adjacent represented columns (degrees): {angles}",
        ]
        for row in findings.get("sweep", []):
            lines.append(
                f"sweep n={SWEEP_FEATURES}, m={SWEEP_HIDDEN}, feature probability {row['feature_probability']}: "
                f"{row['represented_features']} represented, {row['dimensions_per_feature']:.3f} dimensions "
                "per feature"
            )
        return lines
