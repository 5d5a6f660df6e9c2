"""Feature examples, logit tokens and direction export, on an SAE with planted latents.

The mirror SAE (ReLU, W_enc = [I, -I], W_dec = [I; -I], zero biases) has latent j = relu(x_j) and latent
d + j = relu(-x_j) of the stored activation x, so every statistic and every top row is computed directly
from the stored rows with numpy and compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.features.examples import (
    export_feature_direction,
    feature_examples,
    feature_logit_tokens,
    load_feature_examples,
    save_feature_examples,
)
from neurometry.models.tiny import tiny_llama
from neurometry.record import record
from neurometry.steer.vectors import load_vector
from neurometry.store import open_store
from neurometry.store.results import SAE_FEATURES
from tests.conftest import SENTENCES, write_jsonl
from tests.features.conftest import mirror_sae

torch.set_num_threads(2)

POINT = "resid.0"
D = 32
TOP, WINDOW, BINS, PER_BIN = 5, 3, 4, 3


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(seed=0)


@pytest.fixture(scope="module")
def folder(llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sae_examples")
    data = write_jsonl(folder / "sentences.jsonl", [{"text": t} for t in SENTENCES])
    record(llama, data, [POINT], folder / "tokens", reduce="tokens", progress=False)
    record(llama, data, [POINT], folder / "means", reduce="mean", progress=False)
    return folder


@pytest.fixture(scope="module")
def store(folder):
    return open_store(folder / "tokens")


@pytest.fixture(scope="module")
def rows(store):
    return store.activations(POINT)


@pytest.fixture(scope="module")
def examples(store):
    return feature_examples(
        mirror_sae(D), store, POINT, top=TOP, window=WINDOW, quantile_bins=BINS, per_bin=PER_BIN, chunk_rows=10
    )


def _codes(rows: np.ndarray) -> np.ndarray:
    return np.concatenate([np.maximum(rows, 0), np.maximum(-rows, 0)], axis=1)


def test_statistics_equal_direct_counts(examples, rows):
    codes = _codes(rows.astype(np.float64))
    active = codes > 0
    assert examples.n_rows == len(rows) and examples.d_sae == 2 * D
    np.testing.assert_array_equal(examples.frequency, active.mean(0))
    np.testing.assert_allclose(examples.mean_activation, codes.sum(0) / active.sum(0), rtol=1e-6)
    np.testing.assert_allclose(examples.max_activation, codes.max(0), rtol=0, atol=0)


def test_top_rows_are_the_largest_values(examples, rows):
    codes = _codes(rows)
    for latent in range(2 * D):
        order = np.argsort(-codes[:, latent], kind="stable")
        expected = [int(r) for r in order[:TOP] if codes[r, latent] > 0]
        got = examples.top[latent]
        assert [e.row for e in got] == expected
        np.testing.assert_array_equal([e.activation for e in got], codes[expected, latent])


def test_contexts_are_the_stored_tokens_around_the_row(examples, store):
    meta = store.metadata()
    tokens, inputs = meta["token"].tolist(), meta["input_row"].to_numpy()
    seen_clipped = False
    for latent in (0, 5, D + 3):
        for example in examples.top[latent] + [e for q in examples.quantiles[latent] for e in q.examples]:
            r = example.row
            assert example.token == tokens[r]
            assert (example.input_row, example.position) == (inputs[r], meta["position"][r])
            same = np.nonzero(inputs == inputs[r])[0]
            left = [tokens[j] for j in same if r - WINDOW <= j < r]
            right = [tokens[j] for j in same if r < j <= r + WINDOW]
            assert (example.left, example.right) == (left, right)
            seen_clipped |= len(left) < WINDOW or len(right) < WINDOW
    assert seen_clipped  # some example sits near the start or end of its input


def test_quantile_samples_come_from_their_quantile(examples, rows):
    codes = _codes(rows)
    # latents with no more activations than the reservoir holds: it keeps all, so the bins are exact groups
    small = [j for j in range(2 * D) if 4 * BINS <= (codes[:, j] > 0).sum() <= 4 * BINS * PER_BIN + TOP]
    assert len(small) > 40
    for latent in small:
        top_rows = {e.row for e in examples.top[latent]}
        rest = [r for r in np.nonzero(codes[:, latent] > 0)[0] if r not in top_rows]
        ranked = sorted(rest, key=lambda r: (codes[r, latent], r))
        groups = np.array_split(np.array(ranked), BINS)
        samples = examples.quantiles[latent]
        assert [(q.lower, q.upper) for q in samples] == [(b / BINS, (b + 1) / BINS) for b in range(BINS)]
        for q, group in zip(samples, groups, strict=True):
            assert len(q.examples) == min(PER_BIN, len(group)) and len(q.examples) > 0
            assert {e.row for e in q.examples} <= set(group.tolist())
            assert [e.activation for e in q.examples] == sorted((e.activation for e in q.examples), reverse=True)
            np.testing.assert_array_equal([e.activation for e in q.examples], codes[[e.row for e in q.examples], latent])


def test_chunking_changes_nothing_and_seed_changes_the_sample(store, examples):
    other = feature_examples(
        mirror_sae(D), store, POINT, top=TOP, window=WINDOW, quantile_bins=BINS, per_bin=PER_BIN, chunk_rows=1000
    )
    assert other.top == examples.top and other.quantiles == examples.quantiles
    reseeded = feature_examples(
        mirror_sae(D), store, POINT, top=TOP, window=WINDOW, quantile_bins=BINS, per_bin=PER_BIN, seed=1
    )
    assert reseeded.top == examples.top and reseeded.quantiles != examples.quantiles


def test_catalog_round_trip(store, examples):
    examples.logit_tokens = [{"promoted": [["a", 1.5]], "suppressed": [["b", -2.0]]}] * examples.d_sae
    try:
        assert save_feature_examples(store, examples, None, "mirror") == 2 * D
    finally:
        examples.logit_tokens = None
    table = SAE_FEATURES.load(store)
    table = table[table["name"].str.startswith("mirror/")]
    assert len(table) == 2 * D and set(table["point"]) == {POINT}
    by_name = dict(zip(table["name"], table["value"], strict=True))
    np.testing.assert_array_equal([by_name[f"mirror/{j}"] for j in range(2 * D)], examples.frequency)
    loaded = load_feature_examples(store, "mirror")
    assert (loaded.point, loaded.run, loaded.n_rows, loaded.window) == (
        examples.point, examples.run, examples.n_rows, examples.window
    )
    np.testing.assert_array_equal(loaded.frequency, examples.frequency)
    np.testing.assert_array_equal(loaded.mean_activation, examples.mean_activation)
    np.testing.assert_array_equal(loaded.max_activation, examples.max_activation)
    assert loaded.top == examples.top and loaded.quantiles == examples.quantiles
    assert loaded.logit_tokens[3] == {"promoted": [["a", 1.5]], "suppressed": [["b", -2.0]]}
    with pytest.raises(NeurometryError, match="no SAE feature examples named 'other'"):
        load_feature_examples(store, "other")


def test_per_input_runs_are_refused(folder):
    with pytest.raises(NeurometryError, match="--reduce tokens"):
        feature_examples(mirror_sae(D), open_store(folder / "means"), POINT)


def test_width_mismatch_is_refused(store):
    with pytest.raises(NeurometryError, match=r"32 features.*d_in=16"):
        feature_examples(mirror_sae(16), store, POINT)


def test_logit_tokens_are_the_unembedding_columns(llama):
    sae = mirror_sae(D)
    found = feature_logit_tokens(sae, llama, top=6)
    w_u = llama.module.lm_head.weight.detach().double().numpy()  # (vocab, d)
    gamma = llama.module.model.norm.weight.detach().double().numpy()
    for j in (0, 9):
        effect = w_u[:, j] * gamma[j]  # latent j's direction is e_j: its logits are column j of W_U, scaled
        np.testing.assert_array_equal(found.promoted_ids[j], np.argsort(-effect, kind="stable")[:6])
        np.testing.assert_allclose(found.promoted_logits[j], np.sort(effect)[::-1][:6], rtol=1e-6)
        # latent D + j is -e_j: it promotes what j suppresses
        np.testing.assert_array_equal(found.suppressed_ids[j], found.promoted_ids[D + j])
        assert found.promoted[j] == [llama.tokenizer.decode([int(i)]) for i in found.promoted_ids[j]]
    records = found.as_records()
    assert records[0]["promoted"][0] == [found.promoted[0][0], float(found.promoted_logits[0, 0])]
    with pytest.raises(NeurometryError, match=r"d_in=16 is not the width 32"):
        feature_logit_tokens(mirror_sae(16), llama)


def test_export_direction_loads_as_a_steering_vector(tmp_path):
    sae = mirror_sae(D)
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(2 * D, D, generator=torch.Generator().manual_seed(0)))
    path = export_feature_direction(sae, 37, tmp_path / "feature37.safetensors")
    vector, meta = load_vector(path)
    np.testing.assert_array_equal(vector, sae.W_dec[37].detach().numpy())
    assert meta["point"] == POINT and meta["model"] == "tiny" and meta["method"] == "sae_relu"
    assert (meta["latent"], meta["position"], meta["kind"]) == (37, "all", "steering_vector")
    with pytest.raises(NeurometryError, match="latent must be an integer in 0..63"):
        export_feature_direction(sae, 64, tmp_path / "bad.safetensors")


def test_readable_context_reads_as_text_for_bpe_and_wordpiece():
    from neurometry.features.examples import display_token, readable_context

    # byte-level BPE carries its spaces in the tokens
    assert readable_context(["The", "\u0120cat"], "\u0120sat", ["\u0120on"]) == ("The cat", " sat", " on")
    # WordPiece: words separated by spaces, a ## piece glued to the word before it
    assert readable_context(["[CLS]", "a", "real", "let"], "##down", ["in", "the", "end"]) == (
        "[CLS] a real let", "down", " in the end"
    )
    assert readable_context(["[CLS]"], "fog", ["##gy", "[SEP]"]) == ("[CLS]", " fog", "gy [SEP]")
    assert readable_context(["this", "morning"], "rain", ["felt"]) == ("this morning", " rain", " felt")
    assert display_token("\u0120Paris") == "Paris" and display_token("##down") == "down"
