"""Models spread by accelerate's ``device_map``: a sharded folder loads part on the CPU, part offloaded to
disk (what happens to the part of a large model that does not fit a GPU), its points resolve by name and
its recordings equal those of the same folder loaded whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry import NeurometryError, open_store, record
from neurometry.models import load_model
from neurometry.models.hf import is_sharded
from neurometry.models.tiny import tiny_llama

POINTS = ["embed", "resid.*", "attn_pattern.1", "attn_out.1", "mlp_act.1", "logits"]
# layer 1 and the LM head live on disk and are brought in for their forward only
SPREAD = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
          "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "disk"}


@pytest.fixture(scope="module")
def sharded_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded") / "tiny"
    model = tiny_llama()
    model.module.save_pretrained(folder, max_shard_size="20KB")
    model.tokenizer.save_pretrained(folder)
    assert is_sharded(folder) and len(list(folder.glob("*.safetensors"))) >= 2
    return folder


def test_a_spread_model_resolves_points_and_records_what_the_whole_one_does(sharded_folder, sentences_file, tmp_path):
    whole = load_model(str(sharded_folder))
    spread = load_model(str(sharded_folder), device_map=SPREAD, offload_folder=tmp_path / "offload")
    assert whole.device_map is None and whole.placement == "cpu"
    assert spread.device_map == SPREAD and spread.placement == "cpu+disk" and spread.device == torch.device("cpu")
    assert any(p.device.type == "meta" for p in spread.module.parameters())  # really offloaded
    assert [p.name for p in spread.resolve(POINTS)] == [p.name for p in whole.resolve(POINTS)]
    assert [p.module_path for p in spread.resolve(POINTS)] == [p.module_path for p in whole.resolve(POINTS)]
    for name, model in (("whole", whole), ("spread", spread)):
        record(model, sentences_file, POINTS, tmp_path / name, reduce="tokens", batch_size=3, progress=False)
    a, b = open_store(tmp_path / "whole"), open_store(tmp_path / "spread")
    assert b.runs()[0].settings["device"] == "cpu+disk"
    names = [p.point for p in a.points()]
    assert names == [p.point for p in b.points()] and len(names) == 7
    for point in names:  # the same float32 weights and kernels: equal to the last bit
        np.testing.assert_array_equal(b.activations(point), a.activations(point), err_msg=point)


def test_device_map_auto_and_device_auto_without_cuda(sharded_folder, sentences_file, tmp_path):
    auto_map = load_model(str(sharded_folder), device_map="auto")
    assert auto_map.placement == "cpu"  # no GPU here: accelerate keeps it all on the CPU
    if not torch.cuda.is_available():
        assert load_model(str(sharded_folder), device="auto").device_map is None  # spread only with CUDA
    record(auto_map, sentences_file, ["resid.1"], tmp_path / "auto", progress=False)
    record(load_model(str(sharded_folder)), sentences_file, ["resid.1"], tmp_path / "whole", progress=False)
    np.testing.assert_array_equal(open_store(tmp_path / "auto").activations("resid.1"),
                                  open_store(tmp_path / "whole").activations("resid.1"))


def test_a_spread_model_is_not_moved_and_device_map_needs_a_folder(sharded_folder, tmp_path):
    spread = load_model(str(sharded_folder), device_map=SPREAD, offload_folder=tmp_path / "offload")
    with pytest.raises(NeurometryError, match="spread over cpu\\+disk by device_map"):
        spread.place(dtype="bfloat16")
    assert spread.place(device="cpu") is spread  # where it already runs: nothing to do
    with pytest.raises(NeurometryError, match="local Hugging Face folder"):
        load_model("neurometry.models.tiny:tiny_llama", device_map="auto")
