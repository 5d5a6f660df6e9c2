"""Training rows for decompositions: a held-out tail and a shuffling buffer over the stored rows.

Rows of a ``reduce=tokens`` run come input by input, so consecutive rows are tokens of one text. The
buffer mixes them: it holds ``capacity`` rows from many inputs, shuffles, emits half as batches and
refills that half from the stream (the scheme of SAELens' activation store). Only the buffer is ever
in memory, so the training rows may exceed it. The order is a pure function of the seed, so a
resumed run replays it and skips the batches already trained on.

For training on CUDA the buffer is a tensor on the GPU when it fits (:func:`buffer_fits_on`), shuffled
there by the same permutations (drawn on the CPU), so the batches are the same rows in the same order
on every device. Rows are read through :class:`StoredRows`, which may run in a background thread
(:mod:`neurometry.features.prefetch`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.store.store import Store, bfloat16_bits_to_float32

DEVICE_BUFFER_SHARE = 0.25
"""A buffer lives on the GPU when it and its two transient copies (the shuffled one and the emitted
half) take at most this share of the GPU's free memory; the rest is the SAE's and Adam's."""


def held_out_start(store: Store, point: str, run: str | None, fraction: float) -> int:
    """First row of the held-out tail: the last ``fraction`` of the inputs (whole inputs, so no text
    is split between training and evaluation). 0 < fraction < 1; returns n_rows when fraction is 0."""
    info = store.point_info(point, run)
    n = info.n_rows
    if fraction == 0:
        return n
    if not 0 < fraction < 1:
        raise NeurometryError(f"the held-out fraction must be in [0, 1), got {fraction}")
    meta_rows = store.row_index(info.run_id)["input_row"].to_numpy()[:n]
    inputs = np.unique(meta_rows)
    if len(inputs) < 2:
        raise NeurometryError(f"{point} holds rows of {len(inputs)} input(s); record more inputs to hold some out")
    # at least one input on each side
    cut_input = inputs[min(len(inputs) - 1, max(1, int(round(len(inputs) * (1 - fraction)))))]
    return int(np.searchsorted(meta_rows, cut_input))


def row_mask(store: Store, point: str, run: str | None, min_position: int) -> np.ndarray | None:
    """Rows to use: False for token rows at positions below ``min_position``; None keeps every row.

    The first token of a text is often an attention sink with a norm 100x the others (SmolLM2's
    resid.15: 1% of the rows, 99% of the variance), so SAEs are usually trained and scored without it.
    """
    if min_position <= 0:
        return None
    info = store.point_info(point, run)
    meta = store.row_index(info.run_id)
    if "position" not in meta.columns:
        raise NeurometryError(
            f"run {info.run_id} has one row per input, not per token; --min-position needs reduce=tokens"
        )
    return meta["position"].to_numpy()[: info.n_rows] >= min_position


class StoredRows:
    """Rows of a stored point as float32 (rows, d) blocks, like ``store.iter_chunks`` with the catalog
    read now, in the calling thread: a store's SQLite connection serves only the thread that opened it,
    while the blocks are read in the prefetcher's (the chunk files are plain file reads).

    ``d`` is the flattened feature size (``width``); ``info`` the point's :class:`PointInfo`.
    """

    def __init__(self, store: Store, point: str, run: str | None, chunk_rows: int = 8192):
        self.info = store.point_info(point, run)
        self.files = store.chunk_files(self.info)
        self.width = int(math.prod(self.info.shape))
        self.chunk_rows = chunk_rows

    def __call__(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Rows [start, stop) in consecutive blocks of ``chunk_rows`` (the last may be shorter)."""
        stop = self.info.n_rows if stop is None else min(stop, self.info.n_rows)
        for begin in range(start, stop, self.chunk_rows):
            block = self.files.read(begin, min(begin + self.chunk_rows, stop))
            if self.info.dtype == "bfloat16":
                block = bfloat16_bits_to_float32(block)
            yield np.asarray(block, dtype=np.float32).reshape(len(block), self.width)


def buffer_fits_on(device: torch.device, rows: int, width: int, share: float = DEVICE_BUFFER_SHARE) -> bool:
    """Whether a shuffling buffer of ``rows`` x ``width`` float32 is held on ``device``: only CUDA, and
    only when 3 copies of it fit in ``share`` of the free memory (``torch.cuda.mem_get_info``)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return 3 * rows * width * 4 <= share * free


class ShufflingBuffer:
    """Batches (batch_size, d) float32 of rows [0, stop) of a point, shuffled through a buffer.

    Args:
        store, point, run: where the rows are.
        stop: rows [0, stop) are used (the held-out tail lies beyond).
        batch_size: rows per batch.
        capacity: rows held at once (at least 2 batches); larger mixes better.
        seed: the order of rows depends on it and on nothing else.
        chunk_rows: rows read from the store at a time.
        keep: boolean mask over the point's rows (:func:`row_mask`); rows marked False are skipped.
        device: where the batches are used; on CUDA the buffer is held there when it fits
            (:func:`buffer_fits_on`), else (and on every other device) it is a CPU tensor. The rows and
            their order do not depend on it.
    """

    def __init__(
        self,
        store: Store,
        point: str,
        run: str | None,
        stop: int,
        batch_size: int,
        capacity: int = 65536,
        seed: int = 0,
        chunk_rows: int = 8192,
        keep: np.ndarray | None = None,
        device: torch.device | str | None = None,
    ):
        self.keep = keep
        usable = stop if keep is None else int(keep[:stop].sum())
        if usable < batch_size:
            raise NeurometryError(
                f"{usable} training rows are fewer than one batch of {batch_size}; lower --batch-size or record more"
            )
        self.store, self.point, self.run, self.stop = store, point, run, stop
        self.batch_size = batch_size
        self.capacity = max(capacity, 2 * batch_size)
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.usable = usable
        self.rows = StoredRows(store, point, run, chunk_rows)
        target = torch.device("cpu") if device is None else torch.device(device)
        self.holder = target if buffer_fits_on(target, self.capacity, self.rows.width) else torch.device("cpu")

    def batches_per_epoch(self) -> int:
        return self.usable // self.batch_size

    def epoch(self, index: int) -> Iterator[torch.Tensor]:
        """The batches (batch_size, d) float32, on ``holder``, of one pass over the rows; the order differs
        per epoch ``index``.

        The last partial batch of an epoch is dropped, so every batch has ``batch_size`` rows.
        """
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        chunks = self.rows(0, self.stop)
        exhausted = False
        at = 0

        def read(rows: int) -> list[torch.Tensor]:
            nonlocal exhausted, at
            got, count = [], 0
            while count < rows and not exhausted:
                block = next(chunks, None)
                if block is None:
                    exhausted = True
                    break
                n = len(block)
                if self.keep is not None:
                    block = block[self.keep[at : at + n]]
                at += n
                t = torch.from_numpy(block)
                if not torch.isfinite(t).all():
                    raise NeurometryError(f"{self.point} holds NaN or Inf activations; re-record or drop those inputs")
                got.append(t.to(self.holder))
                count += len(t)
            return got

        buf = torch.cat(read(self.capacity))
        leftover = buf[:0]
        while len(buf):
            # drawn on the CPU whatever the holder: the same permutation, so the same order, on every device
            buf = buf[torch.randperm(len(buf), generator=gen).to(self.holder)]
            half = len(buf) if exhausted else len(buf) // 2  # emit half, keep half to mix with new rows
            out = torch.cat([leftover, buf[:half]])
            full = len(out) // self.batch_size * self.batch_size
            for lo in range(0, full, self.batch_size):
                yield out[lo : lo + self.batch_size]
            leftover = out[full:]
            buf = torch.cat([buf[half:], *read(half)])

    def __iter__(self) -> Iterator[torch.Tensor]:
        index = 0
        while True:
            yield from self.epoch(index)
            index += 1
