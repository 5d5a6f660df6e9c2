"""Read ahead: batches of stored rows prepared in a background thread while the SAE trains or is evaluated.

SAE training and evaluation alternate between reading the store (Zarr chunk files, the shuffling
buffer's copies) and running the SAE. :class:`Prefetcher` runs the reading in a background thread up to
``depth`` batches ahead (a bounded queue, so memory holds at most ``depth`` extra batches) and hands each
batch over as a tensor on the target device. For CUDA a CPU batch is copied into pinned (page-locked)
memory in that thread and sent with ``non_blocking=True``, so the GPU is not left waiting on Zarr.
Batches come out in the source's order, unchanged: on the CPU they are the very tensors the source
gave, so training with and without the reader is bit-identical.

A source must not use the store's catalog once it runs: a SQLite connection serves only the thread that
opened it (:class:`neurometry.features.buffer.StoredRows` reads the catalog up front).

Use it as a context manager, so that a consumer stopping early (``break``, an exception, Ctrl-C) stops
and joins the thread::

    with Prefetcher(batches, device) as prefetched:
        for x in prefetched:
            ...
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError

DEFAULT_DEPTH = 3


def read_ahead_depth(prefetch: bool | None, device: torch.device) -> int:
    """Batches read ahead: ``DEFAULT_DEPTH`` when ``prefetch`` (default: on a CUDA device, where the GPU
    would otherwise wait on Zarr), else 0 (read in the caller's thread). On a quiet 2-core CPU the reader
    thread cost 3-14% of SAE training throughput, so the CPU reads in line unless asked."""
    if prefetch is None:
        prefetch = device.type == "cuda"
    return DEFAULT_DEPTH if prefetch else 0
"""Batches read ahead: enough to cover a slow chunk read, few enough to bound the memory."""
POLL_SECONDS = 0.05
"""How often a worker blocked on a full queue checks whether the consumer has stopped."""

_ITEM, _END, _ERROR = "item", "end", "error"


def to_device(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A (rows, d) batch as a tensor on ``device``: the same tensor when it is already there (a numpy
    array shares its memory); from the CPU to CUDA through pinned memory, without blocking."""
    tensor = torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        # the caching host allocator keeps the pinned block alive until the copy has run
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class Prefetcher(Iterator[torch.Tensor]):
    """Iterate over ``source`` (numpy arrays or tensors) in a background thread, ``depth`` items ahead,
    yielding each as a tensor on ``device`` (:func:`to_device`), in order.

    An exception raised by the source is re-raised in the consumer's thread, with its traceback.
    :meth:`close` (also on leaving a ``with`` block) stops the thread, joins it and closes the source.
    ``depth=0`` reads in the consumer's thread instead (no thread; the same items).
    """

    def __init__(
        self,
        source: Iterable[np.ndarray | torch.Tensor],
        device: torch.device | str = "cpu",
        depth: int = DEFAULT_DEPTH,
    ):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise NeurometryError(f"the prefetch depth must be a whole number >= 0, got {depth!r}")
        self.device = torch.device(device)
        self.depth = depth
        self._source = iter(source)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False

    # -- the consumer's side ------------------------------------------------------------------------
    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> torch.Tensor:
        if self._finished:
            raise StopIteration
        if self.depth == 0:
            try:
                return to_device(next(self._source), self.device)
            except BaseException:
                self._finished = True
                raise
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="neurometry-prefetch", daemon=True)
            self._thread.start()
        while True:
            # a bounded wait: the consumer's thread runs again every POLL_SECONDS, so an interrupt raised in it
            # (Ctrl-C, `_thread.interrupt_main`) is taken even when no item comes; an endless wait once hung
            # the Ctrl-C test
            try:
                kind, value = self._queue.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    kind, value = _END, None  # the worker is gone without a word: nothing more will come
                    break
        if kind == _ITEM:
            return value
        self.close()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead: the thread finishes the item it is reading, closes the source and is joined."""
        self._finished = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            while True:  # drop what was read ahead (device memory)
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        elif hasattr(self._source, "close"):
            self._source.close()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- the worker thread --------------------------------------------------------------------------
    def _put(self, entry: tuple[str, Any]) -> bool:
        """Queue ``entry`` unless the consumer stops first; False when it did."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        # no torch.set_num_threads here: it also sets the count every thread not yet started with torch takes
        try:
            while not self._stop.is_set():
                try:
                    item = next(self._source)
                except StopIteration:
                    self._put((_END, None))
                    return
                if not self._put((_ITEM, to_device(item, self.device))):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put((_ERROR, error))
        finally:
            # a generator is closed in the thread that ran it (its cleanup must not race the consumer)
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
