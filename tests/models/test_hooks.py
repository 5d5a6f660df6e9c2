"""neurometry.models.hooks: known answers for capture, hooked and adding on tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models.hooks import (
    PastLength,
    adding,
    capture,
    decode_tokens,
    encode_prompt,
    hooked,
    position_index,
    removing,
    require_text,
    single_token_id,
    token_point,
    unembedding,
)
from neurometry.models.loaded import is_hf_model
from neurometry.models.points import HookPoint
from neurometry.models.tiny import tiny_bert, tiny_llama

torch.set_num_threads(2)

SENTENCES = ["the cat sat on the mat today", "a dog barked"]


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(seed=11, layers=3)


@pytest.fixture(scope="module")
def batch(llama):
    return dict(llama.tokenizer(SENTENCES, return_tensors="pt", padding=True))


def no_hooks(model) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not getattr(m, "_forward_hooks_with_kwargs", {})
        for m in model.module.modules()
    )


def by_hand(model, batch, path: str, side: str = "output") -> tuple[torch.Tensor, torch.Tensor]:
    """The module's output (or first input) and the logits of one plain forward, with a hand-made hook."""
    got = {}
    module = model.module.get_submodule(path)
    if side == "output":
        handle = module.register_forward_hook(lambda _m, _a, out: got.setdefault("x", out.detach().clone()))
    else:
        handle = module.register_forward_pre_hook(lambda _m, args: got.setdefault("x", args[0].detach().clone()))
    try:
        with torch.no_grad():
            logits = model.module(**batch).logits
    finally:
        handle.remove()
    return got["x"], logits


def test_capture_equals_a_hand_written_forward_hook(llama, batch):
    points = llama.resolve(["embed", "attn_out.1", "mlp_act.0", "resid.2"])
    out, got = capture(llama, batch, points)
    assert list(got) == [p.name for p in points]
    for p in points:
        want, logits = by_hand(llama, batch, p.module_path, p.capture)
        assert torch.equal(got[p.name], want), p.name
    assert torch.equal(out.logits, logits)
    assert no_hooks(llama)


def test_capture_copies_what_it_reads(llama, batch):
    point = llama.points["resid.0"]
    _, first = capture(llama, batch, [point])
    before = first["resid.0"].clone()
    first["resid.0"] += 1.0  # a plain tensor: modifiable in place, and the model is untouched
    _, again = capture(llama, batch, [point])
    assert torch.equal(again["resid.0"], before)
    assert not first["resid.0"].requires_grad


def test_stop_early_equals_full_forward_and_stops(llama, batch):
    points = llama.resolve(["embed", "resid.0", "attn_out.1"])
    full_out, full = capture(llama, batch, points)
    calls = []
    handle = llama.module.get_submodule(llama.points["resid.2"].module_path).register_forward_hook(
        lambda *_: calls.append(1)
    )
    try:
        early_out, early = capture(llama, batch, points, stop_early=True)
    finally:
        handle.remove()
    assert early_out is None and full_out is not None
    assert calls == []  # the last block never ran
    assert list(early) == list(full)
    for name in full:
        assert torch.equal(early[name], full[name])
    assert no_hooks(llama)


def test_capture_with_run_and_without_points(llama, batch):
    point = llama.points["resid.1"]
    ids = batch["input_ids"][:1]
    out, got = capture(llama, None, [point], run=lambda: llama.module(input_ids=ids))
    want, logits = by_hand(llama, {"input_ids": ids}, point.module_path)
    assert torch.equal(got["resid.1"], want) and torch.equal(out.logits, logits)
    out, got = capture(llama, batch, [])
    assert got == {} and torch.equal(out.logits, by_hand(llama, batch, "lm_head")[1])


def test_capture_raises_for_a_point_never_reached(llama, batch):
    ghost = HookPoint("ghost", "model.layers.0.mlp", "tokens")
    unreachable = HookPoint("never", "model.rotary_emb", "tokens")
    with pytest.raises(RuntimeError, match="never reached"):
        capture(llama, batch, [ghost, unreachable], run=lambda: llama.module.model.layers[0].mlp(torch.zeros(1, 2, 32)))
    assert no_hooks(llama)


def test_capture_input_points(llama, batch):
    proj = llama.points["attn_out.0"].module_path
    heads = HookPoint("heads.0", proj, "tokens", "input")
    _, got = capture(llama, batch, [heads])
    want, _ = by_hand(llama, batch, proj, "input")
    assert torch.equal(got["heads.0"], want) and want.shape[-1] == 32


def test_adding_zero_is_bit_identical(llama, batch):
    clean = by_hand(llama, batch, "lm_head")[1]
    for point in ("resid.0", "attn_out.1", "mlp_act.2"):
        width = capture(llama, batch, [llama.points[point]])[1][point].shape[-1]
        with adding(llama, point, torch.zeros(width, dtype=torch.float64)):
            assert torch.equal(by_hand(llama, batch, "lm_head")[1], clean)
    assert no_hooks(llama)


def test_adding_shifts_the_point_by_exactly_v(llama, batch):
    point = llama.points["resid.1"]
    _, clean = capture(llama, batch, [point])
    v = torch.randn(32, generator=torch.Generator().manual_seed(0))
    with adding(llama, point, v):
        out, steered = capture(llama, batch, [point])  # registered later: sees the added vector
    assert torch.equal(steered["resid.1"], clean["resid.1"] + v)
    with adding(llama, "resid.1", v, positions=[0, -1]):
        _, some = capture(llama, batch, [point])
    delta = some["resid.1"] - clean["resid.1"]
    assert torch.equal(some["resid.1"][:, [0, -1]], clean["resid.1"][:, [0, -1]] + v)
    assert torch.equal(delta[:, 1:-1], torch.zeros_like(delta[:, 1:-1]))
    # downstream of the edit the model's output changed
    assert not torch.equal(out.logits, by_hand(llama, batch, "lm_head")[1])
    assert no_hooks(llama)


def test_adding_checks_width_and_positions(llama, batch):
    with pytest.raises(NeurometryError, match="has 32 features"), adding(llama, "resid.0", torch.ones(5)):
        llama.forward(batch)
    with pytest.raises(NeurometryError, match="outside the"), adding(llama, "resid.0", torch.ones(32), 99):
        llama.forward(batch)
    with pytest.raises(NeurometryError, match="one point"), adding(llama, "resid.*", torch.ones(32)):
        pass
    assert no_hooks(llama)


def test_adding_at_positions_leaves_cached_passes_alone(llama):
    ids = llama.tokenizer(["the cat sat"], return_tensors="pt")["input_ids"]
    point = llama.points["resid.0"]
    v = torch.ones(32)

    def next_token_pass() -> torch.Tensor:
        """resid.0 of a one-token pass after the prompt's pass filled the KV cache."""
        with torch.no_grad():
            cache = llama.module(input_ids=ids, use_cache=True).past_key_values
        past = PastLength()
        handles = [llama.module.register_forward_pre_hook(past.hook, with_kwargs=True)]
        with removing(handles):
            _, got = capture(
                llama, None, [point],
                run=lambda: llama.module(input_ids=ids[:, -1:], cache=cache, use_cache=True),
            )
        assert past.value == ids.shape[1]
        return got["resid.0"]

    def uncached_pass() -> torch.Tensor:
        return capture(llama, None, [point], run=lambda: llama.module(input_ids=ids[:, -1:]))[1]["resid.0"]

    plain_next, plain_alone = next_token_pass(), uncached_pass()
    with adding(llama, point, v, positions=0):
        steered_next, steered_alone = next_token_pass(), uncached_pass()
    # resid.0 of the new token depends only on layer 0, which the edit at resid.0 does not reach:
    # equal unless the hook (wrongly) added v to the cached pass's position 0
    assert torch.equal(steered_next, plain_next)
    # without a cache the lone token is position 0 of its pass, and gets v
    assert torch.equal(steered_alone, plain_alone + v)
    assert no_hooks(llama)


def test_hooked_replaces_and_removes_on_error(llama, batch):
    point = llama.points["mlp_act.1"]
    with hooked(llama, point, torch.zeros_like):
        _, got = capture(llama, batch, [point])
    assert torch.equal(got["mlp_act.1"], torch.zeros_like(got["mlp_act.1"]))
    with pytest.raises(ValueError), hooked(llama, point, lambda t: None):
        assert not no_hooks(llama)
        raise ValueError
    assert no_hooks(llama)


def test_position_index():
    assert position_index(None) is None
    assert position_index(slice(1, 3)) == slice(1, 3)
    assert position_index(-1) == [-1]
    assert position_index(np.array([0, 2])) == [0, 2]
    for bad in (True, [], [1.5], ["a"]):
        with pytest.raises(NeurometryError):
            position_index(bad)


def test_text_helpers(llama):
    batch = encode_prompt(llama, "the cat sat")
    assert batch["input_ids"].shape == (1, 5)  # [CLS] the cat sat [SEP]
    assert decode_tokens(llama, batch["input_ids"][0]) == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert single_token_id(llama, "cat") == int(batch["input_ids"][0, 2])
    with pytest.raises(NeurometryError, match="encodes to 2 tokens"):
        single_token_id(llama, "the cat", "answer")
    norm, head = unembedding(llama)
    assert norm is llama.module.model.norm and head is llama.module.lm_head
    assert token_point(llama, "resid.1") is llama.points["resid.1"]
    with pytest.raises(NeurometryError, match="one point"):
        token_point(llama, "resid.*")


def test_non_text_and_encoder_models():
    bert = tiny_bert(seed=1)
    assert is_hf_model(bert.module) and not is_hf_model(torch.nn.Linear(2, 2))
    with pytest.raises(NeurometryError, match="no unembedding"):
        unembedding(bert)
    bert.tokenizer, tokenizer = None, bert.tokenizer
    try:
        with pytest.raises(NeurometryError, match="not a text model"):
            require_text(bert)
    finally:
        bert.tokenizer = tokenizer
