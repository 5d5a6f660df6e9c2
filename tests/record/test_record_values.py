"""Stored values equal what the model computes: per token, reduced, across batch sizes and dtypes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from neurometry import NeurometryError, open_store, record
from neurometry.models.tiny import tiny_bert, tiny_llama
from tests.conftest import SENTENCES


def hidden_states(model, texts: list[str], max_tokens: int = 128):
    batch = model.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    with torch.inference_mode():
        out = model.module(**batch, output_hidden_states=True)
    return out.hidden_states, batch["attention_mask"].bool()


@pytest.mark.parametrize("factory", [tiny_bert, tiny_llama], ids=["bert", "llama"])
def test_tokens_equal_hidden_states_at_every_real_position(factory, sentences_file, tmp_path):
    model = factory()
    n_layers = len([p for p in model.points if p.startswith("resid.")])
    record(model, sentences_file, ["resid.*"], tmp_path / "s", reduce="tokens", batch_size=3, progress=False)
    store = open_store(tmp_path / "s")
    states, mask = hidden_states(model, SENTENCES)
    meta = store.metadata()
    assert len(meta) == int(mask.sum())
    # metadata: input row and position of every stored token row, in row order
    rows, positions = np.nonzero(mask.numpy())
    assert np.array_equal(meta["input_row"].to_numpy(), rows)
    assert np.array_equal(meta["position"].to_numpy(), positions)
    assert meta["label"].tolist() == [r % 2 for r in rows]
    index = store.row_index()  # the same token rows, without the data columns
    assert list(index.columns) == ["row", "input_row", "position", "token_id", "token"]
    pd.testing.assert_frame_equal(index, meta[list(index.columns)])
    for i in range(n_layers):
        stored = store.activations(f"resid.{i}")
        expected = states[i + 1][mask].numpy()
        if i == n_layers - 1 and factory is tiny_llama:
            continue  # HF applies the final norm to the last hidden state; checked in models tests
        np.testing.assert_allclose(stored, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("reduce", ["mean", "first", "last"])
def test_reductions_use_real_tokens_only(reduce, sentences_file, tmp_path):
    model = tiny_llama()
    record(model, sentences_file, ["resid.0"], tmp_path / "s", reduce=reduce, batch_size=4, progress=False)
    stored = open_store(tmp_path / "s").activations("resid.0")
    states, mask = hidden_states(model, SENTENCES)
    layer = states[1]
    expected = []
    for row in range(len(SENTENCES)):
        real = layer[row][mask[row]]
        expected.append({"mean": real.mean(0), "first": real[0], "last": real[-1]}[reduce])
    np.testing.assert_allclose(stored, torch.stack(expected).numpy(), atol=1e-5, rtol=0)


def test_batch_size_does_not_change_values(sentences_file, tmp_path):
    model = tiny_bert()
    for size in (1, 3, 8):
        record(model, sentences_file, ["resid.*", "mlp_act.1"], tmp_path / "s", reduce="tokens",
               run=f"b{size}", batch_size=size, progress=False)
    store = open_store(tmp_path / "s")
    for point in ("resid.0", "resid.1", "mlp_act.1"):
        ref = store.activations(point, run="b1")
        for size in (3, 8):
            np.testing.assert_allclose(store.activations(point, run=f"b{size}"), ref, atol=1e-5, rtol=0)


def test_dtypes_round_trip(sentences_file, tmp_path):
    model = tiny_bert()
    for dtype in ("float32", "float16", "bfloat16"):
        record(model, sentences_file, ["resid.1"], tmp_path / "s", reduce="tokens", dtype=dtype, run=dtype,
               progress=False)
    store = open_store(tmp_path / "s")
    full = store.activations("resid.1", run="float32")
    half = store.activations("resid.1", run="float16")
    brain = store.activations("resid.1", run="bfloat16")
    assert half.dtype == np.float16 and brain.dtype == np.float32
    np.testing.assert_array_equal(half, full.astype(np.float16))
    expected_bf16 = torch.from_numpy(full).bfloat16().float().numpy()
    np.testing.assert_array_equal(brain, expected_bf16)


def test_attention_pattern_rows_are_probabilities_over_real_keys(sentences_file, tmp_path):
    model = tiny_bert()
    record(model, sentences_file, ["attn_pattern.0"], tmp_path / "s", reduce="tokens", progress=False)
    store = open_store(tmp_path / "s")
    probs = store.activations("attn_pattern.0")
    meta = store.metadata()
    lengths = meta.groupby("input_row")["position"].max().to_numpy() + 1
    assert probs.shape[1:] == (model.module.config.num_attention_heads, lengths.max())
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    for row, input_row in enumerate(meta["input_row"]):
        assert np.abs(probs[row, :, lengths[input_row]:]).max(initial=0) < 1e-6


def test_early_stop_runs_only_the_layers_needed(sentences_file, tmp_path):
    model = tiny_llama()
    layers = model.module.model.layers
    calls = [0] * len(layers)
    handles = [layer.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, layer in enumerate(layers)]
    try:
        record(model, sentences_file, ["resid.0"], tmp_path / "s", batch_size=8, progress=False)
    finally:
        for handle in handles:
            handle.remove()
    assert calls[0] >= 1 and all(c == 0 for c in calls[1:])


def test_float16_overflow_is_refused_and_nothing_is_written(sentences_file, tmp_path):
    model = tiny_bert()
    with torch.no_grad():
        model.module.embeddings.word_embeddings.weight.mul_(1e6)
        model.module.embeddings.LayerNorm.weight.mul_(1e6)
    with pytest.raises(NeurometryError, match="float16"):
        record(model, sentences_file, ["embed"], tmp_path / "s", dtype="float16", progress=False)
    assert not (tmp_path / "s").exists()


def test_left_padding_tokenizer_matches_the_model_on_left_padded_batches(sentences_file, tmp_path):
    """Left padding shifts positions (the model's outputs change with it), so compare with HF's own
    forward on the tokenizer's left-padded batch: rows and the last real token must still line up."""
    model = tiny_llama()
    model.tokenizer.padding_side = "left"
    for reduce in ("tokens", "last"):
        record(model, sentences_file, ["resid.0"], tmp_path / "s", reduce=reduce, run=reduce,
               batch_size=len(SENTENCES), progress=False)
    store = open_store(tmp_path / "s")
    states, mask = hidden_states(model, SENTENCES)
    assert not mask[:, -1].logical_not().any()  # really left-padded: every row ends with a real token
    np.testing.assert_allclose(store.activations("resid.0", run="tokens"), states[1][mask].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(store.activations("resid.0", run="last"), states[1][:, -1].numpy(), atol=1e-5, rtol=0)


def test_file_system_without_o_direct(sentences_file, tmp_path):
    """Chunks of 32 rows x 32 float32 are 4 KiB, so O_DIRECT is tried; where tmpfs refuses it, the
    chunk files go through the page cache with the same bytes."""
    import shutil
    import tempfile
    from pathlib import Path

    if not Path("/dev/shm").is_dir():
        pytest.skip("no tmpfs at /dev/shm")
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        model = tiny_bert()
        for where in (tmp_path, shm):
            record(model, sentences_file, ["resid.*"], where / "s", reduce="tokens", chunk_rows=32, progress=False)
        np.testing.assert_array_equal(open_store(shm / "s").activations("resid.1"),
                                      open_store(tmp_path / "s").activations("resid.1"))
    finally:
        shutil.rmtree(shm, ignore_errors=True)
