"""Neural collapse: in the terminal phase of training the last-layer features collapse onto their class
means, which form a simplex equiangular tight frame.

Papyan, Han & Donoho (2020), "Prevalence of neural collapse during the terminal phase of deep learning
training" (PNAS 117(40)). Training past zero training error (the terminal phase, TPT) drives the
penultimate-layer features H of the training set towards four limits: NC1, the within-class
variability tr(Sigma_W Sigma_B^+) / C goes to 0; NC2, the centred class means become equinorm and
equiangular (a simplex ETF: pairwise cosines -1/(C-1)); NC3, the classifier aligns with the class
means; NC4, the classifier's decision agrees with the nearest class mean. Their setup: image
classifiers (VGG, ResNet, DenseNet, all with batch normalisation), SGD with momentum 0.9, 350 epochs,
the learning rate divided by 10 at 1/3 and 2/3 of training, weight decay (5e-4 here, option
``weight_decay``), no augmentation.

Here: scikit-learn's digits (1,797 8x8 images, 10 classes, no download), features standardised on a
seeded stratified 75/25 train/test split, and an MLP 64 -> 128 -> 128 -> 64 -> 10 whose hidden layers
are Linear -> BatchNorm1d -> ReLU (the 64-wide last one gives the features), trained with their
optimiser and schedule on mini-batches of 128. NC1..NC4 are computed at each checkpoint on the
training set's features with :mod:`neurometry.measures` (so ``neurometry measure`` on the recorded
``features`` point gives the same numbers).

What differs from the paper: the network is a small MLP, and it needs the batch normalisation their
networks have: without it (``batch_norm=False``) it fits the digits but stops collapsing: over the default
3,500 steps (seed 0) NC1 stalls at 0.23 (a 9.5x fall), NC2 equinorm stays at 0.18 and equiangularity
rises from 0.20 to 0.29. Training much longer than the default at this learning rate is not advised:
weight decay shrinks the weights ahead of each batch norm, which raises the effective learning rate until
training jumps (Lobacheva et al. 2021, periodic behaviour with batch norm and weight decay); at 10,000
steps NC1 fell to 0.003 by step 3,070 and was back at 0.04 by step 3,888. NC4 is reported as
:func:`neurometry.measures.nc4` defines it, the *agreement* (-> 1) of the network's prediction with the
nearest class mean; ``nc4_disagreement_last`` is one minus it (the paper's mismatch, -> 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional

from neurometry.errors import NeurometryError
from neurometry.lab.base import CheckpointCallback, Lab, LabPhases, ProbeData, as_bool, log_spaced_steps
from neurometry.measures import nc1, nc2_equiangular, nc2_equinorm, nc3, nc4
from neurometry.training import find_phases

WIDTHS = (64, 128, 128, 64)  # the digits' 64 pixels, two hidden layers, the 64 penultimate features
CLASSES = 10
TEST_FRACTION = 0.25
BATCH = 128
MOMENTUM = 0.9  # the paper's
LEARNING_RATE = 0.1  # the paper tuned it per network; 0.1 collapses within the test size's steps
LEARNING_RATE_DROPS = (1 / 3, 2 / 3)  # divided by 10 at these fractions of training, as in the paper
CHECKPOINTS = 40  # log-spaced over steps: the fit takes tens of steps, the collapse thousands


@dataclass(frozen=True)
class CollapseSize:
    """One size of the entry: how long it trains (the model and data are the same at every size)."""

    steps: int  # optimiser updates of BATCH rows; 10 updates make one epoch of the 1,347 training rows


SIZE_SETTINGS = {
    "default": CollapseSize(steps=3500),  # 350 epochs, as in the paper
    "test": CollapseSize(steps=1500),  # about 140 epochs
}



class CollapseMLP(nn.Module):
    """An MLP classifier: ``blocks`` (Linear -> BatchNorm1d -> ReLU, or Linear -> ReLU without batch norm)
    over ``widths``, then the linear ``classifier`` to ``classes`` logits.

    ``model(inputs)``: inputs (n, widths[0]) -> logits (n, classes). Each block outputs (n, width) after its
    ReLU; the last block's output is the penultimate-layer features H of the paper.
    """

    def __init__(self, widths: tuple[int, ...], classes: int, batch_norm: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU())
            if batch_norm
            else nn.Sequential(nn.Linear(width_in, width_out), nn.ReLU())
            for width_in, width_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.classifier = nn.Linear(widths[-1], classes)

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer features (n, widths[-1])."""
        hidden = inputs
        for block in self.blocks:
            hidden = block(hidden)
        return hidden

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(inputs))


def digits_split(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits, split 75/25 stratified by class (seeded), each pixel standardised with the
    training rows' mean and std (std 1 for the pixels that are constant there). Returns train inputs
    (1347, 64), train labels (1347,), test inputs (450, 64), test labels (450,)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    inputs, labels = load_digits(return_X_y=True)
    train_inputs, test_inputs, train_labels, test_labels = train_test_split(
        inputs, labels, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    mean = train_inputs.mean(axis=0)
    std = train_inputs.std(axis=0)
    std[std == 0] = 1.0  # border pixels that are always 0 in the training rows
    return (
        torch.as_tensor((train_inputs - mean) / std, dtype=torch.float32),
        torch.as_tensor(train_labels, dtype=torch.long),
        torch.as_tensor((test_inputs - mean) / std, dtype=torch.float32),
        torch.as_tensor(test_labels, dtype=torch.long),
    )


def learning_rate_at(step: int, steps: int) -> float:
    """The paper's schedule: LEARNING_RATE, divided by 10 at each of LEARNING_RATE_DROPS of ``steps``."""
    return LEARNING_RATE * 0.1 ** sum(step >= fraction * steps for fraction in LEARNING_RATE_DROPS)


def collapse_measures(
    features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray
) -> dict[str, float]:
    """NC1, NC2 (equinorm, equiangular), NC3 and NC4 of ``features`` (n, d) with ``labels`` (n,) and the
    classifier ``weight`` (C, d), ``bias`` (C,), as :mod:`neurometry.measures` defines them."""
    return {
        "nc1": float(nc1(features, labels)),
        "nc2_equinorm": float(nc2_equinorm(features, labels)),
        "nc2_equiangular": float(nc2_equiangular(features, labels)),
        "nc3": float(nc3(features, labels, weight, bias)),
        "nc4": float(nc4(features, labels, (weight, bias))),
    }


def floored_error(train_accuracy: list[float], train_rows: int) -> np.ndarray:
    """The training error floored at half a training row, 1 - accuracy + 0.5 / rows, so zero error has a log."""
    return 1.0 - np.asarray(train_accuracy, dtype=np.float64) + 0.5 / train_rows


def train_error_phases_start(
    steps: list[float], train_accuracy: list[float], train_rows: int
) -> int | None:
    """The start of the terminal phase as :func:`find_phases` sees it: PELT on the log training error,
    floored at half a training row (1 - accuracy + 0.5 / rows, so zero error has a log); the first step
    of the last phase if that phase has zero training error throughout, else None (no terminal phase)."""
    if len(steps) < 4:  # two phases of at least two checkpoints each
        return None
    error = 1.0 - np.asarray(train_accuracy, dtype=np.float64)
    phases = find_phases(steps, floored_error(train_accuracy, train_rows), transform="log").phases
    last = phases[-1]
    in_last = np.asarray(steps) >= last.start_step
    if len(phases) < 2 or np.any(error[in_last] > 0):
        return None
    return int(last.start_step)


class CollapseLab(Lab):
    """Neural collapse of an MLP's penultimate features on scikit-learn's digits (Papyan et al. 2020).

    Checkpoint metrics: losses and accuracies on the train and test splits, and NC1, NC2 (equinorm,
    equiangular), NC3, NC4 (agreement) of the training set's features. Findings: NC1 at step 0
    (``nc1_first``) and at the end (``nc1_last``), ``nc1_fall`` (their ratio), ``nc1_largest_rise`` (the
    largest ratio between neighbouring checkpoints; below 1 when NC1 falls monotonically),
    ``zero_train_error_step`` (first checkpoint with train accuracy 1.0), ``terminal_phase_step`` (the
    start of the last, zero-error phase that :func:`find_phases` finds on the training error), the NC2,
    NC3, NC4 values at step 0 and at the end, and the final test accuracy.
    """

    name = "collapse"
    title = "neural collapse of an MLP's last-layer features on digits (Papyan, Han & Donoho 2020)"
    phase_curve = "nc1"
    phase_transform = "log"
    reduce = "none"
    options: ClassVar[dict[str, Any]] = {"weight_decay": 5e-4, "batch_norm": True}

    def __init__(self, size: str = "default", steps: int | None = None, seed: int = 0, **options: Any):
        super().__init__(size, steps, seed, **options)
        self.total_steps = steps if steps is not None else SIZE_SETTINGS[size].steps
        self.weight_decay = float(self.settings["weight_decay"])
        if self.weight_decay < 0:
            raise NeurometryError(f"weight_decay {self.weight_decay} must be at least 0")
        self.batch_norm = as_bool(self.settings["batch_norm"])
        self.train_inputs, self.train_labels, self.test_inputs, self.test_labels = digits_split(seed)

    def build(self) -> nn.Module:
        # nn.Linear draws its initial weights from the global generator: seed it inside a fork so the
        # caller's random state is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return CollapseMLP(WIDTHS, CLASSES, self.batch_norm)

    def points(self) -> dict[str, str]:
        return {"hidden.0": "blocks.0", "hidden.1": "blocks.1", "features": "blocks.2"}

    def probe_data(self) -> ProbeData:
        rows = len(self.train_labels)
        metadata = pd.DataFrame({"label": self.train_labels.numpy(), "split": ["train"] * rows})
        return ProbeData(self.train_inputs, metadata)

    def evaluate(self, model: CollapseMLP) -> dict[str, float]:
        """The checkpoint metrics of ``model`` in eval mode (batch norm with its running statistics, as
        the points are recorded): losses, accuracies and NC1..NC4 of the training set's features."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            features = model.features(self.train_inputs)
            train_logits = model.classifier(features)
            test_logits = model(self.test_inputs)
            weight = model.classifier.weight.double().numpy()
            bias = model.classifier.bias.double().numpy()
            metrics = {
                "train_loss": float(functional.cross_entropy(train_logits, self.train_labels)),
                "test_loss": float(functional.cross_entropy(test_logits, self.test_labels)),
                "train_accuracy": float((train_logits.argmax(-1) == self.train_labels).double().mean()),
                "test_accuracy": float((test_logits.argmax(-1) == self.test_labels).double().mean()),
                **collapse_measures(features.double().numpy(), self.train_labels.numpy(), weight, bias),
            }
        model.train(was_training)
        return metrics

    def train(self, model: nn.Module, checkpoint: CheckpointCallback) -> None:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=self.weight_decay
        )
        generator = torch.Generator().manual_seed(self.seed)
        rows = len(self.train_labels)
        saves = set(log_spaced_steps(self.total_steps, CHECKPOINTS))
        order, position = torch.randperm(rows, generator=generator), 0
        for step in range(self.total_steps + 1):
            if step in saves:
                checkpoint(step, self.evaluate(model))
            if step == self.total_steps:
                break
            # a fresh shuffle each epoch; full batches only, so every batch-norm batch has BATCH rows
            if position + BATCH > rows:
                order, position = torch.randperm(rows, generator=generator), 0
            batch = order[position : position + BATCH]
            position += BATCH
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, self.total_steps)
            model.train()
            loss = functional.cross_entropy(model(self.train_inputs[batch]), self.train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def phases(self, results: list[dict[str, float]]) -> LabPhases | None:
        """PELT phases of the floored training error on a log scale (:func:`floored_error`): NC1 falls smoothly
        (PELT on it gives a staircase of ~11 steps), while the error's last phase is the terminal phase."""
        if len(results) < 4:
            return None
        steps = [float(r["step"]) for r in results]
        error = floored_error([r["train_accuracy"] for r in results], len(self.train_labels))
        return LabPhases("train_error_floored", find_phases(steps, error, transform="log"), steps, error.tolist())

    def findings(self, model: nn.Module, results: list[dict[str, float]]) -> dict[str, Any]:
        if not results:
            raise NeurometryError("collapse findings need the checkpoint records; train this lab first")
        steps = [float(r["step"]) for r in results]
        nc1_curve = np.array([r["nc1"] for r in results])
        train_accuracy = [r["train_accuracy"] for r in results]
        first, last = results[0], results[-1]
        zero_error_step = next((int(s) for s, a in zip(steps, train_accuracy, strict=True) if a == 1.0), None)
        return {
            "nc1_first": first["nc1"],  # at step 0, before any update
            "nc1_last": last["nc1"],
            "nc1_fall": float(first["nc1"] / last["nc1"]),
            "nc1_largest_rise": float(np.max(nc1_curve[1:] / nc1_curve[:-1])) if len(results) > 1 else None,
            "zero_train_error_step": zero_error_step,  # the first checkpoint with train accuracy 1.0
            "terminal_phase_step": train_error_phases_start(steps, train_accuracy, len(self.train_labels)),
            "nc2_equinorm_first": first["nc2_equinorm"],
            "nc2_equinorm_last": last["nc2_equinorm"],
            "nc2_equiangular_first": first["nc2_equiangular"],
            "nc2_equiangular_last": last["nc2_equiangular"],
            "nc3_first": first["nc3"],
            "nc3_last": last["nc3"],
            "nc4_first": first["nc4"],
            "nc4_last": last["nc4"],  # agreement with the nearest class mean, -> 1
            "nc4_disagreement_last": 1.0 - last["nc4"],  # the paper's mismatch, -> 0
            "train_accuracy_last": last["train_accuracy"],
            "test_accuracy_last": last["test_accuracy"],
        }

    def describe(self, findings: dict[str, Any]) -> list[str]:
        return [
            f"NC1 fell {findings['nc1_fall']:.0f}x, from {findings['nc1_first']:.3g} at step 0 to "
            f"{findings['nc1_last']:.3g}",
            f"training error first reached 0 at step {findings['zero_train_error_step']}; the terminal phase "
            f"(last phase of the training error) starts at step {findings['terminal_phase_step']}",
            f"NC2 equinorm {findings['nc2_equinorm_first']:.3f} -> {findings['nc2_equinorm_last']:.3f}, "
            f"equiangular {findings['nc2_equiangular_first']:.3f} -> {findings['nc2_equiangular_last']:.3f} "
            "(0 for a simplex ETF)",
            f"NC4 agreement of classifier and nearest class mean {findings['nc4_last']:.4f}; "
            f"test accuracy {findings['test_accuracy_last']:.3f}",
        ]
