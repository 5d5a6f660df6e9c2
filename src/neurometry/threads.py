"""BLAS thread counts around the many small fits and small matrix products (probes, sparse probes,
control tasks, nc4's classifier, encoding folds, the dashboard's neuron pages).

NumPy's and SciPy's bundled OpenBLAS start one thread per core. On a machine whose cores are shared with
other processes, a problem as small as one logistic fit of 1,200 x 576 then spends most of its time with
one thread waiting for the other at every BLAS call: 4.5-11.6 s on 2 threads while another process used
a core, against 0.22-0.35 s on 1 thread. Measured on the shared 2-core machine
(``benchmarks/probe_threads.py``; the numbers are in ``docs/performance.md``), one thread makes the
probe, sparse-probe, control-task and nc4 paths 3-70x faster, with or without a competing process; the
encoding folds lose 1.7x on a quiet machine and gain 1.5-13x on a busy one. So :func:`blas_threads`
limits these paths to :data:`DEFAULT_THREADS` (1) unless the environment variable
``NEUROMETRY_BLAS_THREADS`` names another count (e.g. 2 on a machine of one's own).

Paths that do their linear algebra through torch (the encoding folds' :class:`neurometry.ridge.RidgePath`)
pass ``torch_threads=True`` to limit torch's intra-op threads the same way; torch's count is restored
afterwards (torch keeps it per OS thread: it is set in the thread whose block changes it).

The BLAS limits are process-wide (OpenBLAS has one thread pool per process), so nested and concurrent
uses (the dashboard serves pages from several threads) share one state: the count of the most recently
entered, still active block is in force, and the original counts come back when the last block exits.
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import threadpoolctl

from neurometry.errors import NeurometryError

ENV_VAR = "NEUROMETRY_BLAS_THREADS"
DEFAULT_THREADS = 1
"""BLAS threads per small fit unless ``NEUROMETRY_BLAS_THREADS`` says otherwise (chosen by measurement)."""


def blas_thread_count(n: int | None = None) -> int:
    """The thread count :func:`blas_threads` applies: ``n`` if given, else ``NEUROMETRY_BLAS_THREADS``
    if set, else :data:`DEFAULT_THREADS`."""
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise NeurometryError(f"BLAS threads must be a whole number >= 1, got {n!r}")
        return int(n)
    raw = os.environ.get(ENV_VAR)
    if raw is None or raw.strip() == "":
        return DEFAULT_THREADS
    count = int(raw.strip()) if raw.strip().isdigit() else 0
    if count < 1:
        raise NeurometryError(
            f"{ENV_VAR}={raw!r} is not a thread count; set it to a whole number >= 1 (e.g. 2) or unset it "
            f"for the default ({DEFAULT_THREADS})"
        )
    return count


def _release_openblas() -> None:
    """Let any thread set OpenBLAS's next count. threadpoolctl (>= 3.6) lets only the first thread that
    sets a process-wide OpenBLAS pool change it while that thread lives, so a limit entered or lifted
    from another thread (the dashboard's request threads) would silently do nothing."""
    openblas = getattr(threadpoolctl, "OpenBLASController", None)
    if openblas is not None and hasattr(openblas, "clear_controlling_thread"):
        openblas.clear_controlling_thread(force=True)


class _Limits:
    """The process-wide state shared by every active :func:`blas_threads` context."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[tuple[object, int, bool]] = []  # (token, count, torch_threads), entry order
        self.blas_original: dict[str, int] = {}  # library path -> its count before the first context
        self.blas_count: int | None = None
        self.torch_original: int | None = None
        self.torch_count: int | None = None

    def update(self) -> None:
        """Apply the counts the active contexts ask for; restore the originals when none is left."""
        if not self.active:
            if self.blas_count is not None:
                self._set_blas(None)
            self._set_torch(None)
            return
        count = self.active[-1][1]
        if count != self.blas_count:
            self._set_blas(count)
        torch_counts = [c for _, c, wants_torch in self.active if wants_torch]
        self._set_torch(torch_counts[-1] if torch_counts else None)

    def _set_blas(self, count: int | None) -> None:
        """Set every BLAS library to ``count`` (``None``: back to its original count)."""
        libraries = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
        _release_openblas()
        try:
            for library in libraries:
                # a library loaded after the first context (SciPy loads its OpenBLAS lazily) keeps the
                # count it had when first seen
                original = self.blas_original.setdefault(library.filepath, library.num_threads)
                library.set_num_threads(original if count is None else count)
        finally:
            _release_openblas()
        self.blas_count = count
        if count is None:
            self.blas_original = {}

    def _set_torch(self, count: int | None) -> None:
        if count == self.torch_count:
            return
        import torch

        if self.torch_original is None:
            self.torch_original = torch.get_num_threads()
        torch.set_num_threads(self.torch_original if count is None else count)
        if count is None:
            self.torch_original = None
        self.torch_count = count


_LIMITS = _Limits()


@contextmanager
def blas_threads(n: int | None = None, *, torch_threads: bool = False) -> Iterator[int]:
    """Limit the BLAS libraries that threadpoolctl finds (NumPy's and SciPy's OpenBLAS, MKL) to ``n``
    threads inside the block, and restore them after; yields the count in force.

    Args:
        n: thread count; ``None`` reads ``NEUROMETRY_BLAS_THREADS`` (a whole number >= 1), else
            :data:`DEFAULT_THREADS`.
        torch_threads: also set torch's intra-op thread count (``torch.set_num_threads``) for the
            block, for paths that do their small products through torch.

    Nested and concurrent blocks share the process-wide counts: the most recently entered active
    block's count is in force, and the original counts return when the last block exits.
    """
    count = blas_thread_count(n)
    token = object()
    with _LIMITS.lock:
        _LIMITS.active.append((token, count, bool(torch_threads)))
        try:
            _LIMITS.update()
        except BaseException:
            _LIMITS.active.pop()
            _LIMITS.update()
            raise
    try:
        yield count
    finally:
        with _LIMITS.lock:
            _LIMITS.active = [entry for entry in _LIMITS.active if entry[0] is not token]
            _LIMITS.update()


def map_blocks(fn: Callable[[Any], Any], blocks: list[Any]) -> list[Any]:
    """``[fn(b) for b in blocks]`` on torch's thread count of Python threads with one intra-op thread each
    (torch's count is restored afterwards).

    For independent blocks of a few short torch ops (the exact kNN searches): threads that never wait for
    each other keep a 2-core machine shared with other processes from stalling at every op's OpenMP barrier
    (10x slower there), and a core taken by another process delays one block instead of every GEMM."""
    import torch

    threads = torch.get_num_threads()
    if threads <= 1 or len(blocks) < 2:
        return [fn(b) for b in blocks]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(fn, blocks))
    finally:
        torch.set_num_threads(threads)
