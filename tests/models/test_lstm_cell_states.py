"""An LSTM's cell state at every step (``PATH.cell`` points): equal to the c an ``nn.LSTM`` returns when it is
stepped one time step at a time, for one and two layers, either batch layout and a given initial state; and
recorded as rows per time step like the hidden state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurometry import NeurometryError, open_store, record
from neurometry.models.hooks import capture
from neurometry.models.load import wrap_module
from neurometry.models.lstm import lstm_cell_states

TRIALS, TIME, INPUTS, HIDDEN = 5, 7, 3, 4


def stepped_cells(lstm: nn.LSTM, sequence: torch.Tensor, state=None) -> torch.Tensor:
    """c of the last layer after each step, from the module itself run one step at a time (batch first)."""
    cells = []
    for t in range(sequence.shape[1]):
        step = sequence[:, t : t + 1] if lstm.batch_first else sequence[:, t : t + 1].transpose(0, 1)
        _, state = lstm(step, state)
        cells.append(state[1][-1])
    return torch.stack(cells, dim=1)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False])
def test_cell_states_equal_the_lstm_stepped_one_step_at_a_time(layers, batch_first):
    torch.manual_seed(layers)
    lstm = nn.LSTM(INPUTS, HIDDEN, num_layers=layers, batch_first=batch_first).double().eval()
    sequence = torch.randn(TRIALS, TIME, INPUTS, dtype=torch.float64)
    given = sequence if batch_first else sequence.transpose(0, 1)
    initial = (torch.randn(layers, TRIALS, HIDDEN, dtype=torch.float64),
               torch.randn(layers, TRIALS, HIDDEN, dtype=torch.float64))
    for state in (None, initial):
        args = (given,) if state is None else (given, state)
        with torch.no_grad():
            np.testing.assert_allclose(lstm_cell_states(lstm, args), stepped_cells(lstm, sequence, state), atol=1e-12)


class LSTMToy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(INPUTS, HIDDEN, num_layers=2, batch_first=True)
        self.readout = nn.Linear(HIDDEN, 2)
        self.example_input = torch.zeros(1, TIME, INPUTS)

    def forward(self, x):
        return self.readout(self.rnn(x)[0])


def test_a_recorded_lstm_stores_its_cell_state_per_step_beside_its_hidden_state(tmp_path):
    inputs = np.random.default_rng(1).normal(size=(TRIALS, TIME, INPUTS)).astype(np.float32)
    np.save(tmp_path / "trials.npy", inputs)
    module = LSTMToy().eval()
    loaded = wrap_module(module, "lstm-toy")
    assert loaded.points["rnn.cell"].capture == "cell_states"
    assert [p.name for p in loaded.resolve(["readout", "rnn.cell", "rnn"])] == ["rnn", "rnn.cell", "readout"]
    record(loaded, tmp_path / "trials.npy", ["rnn", "rnn.cell"], tmp_path / "s", reduce="steps", batch_size=2,
           progress=False)
    store = open_store(tmp_path / "s")
    with torch.no_grad():
        hidden = module.rnn(torch.from_numpy(inputs))[0]
        cells = stepped_cells(module.rnn, torch.from_numpy(inputs))
    np.testing.assert_allclose(store.activations("rnn"), hidden.reshape(-1, HIDDEN).numpy(), atol=1e-6)
    np.testing.assert_allclose(store.activations("rnn.cell"), cells.reshape(-1, HIDDEN).numpy(), atol=1e-6)
    np.testing.assert_array_equal(store.metadata()["time"], np.tile(np.arange(TIME), TRIALS))
    store.close()


def test_a_cell_state_cannot_be_edited_and_a_bidirectional_lstm_has_none():
    loaded = wrap_module(LSTMToy(), "lstm-toy")
    handle = loaded.points["rnn.cell"].attach(loaded.module, lambda tensor: tensor * 0)
    with pytest.raises(NeurometryError, match="cannot be edited"):
        loaded.module(torch.zeros(1, TIME, INPUTS))
    handle.remove()
    _, captured = capture(loaded, torch.zeros(2, TIME, INPUTS), [loaded.points["rnn.cell"]])
    assert captured["rnn.cell"].shape == (2, TIME, HIDDEN)
    both_ways = nn.Module()
    both_ways.rnn = nn.LSTM(INPUTS, HIDDEN, bidirectional=True, batch_first=True)
    both_ways.example_input = torch.zeros(1, TIME, INPUTS)
    both_ways.forward = lambda x: both_ways.rnn(x)[0]
    assert "rnn.cell" not in wrap_module(both_ways, "both").points
