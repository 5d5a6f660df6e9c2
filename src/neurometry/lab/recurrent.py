"""What the recurrent lab entries share (:mod:`neurometry.lab.flipflop`, :mod:`neurometry.lab.integrator`): the
network (a recurrent layer and a linear readout), seeding each part of an entry from its own generator, the
cosine learning rate, float64 trajectories for the fixed-point finder, and :class:`RecurrentLab`: the ``cell``
and ``hidden`` options, Adam training on fresh seeded batches with the gradient norm clipped, and the initial
states of the fixed-point search.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from neurometry.dynamics.fixed_points import sample_states
from neurometry.errors import NeurometryError
from neurometry.lab.base import CheckpointCallback, Lab, log_spaced_steps

CELLS = ("rnn", "gru")  # nn.RNN (tanh) or nn.GRU
GRADIENT_CLIP = 1.0  # the usual guard against the exploding gradients of recurrent networks
# each part of the seed's random choices draws from its own generator, so changing one leaves the others
SEED_OFFSETS = {"build": 0, "train": 1, "test": 2, "probe": 3, "finder": 4}


class RecurrentReadout(nn.Module):
    """A recurrent layer and a linear readout: ``rnn`` (``nn.RNN`` with tanh, or ``nn.GRU``; batch first, one
    layer, starting from the zero state) and ``readout`` (hidden -> outputs) at every time step.

    ``model(inputs)``: inputs (trials, time, input_size) -> outputs (trials, time, output_size).
    ``model.rnn`` outputs the hidden trajectories (trials, time, hidden) (and the last state);
    :meth:`hidden_states` returns just the trajectories.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        recurrent = nn.RNN if cell == "rnn" else nn.GRU
        self.rnn = recurrent(input_size, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)

    def hidden_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """The hidden state after each step: (trials, time, input_size) -> (trials, time, hidden)."""
        states, _ = self.rnn(inputs)
        return states

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.readout(self.hidden_states(inputs))


def seeded_generator(seed: int, part: str) -> torch.Generator:
    """A fresh generator for one part of an entry (:data:`SEED_OFFSETS`): ``build``, ``train``, ``test``,
    ``probe`` or ``finder``."""
    return torch.Generator().manual_seed(seed * len(SEED_OFFSETS) + SEED_OFFSETS[part])


def build_model(seed: int, cell: str, input_size: int, hidden_size: int, output_size: int) -> RecurrentReadout:
    """A :class:`RecurrentReadout` initialised from ``seed`` (the global generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        # nn.RNN and nn.Linear draw their initial weights from the global generator
        torch.manual_seed(int(seeded_generator(seed, "build").initial_seed()))
        return RecurrentReadout(cell, input_size, hidden_size, output_size)


def cosine_learning_rate(step: int, steps: int, peak: float) -> float:
    """``peak`` decayed by half a cosine to 0 at ``steps``: large steps first, a settled network at the end."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * step / steps))


def analysed_copy(model: nn.Module) -> nn.Module:
    """A float64, eval-mode copy of ``model`` without gradients, to iterate as the fixed-point finder does."""
    copied = copy.deepcopy(model).double().eval()
    copied.requires_grad_(False)
    return copied


def trajectories(model: RecurrentReadout, inputs: torch.Tensor) -> np.ndarray:
    """The hidden trajectories of ``inputs`` (trials, time, input_size): (trials, time, hidden) float64."""
    with torch.no_grad():
        return analysed_copy(model).hidden_states(inputs.double()).numpy()


class RecurrentLab(Lab):
    """A :class:`RecurrentReadout` trained on a task of trials. Options ``cell`` (:data:`CELLS`) and ``hidden``
    units (at least ``min_hidden``). A subclass gives its task (:meth:`trials`), its training objective
    (:meth:`objective`) and checkpoint metrics (:meth:`metrics`), and its sizes (``size_settings``: each with
    ``steps`` and the fixed-point search's ``initial_states``)."""

    phase_curve: ClassVar[str] = "test_loss"
    phase_transform: ClassVar[str] = "log"
    reduce: ClassVar[str] = "last"  # the state at the last step of each probe trial
    size_settings: ClassVar[dict[str, Any]]
    input_size: ClassVar[int]
    output_size: ClassVar[int]
    min_hidden: ClassVar[int]
    min_hidden_reason: ClassVar[str] = ""
    batch: ClassVar[int] = 128  # fresh trials per Adam step
    test_trials: ClassVar[int] = 512  # the fixed held-out trials of the checkpoint metrics
    probe_trials: ClassVar[int] = 256  # recorded at each checkpoint; their trajectories seed the fixed-point search
    learning_rate: ClassVar[float]  # peak, cosine-decayed to 0: the last checkpoint is a settled network
    checkpoints: ClassVar[int] = 30  # log-spaced

    def __init__(self, size: str = "default", steps: int | None = None, seed: int = 0, **options: Any):
        super().__init__(size=size, steps=steps, seed=seed, **options)
        self.setting = self.size_settings[size]
        self.total_steps = steps if steps is not None else self.setting.steps
        self.cell = str(self.settings["cell"]).lower()
        if self.cell not in CELLS:
            raise NeurometryError(f"cell {self.settings['cell']!r} is not one of {', '.join(CELLS)}")
        try:
            self.hidden = int(self.settings["hidden"])
        except (TypeError, ValueError):
            raise NeurometryError(f"hidden {self.settings['hidden']!r} must be a whole number of units") from None
        if self.hidden < self.min_hidden:
            raise NeurometryError(f"hidden {self.hidden} must be at least {self.min_hidden} units{self.min_hidden_reason}")

    def build(self) -> nn.Module:
        return build_model(self.seed, self.cell, self.input_size, self.hidden, self.output_size)

    @abstractmethod
    def trials(self, generator: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` trials: inputs (count, time, input_size) and what the network is trained on."""

    @abstractmethod
    def objective(self, model: RecurrentReadout, inputs: torch.Tensor, targets: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss reported as ``train_loss``, what the step minimises) on one batch."""

    @abstractmethod
    def metrics(self, model: nn.Module, train_loss: float, inputs: torch.Tensor, targets: torch.Tensor
                ) -> dict[str, float]:
        """The checkpoint metrics: ``train_loss`` and the held-out trials' loss and accuracy."""

    def train(self, model: nn.Module, checkpoint: CheckpointCallback) -> None:
        steps = self.total_steps
        record_at = set(log_spaced_steps(steps, self.checkpoints))
        generator = seeded_generator(self.seed, "train")
        test_inputs, test_targets = self.trials(seeded_generator(self.seed, "test"), self.test_trials)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.learning_rate)
        for step in range(steps + 1):
            inputs, targets = self.trials(generator, self.batch)
            model.train()
            loss, minimised = self.objective(model, inputs, targets)
            if step in record_at:
                # train_loss is this fresh batch's loss before the step's update
                checkpoint(step, self.metrics(model, loss.item(), test_inputs, test_targets))
            if step == steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(step, steps, self.learning_rate)
            optimizer.zero_grad(set_to_none=True)
            minimised.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
            optimizer.step()

    def search_starts(self, model: RecurrentReadout) -> tuple[np.ndarray, np.ndarray, int]:
        """The fixed-point search's start: the probe trials' trajectories (trials, time, hidden), the
        ``initial_states`` states sampled from them (seeded) and the finder's seed."""
        finder_seed = int(seeded_generator(self.seed, "finder").initial_seed())
        states = trajectories(model, self.probe_data().inputs)
        return states, sample_states(states, self.setting.initial_states, seed=finder_seed), finder_seed
