"""``load_model``: one entry point for zoo names, local HF folders and ``module:attribute``."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.models.devices import resolve_device, resolve_model_dtype
from neurometry.models.loaded import LoadedModel, is_hf_model
from neurometry.models.points import HookPoint
from neurometry.models.registry import ZOO_NAMES, load_zoo_model


def _quiet_transformers() -> None:
    """Our own progress bars are the ones users read; transformers' per-load bars are noise."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_model(
    spec: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    device_map: str | dict[str, Any] | None = None,
    offload_folder: str | Path | None = None,
) -> LoadedModel:
    """Load ``spec``: a zoo name (``minilm``), a local Hugging Face folder, or ``module:attribute``.

    The module is returned in eval mode, float32, on CPU; ``device`` (``cpu|cuda|cuda:N|mps|auto``,
    see ``models.devices.resolve_device``) and ``dtype`` (``float32|bfloat16|float16``) move and cast
    it (a Hugging Face folder loads straight in ``dtype``). A ``LoadedModel`` given as ``spec`` is
    returned, placed when ``device`` or ``dtype`` is given. Every user mistake raises
    ``NeurometryError`` with a one-line fix.

    A Hugging Face folder with sharded safetensors loaded with ``device="auto"`` on a machine with CUDA
    is spread by accelerate (``device_map="auto"``: over the GPUs, then the CPU where they are too
    small); ``device_map`` (and ``offload_folder`` for ``"disk"`` parts) asks for that, or for a map of
    one's own, on any folder. See ``models.hf.load_hf_folder``.
    """
    if isinstance(spec, LoadedModel):
        return spec.place(device, dtype)
    if device_map is not None and not Path(str(spec)).is_dir():
        raise NeurometryError(f"device_map applies to a local Hugging Face folder, not {spec!r}")
    spread = str(device).strip().lower() == "auto" and torch.cuda.is_available()
    if device is not None:
        device = resolve_device(device)  # before the load: a missing GPU is found out at once
    if dtype is not None:
        dtype = resolve_model_dtype(dtype)
    _quiet_transformers()
    spec = str(spec)
    if spec in ZOO_NAMES:
        return load_zoo_model(spec).place(device, dtype)
    if Path(spec).is_dir():
        from neurometry.models.hf import is_sharded, load_hf_folder

        if device_map is None and spread and is_sharded(spec):
            device_map = "auto"
        return load_hf_folder(spec, device=device, dtype=dtype, device_map=device_map, offload_folder=offload_folder)
    if ":" in spec and not Path(spec).exists():
        return load_callable(spec).place(device, dtype)
    if os.sep in spec or spec.startswith("."):
        raise NeurometryError(
            f"no such model folder {spec!r}; give an existing Hugging Face folder or a zoo name"
        )
    raise NeurometryError(
        f"unknown model {spec!r}{did_you_mean(spec, ZOO_NAMES)}; choose one of {', '.join(ZOO_NAMES)} "
        "(see `neurometry models`) or give a local Hugging Face folder or module:attribute"
    )


def load_callable(spec: str) -> LoadedModel:
    """Import ``pkg.mod:attr`` (the current folder first on ``sys.path``) and wrap what it gives.

    A callable attribute is called with no arguments. The result may be a ``LoadedModel``
    (used as is), a HF ``PreTrainedModel`` (layout from its config; tokenizer from its
    ``.tokenizer`` or its ``config._name_or_path`` folder), or any ``nn.Module`` carrying
    ``.tokenizer`` (text) or ``.preprocess`` (image).
    """
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise NeurometryError(f"bad model spec {spec!r}; write it as package.module:attribute")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise NeurometryError(
            f"cannot import {mod_name!r} for {spec!r} ({exc}); check the module name and run from its folder"
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            choices = [n for n in dir(obj) if not n.startswith("_")]
            raise NeurometryError(
                f"{mod_name!r} has no attribute {attr!r}{did_you_mean(part, choices)}; fix {spec!r}"
            )
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, nn.Module):
        obj = obj()
    if isinstance(obj, LoadedModel):
        return obj
    if not isinstance(obj, nn.Module):
        raise NeurometryError(
            f"{spec!r} gave a {type(obj).__name__}, not a torch.nn.Module; return the model"
        )
    if is_hf_model(obj):
        from neurometry.models.hf import tokenizer_for, wrap_hf

        return wrap_hf(obj, tokenizer_for(obj), spec, {"source": spec})
    return wrap_module(obj, spec)


def wrap_module(module: nn.Module, name: str) -> LoadedModel:
    """A ``LoadedModel`` around a plain ``nn.Module`` that carries ``.tokenizer`` (text), ``.preprocess``
    (images) or ``.example_input`` (a batch of one, for a model of numeric arrays: rows of .npy/.npz data).

    Its aliases are ``output`` (the root module's output) and ``PATH.cell`` for each LSTM (its cell state per
    step); any module path is a point too.
    """
    tokenizer = getattr(module, "tokenizer", None)
    preprocess = getattr(module, "preprocess", None)
    example = getattr(module, "example_input", None)
    if tokenizer is None and preprocess is None and example is None:
        raise NeurometryError(
            f"model {name!r} is a plain nn.Module; give it a `.tokenizer` (text), `.preprocess` "
            "(image paths -> batch) or `.example_input` (a batch of one array row) attribute, or return a LoadedModel"
        )
    if tokenizer is not None:
        from neurometry.models.hf import prepare_tokenizer

        tokenizer = prepare_tokenizer(tokenizer)
    module = module.float().eval()
    loaded = LoadedModel(
        name=name,
        module=module,
        modality="text" if tokenizer is not None else "image" if preprocess is not None else "tensor",
        tokenizer=tokenizer,
        preprocess=preprocess if tokenizer is None else None,
        points={},
        info={"source": name},
        example_input=example if tokenizer is None and preprocess is None else None,
    )
    root = loaded.module_point("")
    loaded.points["output"] = HookPoint("output", "", root.kind, "output", root.index)  # last in depth order
    return loaded


def state_difference(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], show: int = 2) -> str:
    """How a state dict's tensor shapes ``found`` differ from a model's ``expected`` (name -> shape), in a few
    words: the missing and unexpected names and the shapes that differ, the first ``show`` of each; empty when
    every name and shape agrees."""

    def first(items: list[str]) -> str:
        return ", ".join(items[:show]) + (f" and {len(items) - show} more" if len(items) > show else "")

    def size(shape: tuple[int, ...]) -> str:
        return "x".join(str(n) for n in shape) or "a scalar"

    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [f"{name} is {size(found[name])} (the model's {size(expected[name])})"
              for name in expected if name in found and tuple(found[name]) != tuple(expected[name])]
    parts = [f"missing {first(missing)}"] * bool(missing) + [f"unexpected {first(unexpected)}"] * bool(unexpected)
    return "; ".join(parts + [f"shapes differ: {first(shapes)}"] * bool(shapes))
