"""Tiny probe forwards: example inputs, module firing order, and what each module returns."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.models.points import HookPoint

if TYPE_CHECKING:
    from neurometry.models.loaded import LoadedModel

PROBE_LEN = 11  # tokens in the probe example (the module-path kind guess relies on it)
PROBE_TEXT = "the quick brown fox jumps over the lazy dog and runs far away " * 8


def example_batch(model: LoadedModel, length: int = PROBE_LEN) -> Any:
    """A batch of one example for ``model.forward``.

    Text: tokenizer output with exactly ``length`` tokens. Image: ``model.preprocess`` of one
    seeded noise image, (1, 3, H, W). Tensor: the model's ``example_input``.
    """
    if model.modality == "tensor":
        if model.example_input is None:
            raise NeurometryError(f"tensor model {model.name!r} has no example input; attach one as `.example_input`")
        return model.example_input
    if model.modality == "text":
        if model.tokenizer is None:
            raise NeurometryError(f"text model {model.name!r} has no tokenizer; attach one as `.tokenizer`")
        return model.tokenizer(
            [PROBE_TEXT], truncation=True, max_length=length, padding="max_length", return_tensors="pt"
        )
    if model.preprocess is None:
        raise NeurometryError(f"image model {model.name!r} has no preprocess; attach one as `.preprocess`")
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "probe.png")
        Image.fromarray(pixels).save(path)
        return model.preprocess([path])


def event_order(root: nn.Module) -> dict[tuple[str, str], int]:
    """Static depth order of hook sites: ``{(module_path, capture): rank}``.

    A depth-first walk of the module tree where a module's input comes before its children
    and its output after them, which is the order a forward pass visits them when children
    are registered in the order they run (true of the supported families).
    """
    order: dict[tuple[str, str], int] = {}

    def walk(mod: nn.Module, path: str, seen: set[int]) -> None:
        if id(mod) in seen:
            return
        seen.add(id(mod))
        order[(path, "input")] = len(order)
        for child_name, child in mod.named_children():
            walk(child, f"{path}.{child_name}" if path else child_name, seen)
        order[(path, "output")] = len(order)

    walk(root, "", set())
    return order


@dataclass(frozen=True)
class ModuleProbe:
    """What one module returned during a probe: the first tensor's shape and where it sat."""

    shape: tuple[int, ...]
    index: int | None  # element of a tuple/list output holding the tensor (None: plain tensor)
    is_float: bool


def probe_modules(model: LoadedModel) -> dict[str, ModuleProbe]:
    """Run one example through ``model`` and record every module's output (first tensor)."""
    seen: dict[str, ModuleProbe] = {}
    handles = []

    def make_hook(path: str):
        def hook(_m: nn.Module, _args: tuple, output: Any) -> None:
            if path in seen:
                return
            index: int | None = None
            tensor = output if isinstance(output, torch.Tensor) else None
            if tensor is None and isinstance(output, (tuple, list)):
                for i, item in enumerate(output):
                    if isinstance(item, torch.Tensor):
                        index, tensor = i, item
                        break
            if tensor is None:
                try:
                    tensor = HookPoint(path, path, "tokens").select(output)
                except NeurometryError:
                    return
            seen[path] = ModuleProbe(tuple(tensor.shape), index, tensor.is_floating_point())

        return hook

    for path, mod in model.module.named_modules():
        handles.append(mod.register_forward_hook(make_hook(path)))
    try:
        with torch.no_grad():
            model.forward(example_batch(model))
    finally:
        for h in handles:
            h.remove()
    return seen


def guess_kind(shape: tuple[int, ...], modality: str, seq_len: int | None) -> str:
    """Kind of a captured tensor from its shape (batch first)."""
    nd = len(shape)
    if nd <= 2:
        return "vector"
    if modality == "image":
        return "spatial" if nd == 4 else "tokens"
    if nd == 4 and seq_len is not None and shape[-1] == shape[-2] == seq_len:
        return "attention"
    return "tokens"


def probe_points(
    model: LoadedModel, points: list[HookPoint], length: int = PROBE_LEN
) -> dict[str, tuple[int, ...]]:
    """Shapes (batch axis included) that ``points`` capture on a one-example batch."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_fn(name: str):
        def fn(t: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(t.shape))

        return fn

    for p in points:
        handles.append(p.attach(model.module, make_fn(p.name)))
    try:
        with torch.no_grad():
            model.forward(example_batch(model, length))
    finally:
        for h in handles:
            h.remove()
    return shapes
