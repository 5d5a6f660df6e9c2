"""An LSTM's cell state at every time step, which ``nn.LSTM`` computes but returns only for the last step.

Recording a recurrent model's trajectory (issue 19) stores its hidden state per step from the module's
output; an LSTM's memory also lives in its cell state c_t, so :func:`lstm_cell_states` re-runs the
module's own equations (torch's ``nn.LSTM`` definition, Hochreiter & Schmidhuber 1997 with forget gate)
on the inputs the module saw, and returns c_t of its last layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurometry.errors import NeurometryError


def cell_state_supported(lstm: nn.Module) -> bool:
    """Whether :func:`lstm_cell_states` can unroll ``lstm``: a one-directional ``nn.LSTM`` without
    projections (a bidirectional one's cell state runs both ways; a projected one's is not its output's)."""
    return isinstance(lstm, nn.LSTM) and not lstm.bidirectional and not lstm.proj_size


def lstm_cell_states(lstm: nn.LSTM, args: tuple[Any, ...]) -> torch.Tensor:
    """The last layer's cell state after each step, (batch, time, hidden), batch first whatever
    ``lstm.batch_first`` says, from the positional arguments ``args`` the module was called with
    (``input`` of (batch, time, input) or (time, batch, input), and optionally ``(h_0, c_0)`` of
    (layers, batch, hidden)). Dropout between layers is not applied: call it on a model in eval mode."""
    if not cell_state_supported(lstm):
        raise NeurometryError("cell states are recorded for one-directional nn.LSTM modules without proj_size")
    sequence = args[0] if args else None
    if not isinstance(sequence, torch.Tensor) or sequence.dim() != 3:
        raise NeurometryError("an LSTM's cell states are recorded for batched (3-D) tensor inputs, not packed "
                              "or unbatched sequences")
    if not lstm.batch_first:
        sequence = sequence.transpose(0, 1)
    batch, time, _ = sequence.shape
    hidden = lstm.hidden_size
    given = args[1] if len(args) > 1 else None
    zeros = sequence.new_zeros(lstm.num_layers, batch, hidden)
    h0, c0 = given if given is not None else (zeros, zeros)
    layer_input = sequence
    for layer in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        bias = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")) if lstm.bias else 0.0
        driven = layer_input @ w_ih.T + bias  # (batch, time, 4 hidden): the input's share of every gate, at once
        h, c = h0[layer], c0[layer]
        hiddens, cells = [], []
        for t in range(time):
            gates = driven[:, t] + h @ w_hh.T
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
            c = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            h = torch.sigmoid(out_gate) * torch.tanh(c)
            hiddens.append(h)
            cells.append(c)
        layer_input = torch.stack(hiddens, dim=1)
    return torch.stack(cells, dim=1)


def cell_state_point_names(root: nn.Module) -> dict[str, str]:
    """``{point name: module path}`` of the cell-state points of ``root``'s LSTMs: ``PATH.cell``
    (``cell`` for a root that is itself an LSTM)."""
    return {f"{path}.cell" if path else "cell": path
            for path, module in root.named_modules() if cell_state_supported(module)}
