"""Running a model with hooks: the one public way to read, add to or replace activations at hook points.

Every stage that runs a model with hooks goes through this module: ``record`` captures points over a
dataset, ``steer`` adds vectors, ablates and patches, the logit lens and model diffing read the
residual stream, ``features`` splices a sparse autoencoder in. It also holds the small helpers those
stages share for causal language models: tokenising one prompt, decoding tokens position by position,
and finding the final norm and unembedding.

- :func:`capture`: run the model once and keep the tensors of some points (``stop_early`` abandons the
  forward pass once the last of them is reached).
- :func:`hooked`: a context manager that calls ``fn(tensor)`` at one point in every forward pass of its
  block; a returned tensor replaces the point's tensor in the pass.
- :func:`adding`: a context manager adding a (d,) vector to a (batch, tokens, d) point, at every
  position or at chosen ones (aware of ``generate``'s KV cache, see :class:`PastLength`).
- :func:`removing`: the context manager underneath, removing a list of hook handles when its block ends.

Hooks are registered when a ``with`` block starts and removed when it ends, also when it raises; they
act on every forward pass inside the block, ``model.module.generate(...)`` included, and nest (hooks
on one module run in the order they were registered, so a capture registered inside an ``adding`` block
sees the added vector).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from neurometry.errors import NeurometryError
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint

Positions = int | Sequence[int] | slice | None
"""Token positions of a (batch, tokens, ...) tensor: None (all), an int, ints (negative from the end) or a slice."""

Edit = Callable[[torch.Tensor], torch.Tensor | None]
"""A hook function: gets a point's tensor; returns None to leave it, or a tensor that replaces it."""


# ---------------------------------------------------------------------------------- text models


def require_text(model: LoadedModel) -> None:
    """Raise ``NeurometryError`` unless ``model`` is a text model with a tokenizer."""
    if model.modality != "text" or model.tokenizer is None:
        raise NeurometryError(
            f"{model.name} is not a text model with a tokenizer; pick a causal language model"
        )


def require_causal(model: LoadedModel, purpose: str = "word surprisal") -> None:
    """Refuse, in one line, a model that does not predict the next token from the left context only (``purpose``:
    what it would have given)."""
    require_text(model)
    config = getattr(model.module, "config", None)
    causal = bool(getattr(config, "is_decoder", False)) or any(
        name.endswith("ForCausalLM") or name.endswith("LMHeadModel") for name in (getattr(config, "architectures", None) or [])
    ) or type(model.module).__name__.endswith(("ForCausalLM", "LMHeadModel"))
    if not causal or getattr(config, "is_encoder_decoder", False):
        raise NeurometryError(
            f"{model.name} is not a causal language model (it reads the words on both sides, or predicts no "
            f"next token), so it gives no {purpose}; use a causal LM such as smollm2-135m"
        )


def single_token_id(model: LoadedModel, text: str, what: str = "target") -> int:
    """The id of ``text`` when it encodes to exactly one token (no special tokens), else an error.

    Leading spaces matter for BPE tokenizers: the answer after "The capital of France is" is
    ``" Paris"``, not ``"Paris"``. ``what`` names the string in the error message.
    """
    require_text(model)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise NeurometryError(
            f"{what} {text!r} encodes to {len(ids)} tokens {pieces} with {model.name}'s tokenizer, not 1; "
            "pick a string that is a single token (mind the leading space)"
        )
    return int(ids[0])


def encode_prompt(model: LoadedModel, prompt: str) -> dict[str, torch.Tensor]:
    """The tokenizer output for one prompt: ``input_ids`` and ``attention_mask``, each (1, T).

    Special tokens are added as the tokenizer adds them by default; an empty encoding is an error.
    """
    require_text(model)
    batch = dict(model.tokenizer([prompt], return_tensors="pt"))
    if batch["input_ids"].shape[1] == 0:
        raise NeurometryError("the prompt encodes to no tokens; give a non-empty prompt")
    return batch


def pad_token_id(model: LoadedModel) -> int:
    """The id padding fills with: the tokenizer's pad token, or its end-of-sequence token where it has none."""
    tokenizer = model.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_padded(model: LoadedModel, encoded: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Token id lists as one batch on the model's device, padded on the left (:func:`pad_token_id`) so that
    every row ends at the last column: ``input_ids`` and ``attention_mask`` (B, T), and ``position_ids`` (B, T)
    counting each row's positions from its first real token, so a padded row computes what it computes alone."""
    pad = pad_token_id(model)
    width = max(map(len, encoded))
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=model.device)
    ids = torch.tensor([[pad] * (width - len(e)) + list(e) for e in encoded], device=model.device)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(dim=1) - 1).clamp(min=0)}


def decode_tokens(model: LoadedModel, ids: Any) -> list[str]:
    """Each token id of ``ids`` (a 1-D tensor, array or list of T ids) decoded on its own: T strings
    that line up with the positions."""
    return [model.tokenizer.decode([int(i)]) for i in ids]


def unembedding(model: LoadedModel) -> tuple[nn.Module | None, nn.Module]:
    """The model's final norm (None when the family has none) and its unembedding (``lm_head``).

    Found from the layout's ``final_norm`` point and the HF output embeddings, so the same code
    serves Llama (``model.norm``, ``lm_head``) and GPT-2 (``transformer.ln_f``, ``lm_head``). The
    unembedding maps (..., d) to (..., vocab); its ``weight`` is (vocab, d).
    """
    get_out = getattr(model.module, "get_output_embeddings", None)
    head = get_out() if callable(get_out) else None
    if head is None and "logits" in model.points:
        head = model.points["logits"].module(model.module)
    if head is None:
        raise NeurometryError(
            f"{model.name} has no unembedding (lm_head); the logit lens needs a causal language model"
        )
    norm = model.points["final_norm"].module(model.module) if "final_norm" in model.points else None
    return norm, head


def token_point(model: LoadedModel, point: str) -> HookPoint:
    """The single hook point named ``point`` (an alias or module path, no glob), which must be a
    ``"tokens"`` point, i.e. hold a (batch, tokens, d) tensor."""
    found = model.resolve(point)
    if len(found) != 1:
        raise NeurometryError(f"{point!r} names {len(found)} points; give one point (no glob)")
    if found[0].kind != "tokens":
        raise NeurometryError(
            f"point {found[0].name!r} is {found[0].kind!r}; interventions need a (batch, tokens, d) point "
            "such as resid.i, attn_out.i or mlp_act.i"
        )
    return found[0]


# ---------------------------------------------------------------------------------- capturing


class _StopForward(Exception):
    """Raised from a capture hook once every requested point has been captured."""


def capture(
    model: LoadedModel,
    batch: Any,
    points: Sequence[HookPoint],
    *,
    stop_early: bool = False,
    run: Callable[[], Any] | None = None,
) -> tuple[Any, dict[str, torch.Tensor]]:
    """Run ``model`` once on ``batch`` and keep the tensors of ``points``.

    Args:
        model: a ``LoadedModel``.
        batch: what ``model.forward`` takes: the tokenizer output (``input_ids``, ``attention_mask``,
            each (B, T)) for text, a (B, 3, H, W) tensor for images. Ignored when ``run`` is given.
        points: hook points of ``model`` (``model.resolve(...)`` gives them); may be empty, to run
            the model once for its output.
        stop_early: abandon the forward pass as soon as every point has been captured, so capturing
            ``resid.2`` of a 30-layer model runs three layers; the returned output is then None.
        run: a zero-argument callable that runs ``model.module`` (e.g. with extra keyword arguments
            such as ``position_ids``), in place of ``model.forward(batch)``.

    Returns ``(output, {point name: tensor})``. Each tensor is what the point's module produced,
    batch axis first (e.g. (B, T, d) for a ``"tokens"`` point), detached and copied, so later
    in-place edits in the forward pass do not reach it. A module that runs twice in one pass
    contributes its first call. The pass runs under ``torch.no_grad()``; hooks registered
    earlier (e.g. by :func:`adding`) act before these read the tensors.

    Raises ``RuntimeError`` when a point is never reached by the forward pass.
    """
    points = list(points)
    captured: dict[str, torch.Tensor] = {}
    # one hook per (module, input/output) serving every point read there
    by_site: dict[tuple[str, str], list[HookPoint]] = defaultdict(list)
    for point in points:
        by_site[(point.module_path, point.capture)].append(point)

    def make_hook(served: list[HookPoint], side: str) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any = None) -> None:
            value = inputs if side == "input" else (module, inputs) if side == "cell_states" else output
            for point in served:
                if point.name not in captured:
                    captured[point.name] = point.select(value).detach().clone()
            if stop_early and len(captured) == len(points):
                raise _StopForward

        return hook

    output = None
    handles: list[RemovableHandle] = []
    with removing(handles):
        for served in by_site.values():
            target = served[0].module(model.module)
            side = served[0].capture
            hook = make_hook(served, side)
            if side == "input":
                handles.append(target.register_forward_pre_hook(hook))
            else:
                handles.append(target.register_forward_hook(hook))
        try:
            with torch.no_grad():
                output = run() if run is not None else model.forward(batch)
        except _StopForward:
            pass
    missing = [p.name for p in points if p.name not in captured]
    if missing:
        raise RuntimeError(f"hook points {missing} were never reached by the forward pass")
    return output, captured


# ---------------------------------------------------------------------------------- editing


@contextmanager
def removing(handles: list[RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Remove every hook handle in ``handles`` when the block ends, also when it raises.

    Handles appended to the list inside the block are removed too, so hooks registered one by one
    never outlive the block even when registering a later one fails::

        handles = []
        with removing(handles):
            for point, fn in edits:
                handles.append(point.attach(model.module, fn))
            yield
    """
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def hooked(model: LoadedModel, point: HookPoint, fn: Edit) -> Iterator[None]:
    """Call ``fn(tensor)`` with ``point``'s tensor in every forward pass of the block.

    ``fn`` gets the tensor the point selects (batch axis first, e.g. (B, T, d)); returning a tensor of
    the same shape replaces it in the forward pass (steering, patching, splicing), returning None
    only observes it. See :meth:`neurometry.models.points.HookPoint.attach`.
    """
    handles: list[RemovableHandle] = []
    with removing(handles):
        handles.append(point.attach(model.module, fn))
        yield


class PastLength:
    """Tokens already in the KV cache for the forward pass that is running (0 without a cache).

    Register :meth:`hook` as a forward pre-hook with kwargs on the root module
    (``module.register_forward_pre_hook(past.hook, with_kwargs=True)``); ``value`` is then set at
    the start of every pass. ``generate`` passes the cache as ``past_key_values`` (``cache`` in
    recent transformers); its ``get_seq_length()`` is the number of earlier positions.
    """

    def __init__(self) -> None:
        self.value = 0

    def hook(self, _module: nn.Module, _args: tuple, kwargs: dict) -> None:
        """Forward pre-hook (``with_kwargs=True``): read the cache length of the pass starting now."""
        self.value = 0
        for key in ("past_key_values", "cache"):
            cache = kwargs.get(key)
            if cache is not None and hasattr(cache, "get_seq_length"):
                self.value = int(cache.get_seq_length())
                return


def position_index(positions: Positions) -> list[int] | slice | None:
    """Validate ``positions`` and turn it into an index of a tensor's sequence axis.

    None and slices are returned as they are; an int becomes ``[int]``; a sequence of ints becomes a
    list of ints. Anything else (bools, an empty list, floats) raises ``NeurometryError``.
    """
    if positions is None or isinstance(positions, slice):
        return positions
    if isinstance(positions, (bool, np.bool_)):
        raise NeurometryError(f"positions must be ints or a slice, got {positions!r}")
    if isinstance(positions, (int, np.integer)):
        return [int(positions)]
    out = list(positions)
    if not out or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in out):
        raise NeurometryError(f"positions must be a non-empty list of ints or a slice, got {positions!r}")
    return [int(p) for p in out]


@contextmanager
def adding(
    model: LoadedModel, point: HookPoint | str, delta: torch.Tensor, positions: Positions = None
) -> Iterator[None]:
    """Add ``delta`` (d,) to ``point``'s (batch, tokens, d) tensor in every forward pass of the block.

    Args:
        model: a ``LoadedModel``.
        point: a ``"tokens"`` hook point, or its name (see :func:`token_point`).
        delta: (d,) tensor, cast to the activation's dtype and device in each pass (the addition
            happens in the activation's dtype); a zero vector leaves every output bit-identical.
        positions: None adds at every position, including every token produced by ``generate``.
            Otherwise ints (negative from the end) or a slice, indexing the sequence axis of the
            padded input; in a cached ``generate`` they apply to the prompt pass only, and the
            later single-token passes (whose positions lie beyond the prompt) are left unchanged.
            Without a KV cache each pass holds the whole sequence so far and the indices apply to
            it (negative indices then follow the growing end).

    Raises ``NeurometryError`` in the forward pass when the point's width is not ``delta``'s or a
    position is outside the input.
    """
    hook_point = token_point(model, point) if isinstance(point, str) else point
    index = position_index(positions)
    past = PastLength()

    def add(tensor: torch.Tensor) -> torch.Tensor | None:
        if tensor.shape[-1] != delta.numel():
            raise NeurometryError(
                f"the vector has {delta.numel()} values but {hook_point.name} has {tensor.shape[-1]} features; "
                "build the vector at this point of this model"
            )
        if index is not None and past.value > 0:
            return None  # cached generation step: the explicit positions were in the prompt pass
        shift = delta.to(dtype=tensor.dtype, device=tensor.device)
        if index is None:
            return tensor + shift
        seq = tensor.shape[1]
        if not isinstance(index, slice):
            bad = [p for p in index if not -seq <= p < seq]
            if bad:
                raise NeurometryError(
                    f"positions {bad} are outside the {seq} positions of the input; use smaller indices"
                )
        out = tensor.clone()
        out[:, index] += shift
        return out

    handles = [model.module.register_forward_pre_hook(past.hook, with_kwargs=True)]
    with removing(handles):
        handles.append(hook_point.attach(model.module, add))
        yield
