"""The contract of a lab entry: a seeded toy model, the inputs it is recorded on, its training loop and
what it finds.

A lab entry knows nothing about stores or files: ``neurometry.workflows.lab`` builds the model, calls
:meth:`Lab.train`, and at every checkpoint the entry reports (``checkpoint(step, metrics)``) saves the
weights as safetensors, records :meth:`Lab.points` over :meth:`Lab.probe_data` into the lab's series and
keeps the metrics; after training it asks :meth:`Lab.findings` for the headline numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.training import Phases

SIZES = ("default", "test")

# called by Lab.train at each checkpoint: (step, metrics such as train_loss, test_loss, train_accuracy,
# test_accuracy and the lab's own progress measures, all plain floats)
CheckpointCallback = Callable[[int, dict[str, float]], None]


def log_spaced_steps(steps: int, count: int) -> list[int]:
    """Step 0, then about ``count`` steps log-spaced from 1 to ``steps`` (always included; fewer where they round
    to the same step): the first tens of steps and the last thousands are both resolved."""
    spaced = np.unique(np.round(np.geomspace(1, steps, count)).astype(int))
    return [0, *(int(step) for step in spaced if step < steps), steps]


def as_bool(value: Any) -> bool:
    """An option's truth value: booleans as they are, strings such as "false", "0", "no" as False."""
    if isinstance(value, str):
        if value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if value.strip().lower() in ("false", "0", "no", "off"):
            return False
        raise NeurometryError(f"option value {value!r} is not true or false")
    return bool(value)


@dataclass(frozen=True)
class ProbeData:
    """What each checkpoint is recorded on: ``inputs`` (rows, ...) exactly as ``model(inputs)`` takes them,
    and ``metadata``, one row per input (labels, operands: what a reader groups rows by)."""

    inputs: torch.Tensor
    metadata: pd.DataFrame

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.metadata):
            raise ValueError(f"{len(self.inputs)} probe inputs for {len(self.metadata)} metadata rows")


@dataclass(frozen=True)
class LabPhases:
    """The phases a lab reports: found on ``curve`` (a metric, or one derived from them, named so) at ``steps``."""

    curve: str
    phases: Phases
    steps: list[float]
    values: list[float]


class Lab(ABC):
    """One lab entry. Subclasses set the class attributes and implement the five methods.

    ``size``: ``default`` (under 5 minutes on 2 cores) or ``test`` (under 1 minute, for the tests);
    ``steps``: training steps (None: the size's own); ``seed``: every random choice (data split,
    initialisation, batches) follows from it; ``options``: the entry's own settings (e.g. ``sweep``).
    """

    name: ClassVar[str]
    title: ClassVar[str]  # one line: the task and the paper it reproduces
    phase_curve: ClassVar[str]  # the metric (a key of the checkpoint metrics) whose phases the lab reports
    phase_transform: ClassVar[str] = "log"  # "log" for losses, "none" for curves that are not positive
    reduce: ClassVar[str] = "none"  # how a point's (inputs, positions, width) output becomes rows: none|last
    options: ClassVar[dict[str, Any]] = {}  # the entry's own options and their defaults

    def __init__(self, size: str = "default", steps: int | None = None, seed: int = 0, **options: Any):
        if size not in SIZES:
            raise NeurometryError(f"lab size {size!r} is not one of {', '.join(SIZES)}")
        if steps is not None and steps < 1:
            raise NeurometryError(f"--steps {steps} must be at least 1")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise NeurometryError(f"lab {self.name} has no option {unknown[0]!r} (its options: {known})")
        self.size = size
        self.steps = steps
        self.seed = seed
        self.settings = {**self.options, **options}

    @abstractmethod
    def build(self) -> nn.Module:
        """A freshly initialised model, seeded by ``self.seed`` (the same model every call)."""

    @abstractmethod
    def points(self) -> dict[str, str]:
        """Points to record, alias -> module path in ``build()``'s model, in depth order. Each module's output
        is a tensor of (inputs, width) or, with ``reduce = "last"``, (inputs, positions, width)."""

    @abstractmethod
    def probe_data(self) -> ProbeData:
        """The inputs every checkpoint is recorded on (the same each call)."""

    @abstractmethod
    def train(self, model: nn.Module, checkpoint: CheckpointCallback) -> None:
        """Train ``model`` in place, calling ``checkpoint(step, metrics)`` at each checkpoint: first at step 0
        (before any update), last at the final step, with steps strictly increasing. The callback may run
        the model (under ``torch.no_grad``, in eval mode, which it restores); it must not change it."""

    @abstractmethod
    def findings(self, model: nn.Module, results: list[dict[str, float]]) -> dict[str, Any]:
        """The headline numbers (JSON-ready, self-explaining names) from the trained ``model`` and the
        checkpoint records ``results`` (each ``{"step": ..., **metrics}``, in step order)."""

    def phases(self, results: list[dict[str, float]]) -> LabPhases | None:
        """The phases the paper describes, when the lab finds them its own way (on a derived curve, or with a
        fixed number of changes); None (the default) lets the runner find PELT phases of ``phase_curve``."""
        return None

    def describe(self, findings: dict[str, Any]) -> list[str]:
        """Lines saying what was found, for people; the default lists the findings."""
        return [f"{key}: {value}" for key, value in findings.items()]
