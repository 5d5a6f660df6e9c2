"""Training rows for decompositions: a held-out tail and a shuffling buffer over ``store.iter_chunks``.

Rows of a ``reduce=tokens`` run come input by input, so consecutive rows are tokens of one text. The
buffer mixes them: it holds ``capacity`` rows from many inputs, shuffles, emits half as batches and
refills that half from the stream (the scheme of SAELens' activation store). Only the buffer is ever
in memory, so the training rows may exceed it. The order is a pure function of the seed, so a
resumed run replays it and skips the batches already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.store.store import Store


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

    def batches_per_epoch(self) -> int:
        return self.usable // self.batch_size

    def epoch(self, index: int) -> Iterator[torch.Tensor]:
        """The batches of one pass over the rows; the order differs per epoch ``index``.

        The last partial batch of an epoch is dropped, so every batch has ``batch_size`` rows.
        """
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        chunks = self.store.iter_chunks(self.point, self.run, chunk_rows=self.chunk_rows, stop=self.stop)
        exhausted = False
        at = 0

        def read(rows: int) -> list[torch.Tensor]:
            nonlocal exhausted, at
            got, count = [], 0
            while count < rows and not exhausted:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                    break
                block = np.asarray(chunk, dtype=np.float32).reshape(len(chunk), -1)
                if self.keep is not None:
                    block = block[self.keep[at : at + len(chunk)]]
                at += len(chunk)
                t = torch.from_numpy(block)
                if not torch.isfinite(t).all():
                    raise NeurometryError(f"{self.point} holds NaN or Inf activations; re-record or drop those inputs")
                got.append(t)
                count += len(t)
            return got

        buf = torch.cat(read(self.capacity))
        leftover = buf[:0]
        while len(buf):
            buf = buf[torch.randperm(len(buf), generator=gen)]
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
