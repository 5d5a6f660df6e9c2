"""What every steering stage does with the model's device and precision: widen what it reduces or compares,
and refuse the NaN/Inf a half-precision model overflows into.

The model may run on any device (``LoadedModel.device``) in float32, bfloat16 or float16; the stages put
the tensors they make there, run in the model's dtype, and reduce (means, PCA, softmax, KL, logit
differences, ranks) in :func:`wide` precision before handing back numpy values on the CPU.
"""

from __future__ import annotations

import torch

from neurometry.errors import NeurometryError
from neurometry.models.devices import dtype_name
from neurometry.models.loaded import LoadedModel

HALF = (torch.float16, torch.bfloat16)


def wide(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as float64 on its own device (float32 on Apple MPS, which has no float64).

    Widening is exact, so a half-precision activation keeps its value and only the arithmetic that
    follows gains precision.
    """
    return tensor.to(torch.float32 if tensor.device.type == "mps" else torch.float64)


def check_finite(values: torch.Tensor, model: LoadedModel, what: str) -> None:
    """Raise ``NeurometryError`` (one line naming ``--model-dtype float32``) when a half-precision model gave
    NaN or Inf in ``values``: float16 overflows past 65504, and what overflows turns into NaN downstream.
    A float32 model's values pass unchecked, as they always have."""
    if model.dtype not in HALF or bool(torch.isfinite(values).all()):
        return
    precision = dtype_name(model.dtype)
    raise NeurometryError(
        f"{what} is NaN or Inf: the model overflowed in {precision}; run it with --model-dtype float32"
        + (" or bfloat16" if model.dtype == torch.float16 else "")
    )


def ran(device: str | None, model_dtype: str | None) -> dict[str, str]:
    """``{"device", "model_dtype"}`` for a saved record's extra, leaving out what is not given."""
    return {k: v for k, v in (("device", device), ("model_dtype", model_dtype)) if v is not None}
