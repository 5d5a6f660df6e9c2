"""The 3-bit flip-flop: a recurrent network that holds three bits keeps one stable fixed point per memory
state, with saddle points between neighbouring memories.

Sussillo & Barak (2013), "Opening the black box: low-dimensional dynamics in high-dimensional recurrent
neural networks" (Neural Computation 25(3)). Each of three input channels emits sparse +1/-1 pulses; the
matching output channel must hold the sign of its last pulse. After training, minimising
q(h) = 1/2 ||F(h, 0) - h||^2 from states of the network's own trajectories (zero input: between pulses)
finds 8 stable fixed points, one per memory state (the corners of a cube in the readout's three outputs),
and saddle points between them whose one unstable direction leads to two memories that differ in one bit:
the separatrices a pulse pushes the state across.

Here: a tanh RNN (``cell="rnn"``, the paper's kind of network; ``cell="gru"`` for a GRU) of ``hidden``
units (24) and a linear readout to 3 outputs, trained on the squared error to the +/-1 targets at every
time step with Adam (cosine-decayed learning rate, gradient norm clipped at 1) on fresh seeded batches of
trials. Every channel pulses at the first step, so every step has a target; later pulses come with
probability 0.05 per step and channel. The fixed points are found with
:func:`neurometry.dynamics.fixed_points.find_fixed_points` from states of the probe trials' trajectories,
moved by Gaussian noise so that initial states also start between the memories (where the saddles are).
Each stable point is named by the signs of the 3 outputs its state gives through the readout (its memory
state); each saddle with one unstable direction is followed along that direction both ways (iterating the
network from the saddle +/- a small step at zero input) to the two memories it separates.

What differs from the paper: their network is a continuous-time tanh RNN of 1,000 units driven by pulses
on a 1-ms grid; this one is a discrete-time RNN of 24 units, small enough to train on a CPU in seconds. The
fixed-point search finds the full cube of 27 = 3^3 points (at every test-size seed measured, see
docs/recurrent.md): 8 stable corners, 12 saddles on its edges (one unstable direction each, the
ones the paper describes), and saddles at the centres of its 6 faces (two unstable directions) and at its
centre (three).

What it shares with :mod:`neurometry.lab.integrator` (the model, the training loop, the per-part seeding)
is in :mod:`neurometry.lab.recurrent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional

from neurometry.dynamics.fixed_points import FixedPoints, find_fixed_points
from neurometry.errors import NeurometryError
from neurometry.lab.base import ProbeData
from neurometry.lab.recurrent import RecurrentLab, RecurrentReadout, analysed_copy, seeded_generator

BITS = 3
TIME_STEPS = 50  # per trial; with pulses every 20 steps on average, each bit flips about twice a trial
PULSE_PROBABILITY = 0.05  # per step and channel, after the pulses of the first step
# initial states: probe-trajectory states moved by Gaussian noise of this standard deviation. Trajectories
# spend most steps at the memories; the noise starts states between them too, where the saddles are. The
# GRU gets less: at 0.5 its search also found 1-3 extra stable points repeating a memory (seeds 0, 1).
FINDER_NOISE = {"rnn": 0.5, "gru": 0.2}
SADDLE_STEP = 0.01  # how far from a saddle, along its unstable eigenvector, the flow to a memory starts
SADDLE_FLOW_STEPS = 300  # zero-input steps from there; the unstable eigenvalue is 1.1-1.4, so ample
RESOLVED_OUTPUT = 0.5  # a flow has reached a memory when each output is at least this far from 0


@dataclass(frozen=True)
class FlipFlopSize:
    """One size of the entry: Adam steps and initial states of the fixed-point search (the model and task are
    the same at every size)."""

    steps: int
    initial_states: int


SIZE_SETTINGS = {
    "default": FlipFlopSize(steps=3000, initial_states=2048),
    "test": FlipFlopSize(steps=1000, initial_states=1024),
}


def signs(outputs: np.ndarray) -> list[str]:
    """Each row of ``outputs`` (n, channels) as a string of its signs, e.g. ``"+-+"``: a memory state."""
    return ["".join("+" if value > 0 else "-" for value in row) for row in outputs]


def flip_flop_trials(generator: torch.Generator, trials: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (trials, TIME_STEPS, BITS) of +1/-1 pulses (0 elsewhere) and targets (trials, TIME_STEPS,
    BITS): the sign of the channel's last pulse. Every channel pulses at step 0, so every step has a target;
    after that each pulses with probability PULSE_PROBABILITY per step, with a random sign."""
    shape = (trials, TIME_STEPS, BITS)
    pulses = torch.rand(shape, generator=generator) < PULSE_PROBABILITY
    pulses[:, 0] = True
    pulse_signs = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
    inputs = pulses * pulse_signs
    targets = inputs.clone()
    for step in range(1, TIME_STEPS):
        targets[:, step] = torch.where(pulses[:, step], inputs[:, step], targets[:, step - 1])
    return inputs, targets


def bit_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The share of (trial, step, channel) whose output has the target's sign."""
    return float(((outputs > 0) == (targets > 0)).double().mean())


def memory_flow(model: RecurrentReadout, starts: np.ndarray, steps: int) -> np.ndarray:
    """The readout's outputs (n, channels) after iterating the network ``steps`` times at zero input from
    ``starts`` (n, hidden), in float64."""
    copied = analysed_copy(model)
    start = torch.as_tensor(starts, dtype=torch.float64)
    zeros = torch.zeros(len(start), steps, copied.rnn.input_size, dtype=torch.float64)
    with torch.no_grad():
        states, _ = copied.rnn(zeros, start[None].contiguous())
        return copied.readout(states[:, -1]).numpy()


def saddle_links(model: RecurrentReadout, saddles: FixedPoints) -> list[tuple[str, str] | None]:
    """For each saddle (with one unstable direction), the two memories its unstable manifold leads to: the
    network iterated at zero input from the saddle +/- SADDLE_STEP along the unstable eigenvector, each end
    named by its outputs' signs (sorted pair); None where an end has not reached a memory (an output within
    RESOLVED_OUTPUT of 0)."""
    if len(saddles) == 0:
        return []
    direction = saddles.eigenvectors[:, :, 0].real  # the eigenvalue of largest |lambda|: the unstable one
    direction = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    starts = np.concatenate([saddles.states + SADDLE_STEP * direction, saddles.states - SADDLE_STEP * direction])
    ends = memory_flow(model, starts, SADDLE_FLOW_STEPS)
    resolved = np.abs(ends).min(axis=1) >= RESOLVED_OUTPUT
    names = signs(ends)
    count = len(saddles)
    return [
        tuple(sorted((names[i], names[i + count]))) if resolved[i] and resolved[i + count] else None
        for i in range(count)
    ]


def bits_apart(first: str, second: str) -> int:
    """In how many bits two memory states (sign strings) differ."""
    return sum(a != b for a, b in zip(first, second, strict=True))


class FlipFlopLab(RecurrentLab):
    """A recurrent network holding 3 bits, and the fixed points of its dynamics (Sussillo & Barak 2013).

    Options: ``cell`` ("rnn", a tanh RNN, or "gru") and ``hidden`` units (24). Checkpoint metrics:
    ``train_loss`` (the batch's squared error before the update), ``test_loss`` and ``bit_accuracy`` on
    ``test_trials`` held-out trials. Findings: see :meth:`findings`.
    """

    name: ClassVar[str] = "flipflop"
    title: ClassVar[str] = (
        "3-bit flip-flop RNN: 8 stable fixed points, one per memory, and saddles between them "
        "(Sussillo & Barak 2013, Opening the black box)"
    )
    options: ClassVar[dict[str, Any]] = {"cell": "rnn", "hidden": 24}
    size_settings: ClassVar[dict[str, FlipFlopSize]] = SIZE_SETTINGS
    input_size: ClassVar[int] = BITS
    output_size: ClassVar[int] = BITS
    min_hidden: ClassVar[int] = BITS
    min_hidden_reason: ClassVar[str] = " (one per bit)"
    learning_rate: ClassVar[float] = 1e-2  # the bits are learnt within the first few hundred steps

    def points(self) -> dict[str, str]:
        return {"hidden": "rnn", "output": "readout"}

    def probe_data(self) -> ProbeData:
        """``probe_trials`` seeded trials (probe_trials, TIME_STEPS, BITS). Metadata: ``memory`` (the targets'
        signs at the last step, e.g. "+-+"), ``bit0``..``bit2`` (those targets, +1/-1) and ``pulses`` (the
        trial's pulses after step 0)."""
        inputs, targets = flip_flop_trials(seeded_generator(self.seed, "probe"), self.probe_trials)
        last = targets[:, -1].numpy()
        metadata = pd.DataFrame({
            "memory": signs(last),
            **{f"bit{bit}": last[:, bit].astype(int) for bit in range(BITS)},
            "pulses": (inputs[:, 1:] != 0).sum(dim=(1, 2)).numpy().astype(int),
        })
        return ProbeData(inputs, metadata)

    def trials(self, generator: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        return flip_flop_trials(generator, count)

    def objective(self, model: RecurrentReadout, inputs: torch.Tensor, targets: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        loss = functional.mse_loss(model(inputs), targets)
        return loss, loss

    def metrics(self, model: nn.Module, train_loss: float, inputs: torch.Tensor, targets: torch.Tensor
                ) -> dict[str, float]:
        with torch.no_grad():
            outputs = model(inputs)
        return {
            "train_loss": train_loss,
            "test_loss": float(functional.mse_loss(outputs, targets)),
            "bit_accuracy": bit_accuracy(outputs, targets),
        }

    def fixed_points(self, model: RecurrentReadout) -> FixedPoints:
        """The fixed and slow points at zero input, from ``initial_states`` states of the probe trials'
        trajectories moved by FINDER_NOISE[cell] (seeded)."""
        _, initial, finder_seed = self.search_starts(model)
        return find_fixed_points(model, initial, noise=FINDER_NOISE[self.cell], seed=finder_seed)

    def findings(self, model: nn.Module, results: list[dict[str, float]]) -> dict[str, Any]:
        """``bit_accuracy`` (the last checkpoint's); of the fixed points (q < 1e-12, not outliers) at zero
        input: ``stable_fixed_points`` and ``memory_states`` (the distinct output signs of the stable ones,
        sorted), ``saddle_points`` and ``unstable_directions_per_saddle`` (sorted); ``edge_saddles`` (saddles
        with one unstable direction whose two ends reach memories one bit apart), ``edges_linked`` (the
        distinct memory pairs they link; a cube has 12 edges) and ``saddle_links`` (each one-direction saddle's
        pair of memories, or None where a flow did not settle); ``unstable_points`` (every direction
        unstable), ``slow_points`` (q below 1e-4 only) and ``outlier_points``, and the search's
        ``initial_states`` and ``finder_noise``."""
        if not results:
            raise NeurometryError("flipflop findings need the checkpoint records; train this lab first")
        found = self.fixed_points(model)
        fixed = found.select((found.kind == "fixed") & ~found.outlier)
        stable = fixed.select(fixed.stability == "stable")
        saddles = fixed.select(fixed.stability == "saddle")
        with torch.no_grad():
            memory_outputs = model.readout(torch.as_tensor(stable.states, dtype=torch.float32)).numpy()
        one_direction = saddles.select(saddles.unstable_directions == 1)
        links = saddle_links(model, one_direction)
        edges = [link for link in links if link is not None and bits_apart(*link) == 1]
        return {
            "bit_accuracy": results[-1]["bit_accuracy"],
            "stable_fixed_points": len(stable),
            "memory_states": sorted(set(signs(memory_outputs))),
            "saddle_points": len(saddles),
            "unstable_directions_per_saddle": sorted(int(n) for n in saddles.unstable_directions),
            "edge_saddles": len(edges),
            "edges_linked": len(set(edges)),
            "saddle_links": [list(link) if link is not None else None for link in links],
            "unstable_points": int((fixed.stability == "unstable").sum()),
            "slow_points": int(((found.kind == "slow") & ~found.outlier).sum()),
            "outlier_points": int(found.outlier.sum()),
            "initial_states": found.n_initial,
            "finder_noise": FINDER_NOISE[self.cell],
        }

    def describe(self, findings: dict[str, Any]) -> list[str]:
        directions = findings["unstable_directions_per_saddle"]
        counts = ", ".join(f"{directions.count(n)} with {n}" for n in sorted(set(directions))) or "none"
        return [
            f"bit accuracy {findings['bit_accuracy']:.4f} on held-out trials",
            f"{findings['stable_fixed_points']} stable fixed points at zero input, memories "
            f"{', '.join(findings['memory_states'])} ({len(findings['memory_states'])} of {2**BITS})",
            f"{findings['saddle_points']} saddle points, unstable directions: {counts}",
            f"{findings['edge_saddles']} one-direction saddles lead to two memories one bit apart, linking "
            f"{findings['edges_linked']} of the cube's 12 edges",
            f"{findings['slow_points']} slow points, {findings['unstable_points']} fully unstable, "
            f"{findings['outlier_points']} outliers, from {findings['initial_states']} initial states",
        ]
