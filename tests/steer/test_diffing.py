"""Model diffing on tiny seeded Llamas with a planted, provable finetune."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models.hooks import capture
from neurometry.models.tiny import tiny_llama
from neurometry.steer.diffing import (
    DiffResult,
    difference_lens,
    mean_activation_difference,
    steer_with_difference,
)
from neurometry.store.results import DIFF

TEXTS = [
    "The train left the station at noon.",
    "She wrote three letters to her cousin.",
    "Water boils at one hundred degrees.",
    "A small dog slept under the table.",
]
FIRST_K = 4
PLANTED_LAYER = 1


@pytest.fixture(scope="module")
def models():
    """A 3-layer base and a copy whose layer-1 MLP down_proj gained the rank-1 term u v^T.

    Why it is provable: layers 0 and the attention of layer 1 are untouched, so resid.0 is identical
    and the input m of layer 1's down_proj (the ``mlp_act.1`` point) is identical; the block's
    output then changes by exactly u (v . m) for each token, so the mean difference at resid.1 is
    u * mean(v . m) over the same positions, parallel to u.
    """
    base = tiny_llama(seed=3, layers=3)
    fine = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(7)
    u = torch.randn(32, generator=gen)
    v = torch.randn(64, generator=gen)
    with torch.no_grad():
        fine.module.model.layers[PLANTED_LAYER].mlp.down_proj.weight += torch.outer(u, v)
    return base, fine, u.double().numpy(), v.double().numpy()


@pytest.mark.parametrize("skip_first", [0, 2])
def test_planted_finetune_is_read_exactly(models, skip_first):
    base, fine, u, v = models
    diffs = mean_activation_difference(base, fine, TEXTS, first_k=FIRST_K, skip_first=skip_first)
    assert list(diffs) == ["resid.0", "resid.1", "resid.2"]
    assert np.array_equal(diffs["resid.0"], np.zeros(32))  # before the planted layer: bit-identical

    # the closed form u * mean(v . m) over the first FIRST_K positions of every text
    scalars = []
    point = base.resolve(f"mlp_act.{PLANTED_LAYER}")
    for text in TEXTS:
        batch = dict(base.tokenizer([text], return_tensors="pt"))
        _, got = capture(base, batch, point)
        m = got[f"mlp_act.{PLANTED_LAYER}"][0, skip_first:FIRST_K].double().numpy()
        scalars.extend(m @ v)
    expected = u * np.mean(scalars)
    d1 = diffs["resid.1"]
    cos = abs(d1 @ u) / (np.linalg.norm(d1) * np.linalg.norm(u))
    assert cos > 0.99
    np.testing.assert_allclose(d1, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert np.linalg.norm(diffs["resid.2"]) > 0  # the change propagates downstream


def test_short_texts_and_selected_points(models):
    base, fine, u, _ = models
    diffs = mean_activation_difference(base, fine, ["Hi."], points=["resid.1", "mlp_act.1"], first_k=50)
    assert list(diffs) == ["mlp_act.1", "resid.1"]  # model point order
    assert np.array_equal(diffs["mlp_act.1"], np.zeros(64))  # down_proj input unchanged
    d1 = diffs["resid.1"]
    assert abs(d1 @ u) / (np.linalg.norm(d1) * np.linalg.norm(u)) > 0.99


def test_identical_models_give_zero(models):
    base, _, _, _ = models
    diffs = mean_activation_difference(base, copy.deepcopy(base), TEXTS[:2])
    assert all(np.array_equal(d, np.zeros_like(d)) for d in diffs.values())


def test_architecture_mismatch_errors():
    base = tiny_llama(seed=0, layers=2)
    with pytest.raises(NeurometryError, match="number of layers"):
        mean_activation_difference(base, tiny_llama(seed=0, layers=3), TEXTS)
    with pytest.raises(NeurometryError, match="hidden size"):
        mean_activation_difference(base, tiny_llama(seed=0, hidden=48), TEXTS)


def test_bad_arguments(models):
    base, fine, _, _ = models
    with pytest.raises(NeurometryError, match="first_k"):
        mean_activation_difference(base, fine, TEXTS, first_k=0)
    with pytest.raises(NeurometryError, match="texts is empty"):
        mean_activation_difference(base, fine, [])
    with pytest.raises(NeurometryError, match="skip_first"):
        mean_activation_difference(base, fine, TEXTS, first_k=3, skip_first=3)
    with pytest.raises(NeurometryError, match="no text has more"):
        mean_activation_difference(base, fine, ["Hi"], first_k=10, skip_first=5)
    with pytest.raises(NeurometryError, match="all zeros"):
        difference_lens(base, np.zeros(32), "resid.1")
    with pytest.raises(NeurometryError, match="not \\(32,\\)"):
        difference_lens(base, np.ones(5), "resid.1")


def test_difference_lens_ranks_unembedding_direction_first(models):
    base, _, _, _ = models
    head = base.module.lm_head.weight.detach().double()
    gamma = base.module.model.norm.weight.detach().double()
    # the row of largest norm: w_t . w_t >= |w_t||w_s| >= w_t . w_s for every s (Cauchy-Schwarz), and
    # dividing by the norm's gain makes final_norm(difference) parallel to w_t
    t = int(head.norm(dim=1).argmax())
    difference = (head[t] / gamma).numpy()
    top = difference_lens(base, difference, "resid.1", top_k=5)
    assert top[0][0] == base.tokenizer.decode([t])
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-12
    # RMSNorm is scale invariant (up to eps): a different target norm gives the same ranking
    again = difference_lens(base, difference, "resid.1", top_k=5, norm=100.0)
    assert [tok for tok, _ in again] == [tok for tok, _ in top]


def test_steer_with_difference_and_result_dict(models):
    base, fine, _, _ = models
    diffs = mean_activation_difference(base, fine, TEXTS[:2], first_k=2)
    table = steer_with_difference(base, diffs["resid.1"], "resid.1", 0.0, ["The cat"], max_new_tokens=3)
    assert table[0]["prompt"] == "The cat" and table[0]["steered"] == table[0]["unsteered"]  # alpha 0
    result = DiffResult(diffs, first_k=2, n_positions=4, lens={"resid.1": [("a", 0.5)]})
    doc = result.to_dict()
    assert doc["points"][0] == {"point": "resid.0", "norm": 0.0}
    assert doc["points"][1]["lens"] == [{"token": "a", "prob": 0.5}]


def test_count_positions_matches_what_the_mean_pools(models):
    from neurometry.steer.diffing import count_positions

    base = models[0]
    texts = ["a b c d e f g h", "a b"]
    n = [len(base.tokenizer(t)["input_ids"]) for t in texts]
    assert count_positions(base, texts, first_k=5, skip_first=1) == sum(max(0, min(5, k) - 1) for k in n)


def test_saved_diffing_reads_back_exactly(models, tmp_path):
    from neurometry.steer.diffing import count_positions, diff_document, save_diff
    from neurometry.store import open_store

    base, fine, _, _ = models
    diffs = mean_activation_difference(base, fine, TEXTS, first_k=FIRST_K)
    lens = {name: difference_lens(base, d, name, top_k=3) for name, d in diffs.items() if d.any()}
    result = DiffResult(diffs, FIRST_K, count_positions(base, TEXTS, FIRST_K), 0, lens)
    assert list(lens) == ["resid.1", "resid.2"]  # resid.0 does not differ, so it has no lens
    table = steer_with_difference(base, diffs["resid.1"], "resid.1", 2.0, ["The cat"], max_new_tokens=3)
    store = open_store(tmp_path / "s.nmstore", create=True)  # diffing needs no recorded run
    save_diff(store, result, "base", "/weights/fine.safetensors", generations=table, generation_point="resid.1",
              generation_alpha=2.0)
    saved = DIFF.load(store, "base")
    assert list(saved["point"]) == ["resid.0", "resid.1", "resid.2"] and set(saved["name"]) == {
        "/weights/fine.safetensors"
    }
    assert saved["params"].iloc[0] == {"first_k": FIRST_K, "skip_first": 0, "texts": "neutral"}
    norms = dict(zip(saved["point"], saved["value"], strict=True))
    assert norms["resid.0"] == 0.0 and norms["resid.1"] == float(np.linalg.norm(diffs["resid.1"]))
    document, generated = diff_document(saved)
    assert document == result.to_dict()  # every norm, token and probability, to the last bit
    assert document["points"][2]["lens"][0] == {"token": lens["resid.2"][0][0], "prob": lens["resid.2"][0][1]}
    assert generated == {"point": "resid.1", "alpha": 2.0, "generations": table}
    # without generations, and a second setting of the same models beside the first
    save_diff(store, DiffResult({"resid.2": diffs["resid.2"]}, FIRST_K, 8, 1), "base", "/weights/fine.safetensors")
    both = DIFF.load(store, "base")
    with pytest.raises(NeurometryError, match="2 \\(run, finetuned, settings\\) combinations"):
        diff_document(both)
    again, generated = diff_document(both[both["params"].map(lambda p: p["skip_first"] == 1)])
    assert again == {"first_k": FIRST_K, "skip_first": 1, "n_positions": 8,
                     "points": [{"point": "resid.2", "norm": float(np.linalg.norm(diffs["resid.2"]))}]}
    assert generated is None
    with pytest.raises(NeurometryError, match="generation_point"):
        save_diff(store, result, "base", "fine", generations=table, generation_point="resid.9", generation_alpha=2.0)
