"""A recurrent model as the map its state follows, h_next = F(h, x), batched on torch.

Fixed points, Jacobians and Lyapunov spectra all need the same thing from a model: one step of its state
for a batch of states and inputs. :func:`recurrent_map` builds it from ``nn.RNN``/``nn.GRU``/``nn.LSTM``
(one or more layers; the state is every layer's hidden state, and for an LSTM its cell state too, in that
order), from their ``*Cell`` versions, from a model holding exactly one of those (or naming it by path),
or from any function ``F(h, x) -> h``. A continuous-time rate network gives ``F(h, x) = dh/dt`` and is
marked ``continuous=True``: its fixed points are zeros of F, its stability read from Re(lambda).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from neurometry.errors import NeurometryError

RECURRENT_MODULES = (nn.RNNBase, nn.RNNCellBase)


@dataclass(frozen=True)
class RecurrentMap:
    """One step of a recurrent system: ``step(h, x)``, states (n, state_size) and inputs (n, input_size) to
    the next states (n, state_size), or to dh/dt when ``continuous``. ``name`` says what it was built from."""

    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    state_size: int
    input_size: int
    continuous: bool = False
    name: str = "F"
    dtype: torch.dtype = torch.float32  # what step computes in (a module's parameters')

    def velocity(self, states: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """F(h, x) - h for a map, F(h, x) for a flow: zero exactly at fixed points. (n, state_size)."""
        moved = self.step(states, inputs)
        return moved if self.continuous else moved - states

    def check_inputs(self, inputs: torch.Tensor) -> None:
        if inputs.shape[-1] != self.input_size:
            raise NeurometryError(
                f"the inputs have {inputs.shape[-1]} features, but {self.name} takes {self.input_size}; give "
                f"inputs of shape (..., {self.input_size})"
            )


def recurrent_map(
    model: nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    module: str | None = None,
    state_size: int | None = None,
    input_size: int | None = None,
    continuous: bool = False,
    dtype: torch.dtype = torch.float32,
) -> RecurrentMap:
    """The map ``h_next = F(h, x)`` of ``model``.

    ``model``: an ``nn.RNN``/``GRU``/``LSTM`` or ``*Cell``; a model holding exactly one of them (``module``
    names it by path when it holds several); or a callable ``F(h, x)`` on (n, state) and (n, inputs)
    tensors, with ``state_size`` and ``input_size`` given (``continuous=True`` when it returns dh/dt; ``dtype``
    the precision it computes in).
    A bidirectional RNN is refused: its state at t depends on later inputs, so it is not a dynamical system.
    """
    if isinstance(model, nn.Module) and not isinstance(model, RECURRENT_MODULES) and state_size is None:
        model = _find_recurrent(model, module)
    if isinstance(model, nn.RNNBase):
        return _sequence_map(model)
    if isinstance(model, nn.RNNCellBase):
        return _cell_map(model)
    if state_size is None or input_size is None:
        raise NeurometryError(
            "a recurrent function F(h, x) needs state_size and input_size; or give an nn.RNN, nn.GRU, nn.LSTM "
            "(or a model holding one)"
        )
    return RecurrentMap(model, int(state_size), int(input_size), continuous, getattr(model, "__name__", "F"), dtype)


def _find_recurrent(model: nn.Module, path: str | None) -> nn.Module:
    if path is not None:
        try:
            found = model.get_submodule(path)
        except AttributeError:
            raise NeurometryError(f"the model has no module {path!r}; give the path of its RNN, GRU or LSTM") from None
        if not isinstance(found, RECURRENT_MODULES):
            raise NeurometryError(f"module {path!r} is a {type(found).__name__}, not an RNN, GRU or LSTM (or cell)")
        return found
    candidates = [(name, m) for name, m in model.named_modules() if isinstance(m, RECURRENT_MODULES)]
    if not candidates:
        raise NeurometryError(
            f"{type(model).__name__} has no recurrent module (nn.RNN, GRU, LSTM or a cell): it has no state to "
            "iterate; for a custom cell give its F(h, x) with state_size and input_size"
        )
    if len(candidates) > 1:
        names = ", ".join(name for name, _ in candidates)
        raise NeurometryError(f"the model holds several recurrent modules ({names}); name one with module=")
    return candidates[0][1]


def _sequence_map(rnn: nn.RNNBase) -> RecurrentMap:
    if rnn.bidirectional:
        raise NeurometryError("a bidirectional RNN reads its inputs backwards too: it has no forward dynamics to analyse")
    if getattr(rnn, "proj_size", 0):
        raise NeurometryError("an LSTM with proj_size is not supported; analyse one without projections")
    layers, hidden = rnn.num_layers, rnn.hidden_size
    lstm = isinstance(rnn, nn.LSTM)

    def step(states: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        n = states.shape[0]
        per_layer = states.reshape(n, (2 if lstm else 1) * layers, hidden).transpose(0, 1)  # (layers[*2], n, hidden)
        initial = (per_layer[:layers].contiguous(), per_layer[layers:].contiguous()) if lstm else per_layer.contiguous()
        sequence = inputs[:, None, :] if rnn.batch_first else inputs[None, :, :]
        _, last = rnn(sequence, initial)
        stacked = torch.cat(last, dim=0) if lstm else last
        return stacked.transpose(0, 1).reshape(n, -1)

    size = (2 if lstm else 1) * layers * hidden
    return RecurrentMap(step, size, rnn.input_size, False, type(rnn).__name__, _dtype(rnn))


def _cell_map(cell: nn.RNNCellBase) -> RecurrentMap:
    hidden = cell.hidden_size
    if isinstance(cell, nn.LSTMCell):
        def step(states: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
            h, c = cell(inputs, (states[:, :hidden], states[:, hidden:]))
            return torch.cat([h, c], dim=1)

        return RecurrentMap(step, 2 * hidden, cell.input_size, False, "LSTMCell", _dtype(cell))
    return RecurrentMap(lambda states, inputs: cell(inputs, states), hidden, cell.input_size, False,
                        type(cell).__name__, _dtype(cell))


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def analysed_map(model: nn.Module | RecurrentMap, module: str | None = None) -> RecurrentMap:
    """What the analyses iterate: a :class:`RecurrentMap` as given, or the map of a float64 copy of a module
    (in eval mode, gradients off), so the analysis neither rounds in float32 nor touches the model."""
    if isinstance(model, RecurrentMap):
        return model
    if not isinstance(model, nn.Module):
        raise NeurometryError("give an nn.Module (an RNN, GRU, LSTM or a model holding one) or a RecurrentMap")
    copied = copy.deepcopy(model).double().eval()
    copied.requires_grad_(False)
    return recurrent_map(copied, module=module)


def trajectories(dynamics: RecurrentMap, inputs: torch.Tensor, initial_states: torch.Tensor | None = None) -> torch.Tensor:
    """The states ``dynamics`` passes through when driven by ``inputs`` (trials, time, input) from
    ``initial_states`` (trials, state; default zeros): (trials, time, state), the state after each step. For a
    multi-layer RNN or an LSTM this is the whole state (every layer, and the cell state), which a recorded
    module output (the last layer's hidden state) is only part of. A flow is not stepped here."""
    if dynamics.continuous:
        raise NeurometryError("trajectories steps maps; integrate a flow with its own solver")
    inputs = torch.as_tensor(inputs, dtype=dynamics.dtype)
    if inputs.ndim != 3:
        raise NeurometryError(f"inputs have shape {tuple(inputs.shape)}; give (trials, time, {dynamics.input_size})")
    dynamics.check_inputs(inputs)
    trials, time, _ = inputs.shape
    state = (torch.zeros(trials, dynamics.state_size, dtype=dynamics.dtype) if initial_states is None
             else torch.as_tensor(initial_states, dtype=dynamics.dtype))
    visited = []
    with torch.no_grad():
        for t in range(time):
            state = dynamics.step(state, inputs[:, t])
            visited.append(state)
    return torch.stack(visited, dim=1)
