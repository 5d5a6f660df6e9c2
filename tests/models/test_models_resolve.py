"""Point resolution: aliases, module paths, globs, ordering, suggestions, describe_points."""

from __future__ import annotations

import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models import HookPoint, describe_points
from neurometry.models.loaded import glob_regex
from neurometry.models.tiny import tiny_bert, tiny_llama

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def names(points):
    return [p.name for p in points]


def test_alias_table_in_depth_order(bert, llama):
    assert list(bert.points) == [
        "embed",
        *[f"{k}.{i}" for i in range(2) for k in ("attn_pattern", "attn_out", "mlp_act", "resid")],
    ]
    assert list(llama.points)[0] == "embed" and list(llama.points)[-2:] == ["final_norm", "logits"]
    assert [n for n in llama.points if n.startswith("resid")] == ["resid.0", "resid.1"]
    assert llama.points["mlp_act.1"] == HookPoint(
        "mlp_act.1", "model.layers.1.mlp.down_proj", "tokens", "input"
    )
    assert llama.points["attn_pattern.0"].kind == "attention" and llama.points["attn_pattern.0"].index == 1
    assert bert.points["embed"].module_path == "embeddings"
    assert "logits" not in bert.points  # a bare encoder


def test_glob_regex():
    assert glob_regex("resid.*").match("resid.12")
    assert not glob_regex("resid.*").match("resid.1.x")
    assert glob_regex("attn_*.3").match("attn_out.3") and glob_regex("attn_*.3").match("attn_pattern.3")
    assert glob_regex("encoder.**.dense").match("encoder.layer.0.attention.output.dense")
    assert not glob_regex("encoder.*.dense").match("encoder.layer.0.attention.output.dense")


def test_resolve_globs_order_and_duplicates(bert):
    assert names(bert.resolve(["resid.*"])) == ["resid.0", "resid.1"]
    assert names(bert.resolve(["attn_*.1"])) == ["attn_pattern.1", "attn_out.1"]
    assert names(bert.resolve(["resid.1", "embed", "resid.*", "resid.0"])) == ["embed", "resid.0", "resid.1"]
    # a module path equal to an alias comes back as the alias, once
    assert names(bert.resolve(["encoder.layer.*", "resid.0"])) == ["resid.0", "resid.1"]
    assert names(bert.resolve("mlp_act.0")) == ["mlp_act.0"]


def test_resolve_module_paths_guess_kinds(bert, llama):
    out = bert.resolve(["encoder.layer.*.output", "pooler", "encoder.layer.0.attention"])
    assert names(out) == [
        "encoder.layer.0.attention",
        "encoder.layer.0.output",
        "encoder.layer.1.output",
        "pooler",
    ]
    kinds = {p.name: (p.kind, p.index) for p in out}
    assert kinds["encoder.layer.0.output"] == ("tokens", None)
    assert kinds["encoder.layer.0.attention"] == ("tokens", 0)  # tuple output: first tensor
    assert kinds["pooler"] == ("vector", None)
    everything = bert.resolve(["**"])
    assert len(everything) == len({(p.module_path, p.capture, p.index) for p in everything})
    assert set(bert.points) <= set(names(everything))
    dense = llama.resolve(["model.**.o_proj"])
    assert names(dense) == ["attn_out.0", "attn_out.1"]


def test_unknown_points_suggest(bert):
    with pytest.raises(NeurometryError, match=r"did you mean resid\.1.*neurometry points tiny-bert"):
        bert.resolve(["resdi.1"])
    with pytest.raises(NeurometryError, match=r"matches no point.*neurometry points"):
        bert.resolve(["nothing.*"])
    with pytest.raises(NeurometryError, match="did you mean encoder.layer.0.output"):
        bert.resolve(["encoder.layer.0.outptu"])


def test_describe_points(bert, llama):
    rows = describe_points(bert)
    assert [r["point"] for r in rows] == list(bert.points)
    by = {r["point"]: r for r in rows}
    assert by["embed"] == {"point": "embed", "module_path": "embeddings", "kind": "tokens", "shape": "T x 32"}
    assert by["attn_pattern.1"]["shape"] == "4 x T x T"
    assert by["mlp_act.0"]["shape"] == "T x 64"
    assert not bert.attention_probs_enabled  # restored after the probe
    lrows = {r["point"]: r["shape"] for r in describe_points(llama)}
    assert lrows["logits"] == f"T x {llama.tokenizer.vocab_size}"
    assert lrows["attn_pattern.0"] == "4 x T x T"  # GQA keys are repeated to all 4 heads


def test_select_variants():
    t = torch.zeros(2, 3)
    p = HookPoint("x", "a", "tokens")
    assert p.select(t) is t
    assert p.select((t, None)) is t
    assert HookPoint("x", "a", "tokens", index=1).select((None, t)) is t
    assert HookPoint("x", "a", "tokens", capture="input").select((t, 5)) is t

    class Out(dict):
        logits = t

    assert p.select(Out(hidden=torch.ones(1))) is t
    with pytest.raises(NeurometryError):
        p.select(("no tensor",))
    with pytest.raises(ValueError):
        HookPoint("x", "a", "volume")
