"""Steering vectors: padding-invariant activations, the three methods' closed forms, files, agreement."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models.tiny import tiny_llama
from neurometry.steer.vectors import (
    activations_at,
    build_from_store,
    build_vector,
    load_vector,
    save_vector,
    vector_from_activations,
)

torch.set_num_threads(2)

DATA = Path(__file__).resolve().parents[2] / "src" / "neurometry" / "data"
PROMPTS = ["The cat sat", "A much longer prompt with many more tokens in it", "Hi", "Two words"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=3)


def _one_by_one(model, prompts, point, position):
    return np.concatenate([activations_at(model, [p], point, position) for p in prompts])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("position", [-1, 0, -2, "mean"])
def test_padding_side_and_batch_do_not_change_activations(tiny, side, position):
    alone = _one_by_one(tiny, PROMPTS, "resid.1", position)
    old = tiny.tokenizer.padding_side
    tiny.tokenizer.padding_side = side
    try:
        batched = activations_at(tiny, PROMPTS, "resid.1", position, batch_size=4)
    finally:
        tiny.tokenizer.padding_side = old
    assert batched.shape == (4, 32)
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)
    if position != 0:  # position 0 is [CLS] in every prompt; elsewhere the rows must differ
        assert np.abs(alone[0] - alone[1]).max() > 1e-2


def test_last_position_is_the_last_real_token(tiny):
    enc = tiny.tokenizer(PROMPTS[1], return_tensors="pt")
    with torch.no_grad():
        hidden = tiny.module(
            **{k: enc[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True
        )
    expected = hidden.hidden_states[1][0, -1].double().numpy()  # hidden_states[i + 1] = block i output
    got = activations_at(tiny, [PROMPTS[1]], "resid.0")[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_position_errors(tiny):
    with pytest.raises(NeurometryError, match="outside prompt"):
        activations_at(tiny, ["Hi"], "resid.0", position=50)
    with pytest.raises(NeurometryError, match="unknown position"):
        activations_at(tiny, ["Hi"], "resid.0", position="lats")
    with pytest.raises(NeurometryError, match="unknown point"):
        activations_at(tiny, ["Hi"], "resid.9")


def test_methods_closed_forms():
    rng = np.random.default_rng(0)
    n, d = 40, 6
    axis = np.array([3.0, 0, 0, 0, 0, 0])
    neg = rng.normal(size=(n, d))
    # paired differences: the axis times a varying amount plus small noise off the axis
    amounts = rng.uniform(0.5, 1.5, size=n)
    pos = neg + amounts[:, None] * axis + 0.01 * rng.normal(size=(n, d))

    mean_diff = vector_from_activations(pos, neg, "mean_diff")
    np.testing.assert_allclose(mean_diff, pos.mean(0) - neg.mean(0))  # raw, not normalised
    assert np.linalg.norm(mean_diff) == pytest.approx(3.0 * amounts.mean(), rel=0.01)

    pca = vector_from_activations(pos, neg, "pca")
    diffs = pos - neg
    centred = diffs - diffs.mean(0)
    unit = np.linalg.svd(centred)[2][0]
    unit *= np.sign(diffs.mean(0) @ unit)
    np.testing.assert_allclose(pca, unit * (diffs.mean(0) @ unit), atol=1e-12)
    assert pca[0] > 0 and abs(pca[0]) / np.linalg.norm(pca) > 0.999  # the planted axis, positive side
    # flipping the pairs flips the vector
    np.testing.assert_allclose(vector_from_activations(neg, pos, "pca"), -pca, atol=1e-12)

    logistic = vector_from_activations(pos, neg, "logistic")
    assert np.linalg.norm(logistic) == pytest.approx(np.linalg.norm(mean_diff))
    assert (pos @ logistic).mean() > (neg @ logistic).mean()


def test_pca_matches_sklearn_pca_on_differences():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    pos, neg = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    pos[:, 2] += rng.normal(scale=4, size=30) + 1.0  # a dominant varying axis with a positive mean shift
    component = PCA(n_components=1).fit(pos - neg).components_[0]  # repeng's pca_diff fit
    ours = vector_from_activations(pos, neg, "pca")
    assert abs(ours @ component) / np.linalg.norm(ours) == pytest.approx(1.0, abs=1e-10)


def test_method_errors():
    x = np.ones((3, 4))
    with pytest.raises(NeurometryError, match="did you mean mean_diff"):
        vector_from_activations(x, x, "mean_dif")
    with pytest.raises(NeurometryError, match="no principal component"):
        vector_from_activations(x + 1, x, "pca")
    with pytest.raises(NeurometryError, match="paired"):
        vector_from_activations(np.ones((3, 4)), np.ones((2, 4)), "pca")


def test_build_vector_equals_difference_of_activations(tiny):
    pos, neg = ["I loved it", "Great film"], ["I hated it", "Awful film here"]
    v = build_vector(tiny, pos, neg, "resid.1")
    expected = activations_at(tiny, pos, "resid.1").mean(0) - activations_at(tiny, neg, "resid.1").mean(0)
    np.testing.assert_allclose(v, expected, atol=1e-12)


def test_build_from_store(tmp_path):
    from neurometry.models.tiny import tiny_bert
    from neurometry.record import record

    rows = [{"text": t, "label": "pos" if i % 2 else "neg"} for i, t in enumerate(PROMPTS * 2)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store_path = tmp_path / "acts.nmstore"
    result = record(tiny_bert(), data, ["resid.1"], out=store_path, reduce="mean", progress=False)
    from neurometry.store import open_store

    store = open_store(store_path)
    run = result.run_id if hasattr(result, "run_id") else store.runs()[0].run_id
    x = store.activations("resid.1", run=run).astype(np.float64)
    labels = np.array([r["label"] for r in rows])
    expected = x[labels == "pos"].mean(0) - x[labels != "pos"].mean(0)
    np.testing.assert_allclose(build_from_store(store, run, "resid.1", "label", "pos"), expected)
    np.testing.assert_allclose(build_from_store(store_path, run, "resid.1", "label", "neg"), -expected)
    with pytest.raises(NeurometryError, match="matches 0 of"):
        build_from_store(store, run, "resid.1", "label", "maybe")
    with pytest.raises(NeurometryError, match="no column"):
        build_from_store(store, run, "resid.1", "lable", "pos")


def test_save_load_keeps_the_norm(tmp_path):
    v = np.array([3.0, -4.0, 0.0])
    path = save_vector(
        tmp_path / "v.safetensors", v, model="tiny", point="resid.1", method="mean_diff", position=-1
    )
    loaded, meta = load_vector(path)
    np.testing.assert_array_equal(loaded, v.astype(np.float32))
    assert meta["norm"] == 5.0 and meta["position"] == -1 and meta["method"] == "mean_diff"
    assert meta["point"] == "resid.1" and meta["kind"] == "steering_vector"


@pytest.mark.parametrize("name", ["sentiment", "formality", "english_french"])
def test_shipped_sets(name):
    rows = [
        json.loads(line) for line in (DATA / f"steer_{name}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(rows) >= 60
    assert len({(r["positive"], r["negative"]) for r in rows}) == len(rows)
    for r in rows:
        assert r["positive"] != r["negative"]
        for key in ("target", "opposite"):
            assert r[key].startswith(" ") and len(r[key].split()) == 1


@pytest.mark.skipif(
    importlib.util.find_spec("steering_vectors") is None, reason="steering-vectors not installed"
)
def test_mean_diff_agrees_with_steering_vectors(tiny):
    from steering_vectors import train_steering_vector

    rows = [json.loads(line) for line in (DATA / "steer_sentiment.jsonl").read_text().splitlines()[:12]]
    pos, neg = [r["positive"] for r in rows], [r["negative"] for r in rows]
    theirs = train_steering_vector(
        tiny.module, tiny.tokenizer, list(zip(pos, neg, strict=True)), layers=[1], batch_size=4
    ).layer_activations[1]
    ours = build_vector(tiny, pos, neg, "resid.1", "mean_diff")
    theirs = theirs.double().numpy()
    cosine = ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)
    assert cosine >= 0.999
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)  # same scale too
