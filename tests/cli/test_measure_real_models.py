"""Known findings on real models, recorded and measured through the store.

SmolLM2 (Sun et al. 2024, "Massive activations in large language models"; Xiao et al. 2023 on
attention sinks): middle layers hold activations hundreds of times the median, at the first token,
in a few fixed dimensions, and most heads put over half their attention on the first token.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurometry import open_store, record
from neurometry.models import load_model
from neurometry.workflows.measure import measure_store
from tests.conftest import SENTENCES, write_jsonl

PROMPTS = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Write a short poem about the sea.",
    "In 1969, astronauts first walked on the Moon.",
    "Photosynthesis turns light into chemical energy.",
    "My favourite breakfast is toast with jam.",
    "How many legs does a spider have?",
]


@pytest.mark.slow
def test_smollm2_massive_activations_and_attention_sinks(tmp_path):
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"text": t} for t in PROMPTS])
    middle = list(range(12, 25))  # layers 9-11 are where the massive activation forms; measured in docs/measures.md
    points = [f"resid.{i}" for i in middle] + [f"attn_pattern.{i}" for i in middle]
    record(load_model("smollm2-135m"), data, points, tmp_path / "s", reduce="tokens", progress=False)
    store = open_store(tmp_path / "s")
    records = measure_store(store, measures=["massive_activations", "sink_mass"], progress=False)
    massive = [r for r in records if r["measure"] == "massive_activations"]
    sinks = [r for r in records if r["measure"] == "sink_mass"]
    assert len(massive) == len(middle) and len(sinks) == len(middle)
    for rec in massive:
        assert rec["value"] >= 100, rec
        assert rec["position"] == 0, rec  # the first token
    dims = {rec["dim"] for rec in massive}
    assert len(dims) <= 3, dims  # a few fixed dimensions
    for rec in sinks:
        per_head = np.asarray(rec["per_head"])
        assert (per_head > 0.5).mean() > 0.5, rec


@pytest.mark.slow
def test_minilm_mlp_sparsity_per_layer_is_a_fraction(sentences_file, tmp_path):
    """The figures in docs/measures.md come from `neurometry measure ... --measures sparsity` on the demo data;
    here: every layer reports a fraction in (0, 1) and the stored catalog result matches the function."""
    record(load_model("minilm"), sentences_file, ["mlp_act.*"], tmp_path / "s", reduce="tokens", progress=False)
    store = open_store(tmp_path / "s")
    records = measure_store(store, measures=["sparsity"], progress=False)
    assert [r["point"] for r in records] == [f"mlp_act.{i}" for i in range(6)]
    from neurometry.measures import sparsity

    for rec in records:
        assert 0 < rec["value"] < 1
        assert rec["value"] == pytest.approx(sparsity(store.activations(rec["point"])).value, rel=1e-12)
    assert len(SENTENCES) == store.metadata()["input_row"].nunique()
