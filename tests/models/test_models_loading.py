"""load_model on local Hugging Face folders and module:attribute specs."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models import LoadedModel, load_model
from neurometry.models.tiny import tiny_llama

torch.set_num_threads(2)


def test_tiny_via_module_attribute():
    model = load_model("neurometry.models.tiny:tiny_bert")
    assert isinstance(model, LoadedModel) and model.family == "bert" and "resid.1" in model.points


def test_hf_folder_roundtrip(tmp_path):
    tiny = tiny_llama()
    tiny.module.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.family == "llama" and loaded.name == str(tmp_path)
    assert list(loaded.points) == list(tiny.points)
    batch = tiny.tokenizer(["hello there", "a b c d e"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward(batch).logits, tiny.forward(batch).logits, rtol=0, atol=0)


def test_folder_without_config(tmp_path):
    with pytest.raises(NeurometryError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's local file ``nm_user_models.py`` in the current folder."""
    (tmp_path / "nm_user_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from neurometry.models.tiny import tiny_bert, tiny_llama

            def loaded():
                return tiny_bert(seed=1)

            def hf_model():
                m = tiny_llama()
                model = m.module
                model.tokenizer = m.tokenizer
                return model

            def hf_model_no_tokenizer():
                return tiny_llama().module

            class Bag(nn.Module):
                def __init__(self, tokenizer):
                    super().__init__()
                    self.emb = nn.EmbeddingBag(tokenizer.vocab_size, 8)
                    self.out = nn.Linear(8, 3)
                    self.tokenizer = tokenizer

                def forward(self, input_ids):
                    return self.out(self.emb(input_ids))

            def bag():
                return Bag(tiny_bert().tokenizer)

            def bare():
                return nn.Linear(3, 3)

            not_a_model = 42
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "nm_user_models", raising=False)
    yield "nm_user_models"
    sys.modules.pop("nm_user_models", None)


def test_module_attribute_variants(user_module):
    m = load_model(f"{user_module}:loaded")
    assert m.name == "tiny-bert"  # a LoadedModel is used as is
    hf = load_model(f"{user_module}:hf_model")
    assert hf.family == "llama" and hf.name == f"{user_module}:hf_model" and "logits" in hf.points
    assert hf.tokenizer.padding_side == "right" and hf.tokenizer.pad_token is not None
    bag = load_model(f"{user_module}:bag")
    assert bag.modality == "text" and list(bag.points) == ["output"]
    assert bag.points["output"].kind == "vector"
    assert [p.name for p in bag.resolve(["emb", "out"])] == ["emb", "out"]
    batch = bag.tokenizer(["x y", "z"], padding=True, return_tensors="pt")
    assert bag.forward(batch).shape == (2, 3)


def test_module_attribute_errors(user_module):
    with pytest.raises(NeurometryError, match="no tokenizer"):
        load_model(f"{user_module}:hf_model_no_tokenizer")
    with pytest.raises(NeurometryError, match=r"\.tokenizer.*\.preprocess"):
        load_model(f"{user_module}:bare")
    with pytest.raises(NeurometryError, match="not a torch.nn.Module"):
        load_model(f"{user_module}:not_a_model")
    with pytest.raises(NeurometryError, match="did you mean loaded"):
        load_model(f"{user_module}:loade")
    with pytest.raises(NeurometryError, match="cannot import"):
        load_model("no_such_module_xyz:thing")
    with pytest.raises(NeurometryError, match="package.module:attribute"):
        load_model("nm_user_models:")
