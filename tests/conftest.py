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


@pytest.fixture
def sentences_file(tmp_path: Path) -> Path:
    rows = [{"text": t, "label": i % 2, "id": f"r{i}"} for i, t in enumerate(SENTENCES)]
    return write_jsonl(tmp_path / "sentences.jsonl", rows)
