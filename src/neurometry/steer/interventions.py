"""Interventions on a running model, as context managers: steering, directional ablation, clamping,
zero / mean ablation of an attention head or an MLP.

Every function here registers forward hooks on ``model.module`` (through
:mod:`neurometry.models.hooks`) when the ``with`` block starts and removes them when it ends, also when
the block raises. They act on every forward pass inside the block, including the passes of
``model.module.generate(...)``. Interventions nest: hooks run in the order they were registered.

Example::

    with apply(model, vector, "resid.12", alpha=4.0):
        out = model.module.generate(**batch, max_new_tokens=20)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import Positions, adding, capture, hooked, removing, token_point
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint


def _vector(values: Any, name: str, width: int | None = None) -> torch.Tensor:
    """A finite 1-D float tensor (float64 kept until the hook casts it to the activation dtype)."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if t.ndim != 1 or t.numel() == 0:
        raise NeurometryError(f"{name} must be a non-empty 1-D vector, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise NeurometryError(f"{name} contains {int((~torch.isfinite(t)).sum())} NaN or Inf values; fix it")
    if width is not None and t.numel() != width:
        raise NeurometryError(f"{name} has {t.numel()} values but the point has {width} features")
    return t


def _check_width(point: HookPoint, tensor: torch.Tensor, vector: torch.Tensor) -> None:
    if tensor.shape[-1] != vector.numel():
        raise NeurometryError(
            f"the vector has {vector.numel()} values but {point.name} has {tensor.shape[-1]} features; "
            "build the vector at this point of this model"
        )


@contextmanager
def apply(
    model: LoadedModel, vector: Any, point: str, alpha: float, positions: Positions = None
) -> Iterator[None]:
    """Add ``alpha * vector`` to ``point``'s tensor (batch, seq, d) in every forward pass of the block.

    Args:
        model: a ``LoadedModel``.
        vector: (d,) steering vector (e.g. from :func:`neurometry.steer.vectors.build_vector`), used
            at its stored scale.
        point: one hook point with a (batch, tokens, d) tensor, e.g. ``"resid.12"``.
        alpha: multiplier; 0 leaves every output bit-identical to the unsteered model.
        positions: None steers every position, including every token produced by ``generate``.
            Otherwise ints (negative from the end) or a slice, indexing the sequence axis of the
            padded input; in a cached ``generate`` they apply to the prompt pass only, and the
            later single-token passes (whose positions lie beyond the prompt) are left unsteered.
            Without a KV cache each pass holds the whole sequence so far and the indices apply to
            it (negative indices then follow the growing end).

    The addition happens in the activation's dtype: ``alpha * vector`` is formed in float64 and cast once
    to the model's device and dtype (float32, bfloat16 or float16).
    """
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise NeurometryError(f"alpha must be a number, got {alpha!r}") from None
    if not np.isfinite(alpha):
        raise NeurometryError(f"alpha must be finite, got {alpha}")
    hook_point = token_point(model, point)
    direction = _vector(vector, "vector")
    delta = (alpha * direction).to(device=model.device, dtype=model.dtype)
    with adding(model, hook_point, delta, positions):
        yield


@contextmanager
def ablate_direction(model: LoadedModel, direction: Any, points: str | Sequence[str]) -> Iterator[None]:
    """Project a direction out of each point's tensor: x <- x - (x . u) u with u = direction / ||direction||.

    Directional ablation of Arditi et al. 2024 ("Refusal in language models is mediated by a single
    direction"), who ablate it from every layer's residual stream and from every attention and MLP
    output written into it (e.g. ``points=["resid.*", "attn_out.*"]``). ``points`` accepts aliases
    and globs; each point must have width d (``mlp_act.i`` is the MLP's hidden layer, not its output).
    """
    unit = _vector(direction, "direction")
    norm = float(torch.linalg.vector_norm(unit))
    if norm == 0.0:
        raise NeurometryError("the direction is zero; it has nothing to ablate")
    unit = (unit / norm).to(device=model.device, dtype=model.dtype)
    patterns = [points] if isinstance(points, str) else list(points)
    found = model.resolve(patterns)
    for p in found:
        if p.kind != "tokens":
            raise NeurometryError(f"point {p.name!r} is {p.kind!r}; directional ablation needs token points")

    def make(p: HookPoint):
        def project_out(tensor: torch.Tensor) -> torch.Tensor:
            _check_width(p, tensor, unit)
            u = unit.to(dtype=tensor.dtype, device=tensor.device)
            return tensor - (tensor @ u).unsqueeze(-1) * u

        return project_out

    handles: list = []
    with removing(handles):
        for p in found:
            handles.append(p.attach(model.module, make(p)))
        yield


@contextmanager
def clamp_unit(model: LoadedModel, point: str, unit: int, value: float) -> Iterator[None]:
    """Set feature ``unit`` of ``point``'s tensor (last axis) to ``value`` at every position."""
    hook_point = token_point(model, point)
    value = float(value)
    if not np.isfinite(value):
        raise NeurometryError(f"value must be finite, got {value}")

    def clamp(tensor: torch.Tensor) -> torch.Tensor:
        width = tensor.shape[-1]
        if not -width <= unit < width:
            raise NeurometryError(f"unit {unit} is outside the {width} features of {hook_point.name}")
        out = tensor.clone()
        out[..., unit] = value
        return out

    with hooked(model, hook_point, clamp):
        yield


def _layer_path(model: LoadedModel, alias: str, layer: int) -> str:
    name = f"{alias}.{layer}"
    if name not in model.points:
        layers = sum(1 for k in model.points if k.startswith(alias + "."))
        raise NeurometryError(
            f"{model.name} has no layer {layer} ({layers} layers, 0..{layers - 1})"
            if layers
            else f"{model.name} has no {alias}.* points; head and MLP ablation need a known layout (llama, gpt2)"
        )
    return model.points[name].module_path


def _replacement(mode: str, mean_activation: Any, width: int, what: str) -> torch.Tensor | None:
    if mode not in ("zero", "mean"):
        raise NeurometryError(f"mode must be 'zero' or 'mean', not {mode!r}")
    if mode == "zero":
        if mean_activation is not None:
            raise NeurometryError("mean_activation is only used with mode='mean'")
        return None
    if mean_activation is None:
        raise NeurometryError(
            f"mode='mean' needs mean_activation, the mean {what} ({width} values) over a dataset"
        )
    return _vector(mean_activation, "mean_activation", width)


@contextmanager
def ablate_head(
    model: LoadedModel, layer: int, head: int, mode: str = "zero", mean_activation: Any = None
) -> Iterator[None]:
    """Zero or mean-ablate one attention head's output in one layer.

    The head's output is its slice ``[head * head_dim, (head + 1) * head_dim)`` of the input of the
    attention output projection (``o_proj`` for Llama), read by a forward pre-hook, so zeroing it is
    the same as zeroing those columns of the projection's weight. ``mode="mean"`` writes
    ``mean_activation`` (head_dim,) there instead (mean ablation; compute it with
    :func:`mean_head_output`).
    """
    config = getattr(model.module, "config", None)
    n_heads = getattr(config, "num_attention_heads", None)
    if not n_heads:
        raise NeurometryError(f"{model.name} has no config.num_attention_heads; head ablation needs it")
    proj_path = _layer_path(model, "attn_out", layer)
    proj = model.module.get_submodule(proj_path)
    width = getattr(proj, "in_features", None)
    if width is None or width % n_heads:
        raise NeurometryError(f"cannot split the input of {proj_path} into {n_heads} heads")
    head_dim = width // n_heads
    if not 0 <= head < n_heads:
        raise NeurometryError(f"head {head} is outside 0..{n_heads - 1}")
    value = _replacement(mode, mean_activation, head_dim, "output of that head")
    lo, hi = head * head_dim, (head + 1) * head_dim
    point = HookPoint(f"head.{layer}.{head}", proj_path, "tokens", "input")

    def ablate(tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        out[..., lo:hi] = 0.0 if value is None else value.to(dtype=tensor.dtype, device=tensor.device)
        return out

    with hooked(model, point, ablate):
        yield


def _mlp_path(model: LoadedModel, layer: int) -> str:
    """The MLP block of ``layer``: the parent of the module that ``mlp_act.{layer}`` hooks."""
    inner = _layer_path(model, "mlp_act", layer)
    return inner.rsplit(".", 1)[0]


@contextmanager
def ablate_mlp(
    model: LoadedModel, layer: int, mode: str = "zero", mean_activation: Any = None
) -> Iterator[None]:
    """Zero or mean-ablate the output of one layer's MLP block (what it adds to the residual stream).

    ``mode="mean"`` replaces it at every position by ``mean_activation`` (d,).
    """
    path = _mlp_path(model, layer)
    hidden = getattr(getattr(model.module, "config", None), "hidden_size", None)
    value = _replacement(mode, mean_activation, hidden, "MLP output") if hidden else None
    if hidden is None and mode != "zero":
        raise NeurometryError(f"{model.name} has no config.hidden_size; use mode='zero'")
    point = HookPoint(f"mlp.{layer}", path, "tokens")

    def ablate(tensor: torch.Tensor) -> torch.Tensor:
        if value is None:
            return torch.zeros_like(tensor)
        return value.to(dtype=tensor.dtype, device=tensor.device).expand_as(tensor).clone()

    with hooked(model, point, ablate):
        yield


def mean_head_output(model: LoadedModel, prompts: list[str], layer: int, head: int) -> np.ndarray:
    """Mean of one head's output (head_dim,) over every real token of ``prompts`` (for mean ablation)."""
    n_heads = model.module.config.num_attention_heads
    proj_path = _layer_path(model, "attn_out", layer)
    head_dim = model.module.get_submodule(proj_path).in_features // n_heads
    if not 0 <= head < n_heads:
        raise NeurometryError(f"head {head} is outside 0..{n_heads - 1}")
    point = HookPoint("head_input", proj_path, "tokens", "input")
    encoded = dict(model.tokenizer(list(prompts), return_tensors="pt", padding=True))
    _, captured = capture(model, inputs_to(encoded, model.device), [point], stop_early=True)
    heads = captured[point.name][..., head * head_dim : (head + 1) * head_dim].cpu().to(torch.float64)
    mask = encoded["attention_mask"].bool()
    return heads[mask].mean(dim=0).numpy()
