"""Known answers for the transformer hook points on tiny seeded BERT, Llama and GPT-2 models."""

from __future__ import annotations

import pytest
import torch
import transformers

from neurometry.models import LoadedModel
from neurometry.models.hf import wrap_hf
from neurometry.models.tiny import tiny_bert, tiny_llama

torch.set_num_threads(2)

SENTENCES = ["the cat sat on the mat today", "a dog barked"]


def capture(model: LoadedModel, patterns: list[str], batch, **kwargs):
    """Run ``model.module`` on ``batch`` and return ({point: tensor}, HF output)."""
    out: dict[str, torch.Tensor] = {}
    handles = [
        p.attach(model.module, lambda t, n=p.name: out.__setitem__(n, t.detach().clone()))
        for p in model.resolve(patterns)
    ]
    try:
        with torch.no_grad():
            res = model.module(**_text(batch), **kwargs) if kwargs else model.forward(batch)
    finally:
        for h in handles:
            h.remove()
    return out, res


def _text(batch):
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}


def batch_for(model: LoadedModel):
    return model.tokenizer(SENTENCES, padding=True, return_tensors="pt")


@pytest.fixture(scope="module")
def bert() -> LoadedModel:
    return tiny_bert()


@pytest.fixture(scope="module")
def llama() -> LoadedModel:
    return tiny_llama()


@pytest.fixture(scope="module")
def gpt2() -> LoadedModel:
    tok = tiny_bert().tokenizer
    config = transformers.GPT2Config(
        vocab_size=tok.vocab_size,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=tok.sep_token_id,
        eos_token_id=tok.sep_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config)
    return wrap_hf(model, tok, "tiny-gpt2")


def test_tiny_models_are_seeded_and_deterministic():
    a, b = tiny_bert(seed=3), tiny_bert(seed=3)
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(
        tiny_bert(seed=4).module.embeddings.word_embeddings.weight, a.module.embeddings.word_embeddings.weight
    )
    assert a.module.training is False and a.module.embeddings.word_embeddings.weight.dtype == torch.float32


@pytest.mark.parametrize("name", ["bert", "llama", "gpt2"])
def test_resid_equals_hidden_states(name, request):
    model: LoadedModel = request.getfixturevalue(name)
    L = model.module.config.num_hidden_layers
    batch = batch_for(model)
    got, res = capture(model, ["embed", "resid.*"], batch, output_hidden_states=True)
    hs = res.hidden_states
    assert len(hs) == L + 1
    torch.testing.assert_close(got["embed"], hs[0], rtol=0, atol=0)
    for i in range(L - 1):
        torch.testing.assert_close(got[f"resid.{i}"], hs[i + 1], rtol=0, atol=0)
    last = got[f"resid.{L - 1}"]
    if name == "bert":
        # No final norm: the last hidden state is the last block's output.
        torch.testing.assert_close(last, hs[L], rtol=0, atol=0)
    else:
        # transformers 5.x replaces hidden_states[-1] by last_hidden_state (after the final norm):
        # resid.{L-1} is the raw block output, final_norm(resid.{L-1}) == hidden_states[L].
        norm = model.module.get_submodule(model.points["final_norm"].module_path)
        assert not torch.allclose(last, hs[L])
        torch.testing.assert_close(norm(last), hs[L], rtol=0, atol=0)
        fn, _ = capture(model, ["final_norm"], batch)
        torch.testing.assert_close(fn["final_norm"], hs[L], rtol=0, atol=0)


def test_llama_mlp_act_is_gate_times_up(llama):
    batch = batch_for(llama)
    for i in range(2):
        post = f"model.layers.{i}.post_attention_layernorm"
        got, _ = capture(llama, [f"mlp_act.{i}", post], batch)
        mlp = llama.module.model.layers[i].mlp
        x = got[post]
        with torch.no_grad():
            expected = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        torch.testing.assert_close(got[f"mlp_act.{i}"], expected, rtol=1e-6, atol=1e-6)
        assert got[f"mlp_act.{i}"].shape[-1] == llama.module.config.intermediate_size


def test_llama_residual_stream_decomposes(llama):
    """resid.0 = embed + attn_out.0 + down_proj(mlp_act.0)."""
    got, _ = capture(llama, ["embed", "attn_out.0", "mlp_act.0", "resid.0"], batch_for(llama))
    with torch.no_grad():
        mlp_out = llama.module.model.layers[0].mlp.down_proj(got["mlp_act.0"])
    torch.testing.assert_close(
        got["embed"] + got["attn_out.0"] + mlp_out, got["resid.0"], rtol=1e-5, atol=1e-6
    )


def test_bert_attn_out_and_mlp_act(bert):
    batch = batch_for(bert)
    got, _ = capture(bert, ["embed", "attn_out.0", "mlp_act.0", "encoder.layer.0.attention"], batch)
    layer = bert.module.encoder.layer[0]
    with torch.no_grad():
        attn = layer.attention.output.LayerNorm(got["attn_out.0"] + got["embed"])
        torch.testing.assert_close(attn, got["encoder.layer.0.attention"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(
            layer.intermediate.intermediate_act_fn(layer.intermediate.dense(attn)), got["mlp_act.0"]
        )


@pytest.mark.parametrize("name", ["bert", "llama", "gpt2"])
def test_attention_pattern_matches_output_attentions(name, request):
    model: LoadedModel = request.getfixturevalue(name)
    batch = batch_for(model)
    mask = batch["attention_mask"].bool()
    with pytest.raises(Exception, match="enable_attention_probs"):
        capture(model, ["attn_pattern.0"], batch)
    model.enable_attention_probs()
    try:
        got, res = capture(model, ["attn_pattern.*"], batch, output_attentions=True)
    finally:
        model.enable_attention_probs(False)
    assert model.module.config._attn_implementation == "sdpa"
    heads = model.module.config.num_attention_heads
    for i, ref in enumerate(res.attentions):
        p = got[f"attn_pattern.{i}"]
        assert p.shape == (2, heads, mask.shape[1], mask.shape[1])
        torch.testing.assert_close(p, ref, rtol=0, atol=0)
        # Real query rows sum to 1 over real keys; pad keys get ~0 probability.
        real_rows = p.sum(-1)[mask[:, None, :].expand(-1, heads, -1)]
        torch.testing.assert_close(real_rows, torch.ones_like(real_rows))
        pad_keys = p.permute(0, 3, 1, 2)[~mask]
        assert pad_keys.numel() > 0 and pad_keys.abs().max() < 1e-6
        if name != "bert":  # causal: no weight on future keys
            assert torch.triu(p[0, 0], diagonal=1).abs().max() == 0


@pytest.mark.parametrize("name", ["bert", "llama", "gpt2"])
def test_eager_attention_does_not_change_numbers(name, request):
    model: LoadedModel = request.getfixturevalue(name)
    batch = batch_for(model)
    with torch.no_grad():
        before = model.module(**_text(batch), output_hidden_states=True).hidden_states
        model.enable_attention_probs()
        assert model.attention_probs_enabled
        after = model.module(**_text(batch), output_hidden_states=True).hidden_states
        model.enable_attention_probs(False)
    mask = batch["attention_mask"].bool()
    for a, b in zip(before, after, strict=True):
        assert (a - b)[mask].abs().max() < 1e-5


def test_attach_can_replace_activation(llama):
    batch = batch_for(llama)
    with torch.no_grad():
        clean = llama.forward(batch).logits
    point = llama.resolve(["resid.0"])[0]
    handle = point.attach(llama.module, lambda t: torch.zeros_like(t))
    try:
        with torch.no_grad():
            patched = llama.forward(batch).logits
    finally:
        handle.remove()
    assert not torch.allclose(clean, patched)
    inp = llama.resolve(["mlp_act.0"])[0]
    handle = inp.attach(llama.module, lambda t: t * 0)
    try:
        got, _ = capture(llama, ["resid.0", "embed", "attn_out.0"], batch)
    finally:
        handle.remove()
    assert llama.module.model.layers[0].mlp.down_proj.bias is None
    torch.testing.assert_close(got["resid.0"], got["embed"] + got["attn_out.0"])
