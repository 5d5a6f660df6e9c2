"""Recording the zoo's pretrained models: stored rows equal the model's own hidden states."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from neurometry import open_store, record
from neurometry.models import load_model
from tests.conftest import KRIEGESKORTE_MAT, SENTENCES


def assert_tokens_equal_hidden_states(model, sentences_file, tmp_path, last_has_final_norm: bool) -> None:
    # One batch, as in the reference forward: batch-size invariance is tested on its own.
    record(model, sentences_file, ["resid.*"], tmp_path / "s", reduce="tokens", batch_size=len(SENTENCES),
           progress=False)
    store = open_store(tmp_path / "s")
    batch = model.tokenizer(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        states = model.module(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].bool()
    n_layers = len(states) - 1
    for i in range(n_layers):
        stored = store.activations(f"resid.{i}")
        if i == n_layers - 1 and last_has_final_norm:
            # HF reports the last hidden state after the final norm; resid.{L-1} is the raw block output.
            norm = model.module.get_submodule(model.points["final_norm"].module_path)
            with torch.inference_mode():
                stored = norm(torch.from_numpy(stored)).numpy()
        np.testing.assert_allclose(stored, states[i + 1][mask].numpy(), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_minilm_tokens_equal_hidden_states(sentences_file, tmp_path):
    assert_tokens_equal_hidden_states(load_model("minilm"), sentences_file, tmp_path, last_has_final_norm=False)


@pytest.mark.slow
def test_smollm2_tokens_equal_hidden_states(sentences_file, tmp_path):
    assert_tokens_equal_hidden_states(load_model("smollm2-135m"), sentences_file, tmp_path, last_has_final_norm=True)


@pytest.mark.slow
def test_efficientnet_records_kriegeskorte_images_whole_and_averaged(tmp_path):
    if not KRIEGESKORTE_MAT.exists():
        pytest.skip("../shared/data is not beside this checkout")
    stimuli = scipy.io.loadmat(KRIEGESKORTE_MAT, struct_as_record=False, squeeze_me=True)["stimuli_92objs"]
    rows = []
    for i in (31, 46, 0):
        Image.fromarray(stimuli[i].image).save(tmp_path / f"stim{i}.png")
        rows.append(f'{{"image": "stim{i}.png", "stimulus": {i}}}')
    data = tmp_path / "images.jsonl"
    data.write_text("\n".join(rows) + "\n")
    model = load_model("efficientnet-lite0")
    record(model, data, ["block.*", "logits"], tmp_path / "s", reduce="mean", run="mean", progress=False)
    record(model, data, ["block.15"], tmp_path / "s", reduce="none", run="whole", progress=False)
    store = open_store(tmp_path / "s")
    whole = store.activations("block.15", run="whole")
    averaged = store.activations("block.15", run="mean")
    assert whole.ndim == 4 and averaged.shape == whole.shape[:2]
    np.testing.assert_allclose(whole.mean(axis=(2, 3)), averaged, atol=1e-5)
    logits = store.activations("logits", run="mean")
    assert logits.argmax(1)[:2].tolist() == [340, 291]  # zebra, lion
    assert store.metadata("mean")["stimulus"].tolist() == [31, 46, 0]
    assert len([p for p in store.points("mean") if p.point.startswith("block.")]) == 16


@pytest.mark.slow
def test_smollm2_in_bfloat16_agrees_with_float32_per_row(sentences_file, tmp_path):
    """Measured on the 64 token rows of the 8 test sentences (2026-12): per-row relative error median
    0.4-1.7%, at most 6.6% after the first token; the first token (the attention sink, whose massive
    activation forms in layer 9) reaches 16% there, with cosine still 0.988."""
    for dtype in ("float32", "bfloat16"):
        record("smollm2-135m", sentences_file, ["resid.*"], tmp_path / dtype, reduce="tokens", model_dtype=dtype,
               progress=False)
    ref, half = open_store(tmp_path / "float32"), open_store(tmp_path / "bfloat16")
    assert half.runs()[0].settings["model_dtype"] == "bfloat16"
    later = ref.row_index(ref.runs()[0].run_id)["position"].to_numpy() > 0
    points = [p.point for p in ref.points()]
    assert len(points) == 30
    for point in points:
        a, b = half.activations(point), ref.activations(point)
        rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
        assert 1e-4 < np.median(rel) < 0.03, (point, np.median(rel))  # really bfloat16, and close
        assert rel[later].max() < 0.10 and rel.max() < 0.25, (point, rel[later].max(), rel.max())
