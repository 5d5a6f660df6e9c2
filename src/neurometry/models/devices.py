"""Where a model runs and in what precision: ``--device`` and ``--model-dtype``.

``resolve_device`` turns ``auto|cpu|cuda|cuda:N|mps`` into a ``torch.device`` (``auto``: CUDA when
present, else CPU, announced once on stderr); ``resolve_model_dtype`` turns
``float32|bfloat16|float16`` into a ``torch.dtype``. Both raise ``NeurometryError`` with a one-line
fix for a device this machine lacks or a name they do not know.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch

from neurometry.errors import NeurometryError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_DEVICE = "cpu"
DEFAULT_MODEL_DTYPE = "float32"


def resolve_device(spec: str | torch.device | None = None, *, announce: bool = True) -> torch.device:
    """``auto|cpu|cuda|cuda:N|mps`` (or a ``torch.device``) as a ``torch.device`` this machine has.

    ``None`` is the CPU. ``auto`` is ``cuda:0`` when CUDA is available, else the CPU, and (with
    ``announce``) prints its choice once on stderr, e.g. ``device: cpu (no CUDA)``. ``cuda`` means
    ``cuda:0``.
    """
    if spec is None:
        return torch.device("cpu")
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
            reason = torch.cuda.get_device_name(device)
        else:
            device, reason = torch.device("cpu"), "no CUDA"
        if announce:
            print(f"device: {device} ({reason})", file=sys.stderr)
        return device
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise NeurometryError("--device mps: this machine has no Apple MPS device; use --device cpu or auto")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise NeurometryError(f"--device {spec!r}: write cuda:N with N a GPU number, e.g. cuda:0")
        if not torch.cuda.is_available():
            raise NeurometryError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        index, count = int(index_text), torch.cuda.device_count()
        if index >= count:
            raise NeurometryError(
                f"--device {spec}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}; pick one of them"
            )
        return torch.device("cuda", index)
    raise NeurometryError(f"unknown --device {spec!r}; use one of {', '.join(DEVICES)}")


def stage_device(spec: str | torch.device | None) -> torch.device | None:
    """``--device`` (``auto|cpu|cuda|cuda:N|mps`` or a ``torch.device``) as the stages take it: the
    accelerator, or None for the CPU, whose NumPy paths then run exactly as without the option. A device
    this machine lacks fails here, in one line, before any work, and so does MPS, which has no float64."""
    device = resolve_device(spec)
    if device.type == "mps":
        raise NeurometryError(
            "--device mps: measure, compare and probe compute in float64, which MPS does not support; "
            "use --device cpu or cuda"
        )
    return None if device.type == "cpu" else device


def resolve_model_dtype(name: str | torch.dtype | None = None) -> torch.dtype:
    """``float32|bfloat16|float16`` (or a floating ``torch.dtype``) as a ``torch.dtype``; ``None`` is float32."""
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        if name not in MODEL_DTYPES.values():
            raise NeurometryError(f"model dtype {name} is not one of {', '.join(MODEL_DTYPES)}")
        return name
    dtype = MODEL_DTYPES.get(str(name).strip().lower())
    if dtype is None:
        raise NeurometryError(f"unknown --model-dtype {name!r}; use one of {', '.join(MODEL_DTYPES)}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """The device as saved in a run's settings: ``cpu``, ``cuda:0``, ``mps``."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else 0}"
    return device.type


def inputs_to(batch: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """A model batch (a tensor or a mapping of tensors) on ``device``; floating tensors (image
    pixels) cast to ``dtype`` when given, integer ones (token ids, masks) left as they are."""

    def move(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if dtype is not None and value.is_floating_point() and value.dtype != dtype:
            return value.to(device=device, dtype=dtype)
        return value.to(device)

    if isinstance(batch, Mapping):
        return {k: move(v) for k, v in batch.items()}
    return move(batch)
