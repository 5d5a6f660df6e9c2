"""Shared fixtures: thread counts pinned (2-core shared machines), small data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KRIEGESKORTE_MAT = SHARED_DATA / "kriegeskorte92" / "Kriegeskorte_Neuron2008_supplementalData.mat"

SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog near the river bank today.",
    "Hello!",
    "Neural networks learn layered representations of their inputs.",
    "It rained all afternoon, so we stayed inside and read.",
    "Short one.",
    "The orchestra played the final movement with remarkable energy and precision.",
    "Why?",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


TENSE_WORDS = ["red", "blue", "green", "small", "large", "quiet", "bright", "old"]


def write_tense_sentences(path: Path) -> Path:
    """40 templated sentences "the {a} cat saw a {b} dog" (8 x 5 adjectives) with a ``tense`` label
    alternating past/present: the shared data of the report and dashboard tests."""
    rows = [
        {"text": f"the {a} cat saw a {b} dog", "tense": "past" if i % 2 else "present"}
        for i, (a, b) in enumerate((a, b) for a in TENSE_WORDS for b in TENSE_WORDS[:5])
    ]
    return write_jsonl(path, rows)


@pytest.fixture
def sentences_file(tmp_path: Path) -> Path:
    rows = [{"text": t, "label": i % 2, "id": f"r{i}"} for i, t in enumerate(SENTENCES)]
    return write_jsonl(tmp_path / "sentences.jsonl", rows)


def write_planted_finetune(folder: Path) -> tuple[Path, Path]:
    """A planted finetune of the tiny seeded Llama as a .safetensors state dict (only layer 1's MLP output
    changes, by a seeded rank-one update) and a file of three unrelated texts; returns both paths."""
    from safetensors.torch import save_file

    from neurometry.models.tiny import tiny_llama

    fine = tiny_llama()  # the same seeded weights as the base loads
    down = fine.module.model.layers[1].mlp.down_proj
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        down.weight += torch.outer(
            torch.randn(down.out_features, generator=generator),
            torch.randn(down.in_features, generator=generator),
        )
    weights = folder / "fine.safetensors"
    save_file({k: t.detach().clone().contiguous() for k, t in fine.module.state_dict().items()}, str(weights))
    texts = folder / "texts.txt"
    texts.write_text("the cat sat on the mat\na dog ran in the park\nsome words about nothing\n")
    return weights, texts


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A folder with x.npy (40 x 6 normal rows), rows.csv (label a/b) and store/, x imported as point p
    with that metadata: the smallest store the commands' argument checks run on."""
    import numpy as np
    import pandas as pd

    from neurometry.cli import main

    root = tmp_path_factory.mktemp("small_store")
    rng = np.random.default_rng(0)
    np.save(root / "x.npy", rng.normal(size=(40, 6)))
    pd.DataFrame({"label": ["a", "b"] * 20}).to_csv(root / "rows.csv", index=False)
    argv = ["import", str(root / "x.npy"), "--point", "p", "--out", str(root / "store"),
            "--metadata", str(root / "rows.csv")]
    assert main(argv) == 0
    return root


@pytest.fixture
def run_cli(capsys):
    """``run_cli("record", ...)``: the CLI in this process (fast), as a ``CompletedProcess`` with its exit code,
    stdout and stderr; arguments may be paths."""
    import subprocess

    from neurometry.cli import main

    def run(*args) -> subprocess.CompletedProcess:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def train_series(store: Path, series: str, steps: int, seed: int) -> None:
    """A seeded MLP trained for ``steps`` SGD steps on a linear rule, recorded at every step with the live
    Recorder over 64 probe inputs (with a ``label`` column), its loss saved as training metrics: the series
    the report's and the dashboard's Over training tests read."""
    import pandas as pd
    from torch import nn

    from neurometry.record.live import Recorder
    from neurometry.store import open_store
    from neurometry.workflows.series import save_training_metrics

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(seed))
    y = (x[:, 0] > 0).long()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    probe = (x, pd.DataFrame({"label": y.numpy()}))
    with Recorder(model, {"hidden.0": "1", "hidden.1": "3"}, probe, store, every=1, series=series) as recorder:
        for step in range(steps):
            loss = nn.functional.cross_entropy(model(x), y)
            if recorder.step(step):
                opened = open_store(store)
                save_training_metrics(opened, series, opened.series_of(recorder.runs[-1]),
                                      {"train_loss": loss.item(), "test_loss": 1.1 * loss.item()})
                opened.close()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()


class Bistable(torch.nn.Module):
    """A one-unit tanh RNN, h' = tanh(2h + x): fixed points at 0 (unstable, slope 2) and at the two roots of
    h = tanh(2h) (stable, slope 2(1 - h^2)). Takes (trials, time, 1) inputs."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(1, 1, batch_first=True)
        with torch.no_grad():
            self.rnn.weight_hh_l0.fill_(2.0)
            self.rnn.weight_ih_l0.fill_(1.0)
            self.rnn.bias_hh_l0.zero_()
            self.rnn.bias_ih_l0.zero_()
        self.example_input = torch.zeros(1, 5, 1)

    def forward(self, x):
        return self.rnn(x)[0]
