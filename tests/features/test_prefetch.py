"""The prefetching reader: the source's items in order and unchanged, exceptions re-raised in the consumer,
and no thread left behind however the consumer stops (break, exception, Ctrl-C) or when the source is empty."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.features.prefetch import Prefetcher, to_device

CPU = torch.device("cpu")


def arrays(n: int, d: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(7, d)).astype(np.float32) for _ in range(n)]


def tracked(items: list, closed: threading.Event, delay: float = 0.0, fail_at: int | None = None) -> Iterator:
    """``items`` once, ``delay`` seconds apart, raising ValueError at index ``fail_at``; ``closed`` is set
    when the generator finishes or is closed."""
    try:
        for i, item in enumerate(items):
            if i == fail_at:
                raise ValueError(f"unreadable chunk {i}")
            time.sleep(delay)
            yield item
    finally:
        closed.set()


def endless(closed: threading.Event, delay: float = 0.0) -> Iterator[np.ndarray]:
    try:
        while True:
            time.sleep(delay)
            yield np.zeros((4, 3), np.float32)
    finally:
        closed.set()


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
def test_items_come_in_order_unchanged_and_shared(depth):
    source = arrays(9)
    before = threading.active_count()
    with Prefetcher(iter(source), CPU, depth=depth) as read:
        got = list(read)
    assert len(got) == len(source)
    for array, tensor in zip(source, got, strict=True):
        assert isinstance(tensor, torch.Tensor) and tensor.device == CPU and tensor.dtype == torch.float32
        assert np.array_equal(tensor.numpy(), array)
        assert np.shares_memory(tensor.numpy(), array)  # on the CPU: the very memory, no copy
    tensors = [torch.arange(6.0).reshape(2, 3) + i for i in range(5)]
    with Prefetcher(tensors, CPU, depth=depth) as read:
        assert all(a is b for a, b in zip(read, tensors, strict=True))
    assert threading.active_count() == before


def test_an_empty_source_ends_at_once():
    closed = threading.Event()
    before = threading.active_count()
    with Prefetcher(tracked([], closed), CPU) as read:
        assert list(read) == []
        assert list(read) == []  # stays exhausted
    assert closed.is_set() and threading.active_count() == before


def test_a_source_error_is_raised_in_the_consumer_after_the_items_before_it():
    closed = threading.Event()
    read = Prefetcher(tracked(arrays(6), closed, fail_at=3), CPU, depth=2)
    got = []
    with pytest.raises(ValueError, match="unreadable chunk 3") as caught:
        for x in read:
            got.append(x)
    assert len(got) == 3
    assert caught.traceback[-1].name == "tracked"  # the worker's frames come along
    assert read._thread is not None and not read._thread.is_alive() and closed.is_set()
    assert list(read) == []


@pytest.mark.parametrize("how", ["break", "exception", "keyboard interrupt"])
def test_stopping_early_stops_and_joins_the_thread(how):
    closed = threading.Event()
    before = threading.active_count()
    if how == "break":
        with Prefetcher(endless(closed, delay=0.001), CPU, depth=2) as read:
            for i, _ in enumerate(read):
                if i == 5:
                    break
    elif how == "exception":
        with pytest.raises(RuntimeError, match="consumer failed"), Prefetcher(endless(closed), CPU, depth=2) as read:
            next(read)
            raise RuntimeError("consumer failed")
    else:  # Ctrl-C arrives while the consumer waits on a slow source
        # a shell starting pytest in the background ignores SIGINT, and interrupt_main then does nothing
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        timer = threading.Timer(0.25, _thread.interrupt_main)
        with pytest.raises(KeyboardInterrupt), Prefetcher(endless(closed, delay=0.1), CPU, depth=2) as read:
            timer.start()
            for _ in read:
                pass
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert read._thread is not None and not read._thread.is_alive()
    assert closed.is_set()  # the source generator was closed (its cleanup ran)
    assert read._queue.empty()  # what was read ahead is dropped
    assert threading.active_count() == before


def test_closing_before_reading_starts_no_thread():
    source = tracked(arrays(3), threading.Event())
    read = Prefetcher(source, CPU)
    read.close()
    assert read._thread is None and source.gi_frame is None and list(read) == []  # the source is closed


def test_depth_must_be_a_whole_number():
    for depth in (-1, 1.5, True):
        with pytest.raises(NeurometryError, match="prefetch depth"):
            Prefetcher([], CPU, depth=depth)


def test_to_device_keeps_cpu_data_in_place():
    array = np.ones((3, 2), np.float32)
    assert np.shares_memory(to_device(array, CPU).numpy(), array)
    tensor = torch.ones(3, 2)
    assert to_device(tensor, CPU) is tensor
