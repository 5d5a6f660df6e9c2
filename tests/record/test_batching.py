"""Token-budget batching, length-sorted inside a window: the plan covers every input once within the
budget, rows come back in input order, and an interrupted run resumes to the same store.

Values: a token's activations depend on its batch's padded width by float32 rounding (a few ULP),
in file-order batches too (an input's batch mates set the width), so points downstream of attention
agree to 1e-6; points that do not see other positions (``embed``) agree exactly, which pins row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurometry import NeurometryError, open_store, record
from neurometry.cli import main
from neurometry.models.tiny import tiny_bert, tiny_llama
from neurometry.record import batching
from neurometry.store import writer as writer_module
from tests.conftest import SENTENCES, write_jsonl

POINTS = ["embed", "resid.*", "attn_pattern.0"]


@pytest.fixture
def uneven_file(tmp_path):
    """40 inputs from 3 to ~110 tokens, long and short mixed in file order."""
    texts = [" ".join(SENTENCES * (i % 4)) + f" {SENTENCES[i % 8]}" if i % 3 else SENTENCES[i % 8] for i in range(40)]
    return write_jsonl(tmp_path / "uneven.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(texts)])


def test_the_plan_covers_every_input_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    lengths[17] = 900  # longer than the budget: a batch of its own
    windows = list(batching.plan(lengths, 512, window=128))
    assert [(w.start, w.stop) for w in windows] == [(lo, min(lo + 128, 1000)) for lo in range(0, 1000, 128)]
    seen = np.concatenate([b for w in windows for b in w.batches])
    assert np.array_equal(np.sort(seen), np.arange(1000))
    for w in windows:
        for b in w.batches:
            assert w.start <= b.min() and b.max() < w.stop
            assert len(b) * lengths[b].max() <= 512 or len(b) == 1
    assert [b for w in windows for b in w.batches if 17 in b][0].tolist() == [17]
    sorted_batches = [b for w in windows for b in w.batches]
    assert batching.padded_tokens(lengths, sorted_batches) < batching.padded_tokens(
        lengths, batching.fixed_batches(1000, 8))
    assert list(batching.plan(lengths, 512, window=128, start=300))[0].start == 300
    with pytest.raises(ValueError):
        batching.pack(lengths, 0)


@pytest.mark.parametrize("reduce", ["tokens", "mean"])
@pytest.mark.parametrize("factory", [tiny_bert, tiny_llama], ids=["bert", "llama"])
def test_sorted_budget_batches_store_the_rows_of_file_order_batches(factory, reduce, uneven_file, tmp_path, monkeypatch):
    model = factory()
    monkeypatch.setattr(batching, "DEFAULT_WINDOW", 16)  # several windows over 40 inputs
    record(model, uneven_file, POINTS, tmp_path / "fixed", reduce=reduce, batch_size=4, progress=False)
    record(model, uneven_file, POINTS, tmp_path / "sorted", reduce=reduce, max_batch_tokens=300, progress=False)
    fixed, ordered = open_store(tmp_path / "fixed"), open_store(tmp_path / "sorted")
    assert fixed.runs()[0].settings == ordered.runs()[0].settings
    pd.testing.assert_frame_equal(fixed.metadata(), ordered.metadata())
    for point in [p.point for p in fixed.points(fixed.runs()[0].run_id)]:
        a, b = fixed.activations(point), ordered.activations(point)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        if point == "embed":
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_an_interrupted_budget_run_resumes_to_the_same_store(uneven_file, tmp_path, monkeypatch):
    model = tiny_llama()
    monkeypatch.setattr(batching, "DEFAULT_WINDOW", 8)
    args = dict(reduce="tokens", max_batch_tokens=200, chunk_rows=64, progress=False)
    record(model, uneven_file, POINTS, tmp_path / "whole", **args)

    real_add, calls = writer_module.RunWriter.add, []

    def add(self, rows):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_add(self, rows)

    monkeypatch.setattr(writer_module.RunWriter, "add", add)
    with pytest.raises(KeyboardInterrupt):
        record(model, uneven_file, POINTS, tmp_path / "resumed", **args)
    monkeypatch.setattr(writer_module.RunWriter, "add", real_add)
    result = record(model, uneven_file, POINTS, tmp_path / "resumed", **args)
    assert 0 < result.resumed_at < 40

    whole, resumed = open_store(tmp_path / "whole"), open_store(tmp_path / "resumed")
    assert resumed.runs()[0].committed_rows == resumed.runs()[0].n_rows
    pd.testing.assert_frame_equal(whole.metadata(), resumed.metadata())
    for point in [p.point for p in whole.points(whole.runs()[0].run_id)]:
        a, b = whole.activations(point), resumed.activations(point)
        if point == "embed":
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_the_command_line_takes_max_batch_tokens(uneven_file, tmp_path, capsys):
    model = "neurometry.models.tiny:tiny_bert"
    assert main(["record", model, str(uneven_file), "--points", "embed", "--out", str(tmp_path / "a"),
                 "--reduce", "tokens", "--max-batch-tokens", "256", "--quiet"]) == 0
    assert main(["record", model, str(uneven_file), "--points", "embed", "--out", str(tmp_path / "b"),
                 "--reduce", "tokens", "--quiet"]) == 0
    assert np.array_equal(open_store(tmp_path / "a").activations("embed"), open_store(tmp_path / "b").activations("embed"))
    capsys.readouterr()
    assert main(["record", model, str(uneven_file), "--points", "embed", "--out", str(tmp_path / "c"),
                 "--max-batch-tokens", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-batch-tokens" in err[0]
    with pytest.raises(NeurometryError, match="max-batch-tokens"):
        record(tiny_bert(), uneven_file, ["resid.0"], tmp_path / "d", max_batch_tokens=0, progress=False)
