"""Recorded rows from the model's device to numpy in the on-disk dtype, checked finite.

On a CUDA device the copy of one batch overlaps the forward of the next: :meth:`HostCopies.submit`
converts a batch's rows on the device, starts their copy into page-locked (pinned) host buffers
without waiting and returns the rows of the batch before, once its copy has landed. Two sets of
pinned buffers alternate, and rows are copied out of them into ordinary arrays (the writer thread
keeps what it is given until it writes it). Elsewhere rows come back from the same call that
submits them. Either way the rows, their order and the errors are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch

from neurometry.errors import NeurometryError

DISK_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def on_disk_values(values: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` in the on-disk ``dtype`` (bfloat16 as its int16 bits) on their device, and a 0-d bool
    tensor saying whether every converted value is finite.

    One float64 sum of the converted rows is finite exactly when every value is (float16 overflow turns
    into inf on conversion), so the check costs one reduction and, on a GPU, no wait for the device.
    """
    converted = values.to(DISK_DTYPES[dtype])
    finite = torch.isfinite(converted.sum(dtype=torch.float64))
    return (converted.view(torch.int16) if dtype == "bfloat16" else converted), finite


def host_array(converted: torch.Tensor, dtype: str) -> np.ndarray:
    """A CPU tensor from :func:`on_disk_values` as the numpy array the store writes (bfloat16: uint16 bits)."""
    array = converted.numpy()
    return array.view(np.uint16) if dtype == "bfloat16" else array


def refuse(values: torch.Tensor, dtype: str, point: str, first_input: int, model_dtype: str) -> NoReturn:
    """The one-line error for rows that are not finite in ``dtype``: a model that overflowed (in half
    precision or not), or values beyond the on-disk dtype's range."""
    if not torch.isfinite(values).all():
        if model_dtype != "float32":
            raise NeurometryError(
                f"point {point} is NaN or Inf in the batch starting at input row {first_input}: the model "
                f"overflowed in {model_dtype}; nothing was stored, record with --model-dtype float32"
                + (" or bfloat16" if model_dtype == "float16" else "")
            )
        raise NeurometryError(
            f"point {point} is NaN or Inf in the batch starting at input row {first_input}; "
            "check that input, or record in float32 with a model that runs in float32"
        )
    raise NeurometryError(
        f"point {point} exceeds the {dtype} range near input row {first_input}; record with --dtype float32"
        + (" or bfloat16" if dtype == "float16" else "")
    )


def to_disk(values: torch.Tensor, dtype: str, point: str, first_input: int, model_dtype: str = "float32") -> np.ndarray:
    """Rows (on any device) as a numpy array in the on-disk ``dtype``, waiting for the copy; NaN/Inf and
    float16 overflow refused (:func:`refuse`). ``model_dtype`` is the precision the model ran in."""
    converted, finite = on_disk_values(values, dtype)
    if not finite:
        refuse(values, dtype, point, first_input, model_dtype)
    return host_array(converted.cpu(), dtype)


@dataclass
class _InFlight:
    tag: Any
    first_input: int
    values: dict[str, torch.Tensor]  # the device rows, kept for the error message only
    host: dict[str, torch.Tensor]  # pinned buffers the copies land in
    finite: dict[str, torch.Tensor]  # host 0-d bools, copied alongside
    done: torch.cuda.Event | None  # None off CUDA: the copy was made at once


class HostCopies:
    """Rows of successive batches to numpy, the copy of each overlapping the next batch's forward on CUDA.

    ``submit(rows, first_input, tag)`` takes one batch's rows (point -> device tensor, float32 or wider)
    and returns a list of ``(tag, point -> numpy rows)`` of the batches whose copies are done: on CUDA the
    batch submitted before (the current one is in flight), elsewhere the current one. ``flush()`` returns
    what is still in flight. ``overlap`` (default: the device is CUDA) can be forced off, or on off CUDA,
    where it only hands each batch back one call later (which is how the tests here exercise it).
    """

    def __init__(self, device: torch.device, dtype: str, model_dtype: str = "float32", *, overlap: bool | None = None):
        self.dtype, self.model_dtype = dtype, model_dtype
        self.overlap = device.type == "cuda" if overlap is None else overlap
        self._pinned: list[dict[str, torch.Tensor]] = [{}, {}]
        self._slot = 0
        self._in_flight: _InFlight | None = None
        # copies on their own stream: on the model's stream they would wait behind the next forward
        self._stream = torch.cuda.Stream(device) if self.overlap and device.type == "cuda" else None

    def submit(self, rows: dict[str, torch.Tensor], first_input: int,
               tag: Any = None) -> list[tuple[Any, dict[str, np.ndarray]]]:
        if not self.overlap:
            return [(tag, {p: to_disk(v, self.dtype, p, first_input, self.model_dtype) for p, v in rows.items()})]
        started = self._start(rows, first_input, tag)  # queued behind this batch's forward on the stream
        finished = self.flush()
        self._in_flight = started
        return finished

    def flush(self) -> list[tuple[Any, dict[str, np.ndarray]]]:
        batch, self._in_flight = self._in_flight, None
        if batch is None:
            return []
        if batch.done is not None:
            batch.done.synchronize()
        for point, finite in batch.finite.items():
            if not bool(finite):
                refuse(batch.values[point], self.dtype, point, batch.first_input, self.model_dtype)
        # copied out: the writer keeps these arrays, and the pinned buffers are filled again two batches on
        return [(batch.tag, {p: host_array(h, self.dtype).copy() for p, h in batch.host.items()})]

    def _start(self, rows: dict[str, torch.Tensor], first_input: int, tag: Any) -> _InFlight:
        if self._stream is None:
            converted = {p: on_disk_values(v, self.dtype) for p, v in rows.items()}
            return _InFlight(tag, first_input, rows, {p: c.cpu() for p, (c, _) in converted.items()},
                             {p: ok.cpu() for p, (_, ok) in converted.items()}, None)
        pool, self._slot = self._pinned[self._slot], 1 - self._slot
        host, finite = {}, {}
        self._stream.wait_stream(torch.cuda.current_stream(self._stream.device))  # after this batch's forward
        with torch.cuda.stream(self._stream):
            # the device rows stay referenced (in _InFlight) until the copy is waited for, so the
            # allocator cannot hand their memory to the next forward while this stream still reads it
            for point, values in rows.items():
                converted, ok = on_disk_values(values, self.dtype)
                host[point] = self._buffer(pool, point, converted).copy_(converted, non_blocking=True)
                finite[point] = self._buffer(pool, f"{point}/finite", ok).copy_(ok, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._stream)
        return _InFlight(tag, first_input, rows, host, finite, done)

    @staticmethod
    def _buffer(pool: dict[str, torch.Tensor], key: str, like: torch.Tensor) -> torch.Tensor:
        """A pinned host tensor shaped like ``like``: a view of the pool's buffer, grown when too small."""
        need = like.numel()
        buffer = pool.get(key)
        if buffer is None or buffer.dtype != like.dtype or buffer.numel() < need:
            buffer = pool[key] = torch.empty(max(need, 1), dtype=like.dtype, pin_memory=True)
        return buffer[:need].view(like.shape)
