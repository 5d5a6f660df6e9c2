"""Record one probe set at many weights of one model, one new run of a series per weights, set up once.

:func:`neurometry.record.record` called once per checkpoint pays every time for what does not change
between checkpoints (the store and its catalog connection, the data file's hash and rows, the hooks, a
writer thread) and waits for its last chunk files before it returns. A :class:`SeriesSession` does that
once, and the chunk files and catalog commit of one checkpoint's run are written by one writer thread
while the model computes the next checkpoint's rows. The rows stored are those ``record`` stores, and a
run appears in the catalog, complete and with its series step, in one commit after its files are written.

Runs a session does not suit go to ``record`` (after the runs in flight are committed): a run that
already exists in the store (to resume it), and one whose rows would hold more than
:data:`MAX_RUN_BYTES` in memory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.memory import keep_freed_heap
from neurometry.models import LoadedModel
from neurometry.models.devices import dtype_name
from neurometry.record.data import check_data_path
from neurometry.record.recorder import (
    RecordingSetup,
    check_record_options,
    new_run_rows,
    open_store_to_write,
    record,
    run_chunk_rows,
    setup_recording,
)
from neurometry.record.transfer import HostCopies
from neurometry.store import catalog
from neurometry.store.chunks import is_disk_full
from neurometry.store.store import CATALOG_FILE, SeriesStep, Store
from neurometry.store.writer import (
    ON_DISK_DTYPE,
    RunLock,
    aligned_empty,
    commit_rows,
    create_run_arrays,
    open_run_arrays,
    write_chunk_range,
)

MAX_RUN_BYTES = 256 * 2**20  # rows of one run held in memory (twice: one run computed, one being written)


class SeriesSession:
    """Record ``points`` of ``model`` over ``data`` into ``out`` at each of the weights the model is given.

    ``model`` is loaded once; the caller changes its weights in place between calls of :meth:`record`,
    which records them as a new run and step of a series. Errors of the writer thread (a full disk) are
    raised by the next :meth:`record` or by :meth:`close`, which waits for every run in flight. ``options``
    are :func:`~neurometry.record.record`'s ``reduce``, ``dtype``, ``batch_size``, ``max_tokens``,
    ``chunk_rows``, ``device``, ``model_dtype`` and ``text_column``; use it as a context manager.
    """

    OPTIONS = ("reduce", "dtype", "batch_size", "max_tokens", "chunk_rows", "device", "model_dtype", "text_column")

    def __init__(self, model: LoadedModel, data: str | os.PathLike, points: list[str], out: str | os.PathLike,
                 **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TypeError(f"SeriesSession does not take {', '.join(unknown)}; record() does")
        self.loaded, self.data, self.points, self.out = model, Path(data), list(points), Path(out)
        self.options = options
        self.dtype = options.get("dtype", "float32")
        self.batch_size = options.get("batch_size", 32)
        self._setup: RecordingSetup | None = None
        self._n_rows = self._chunk_rows = self._run_bytes = 0  # of every run, known with the setup
        self._store: Store | None = None
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neurometry-series-writer")
        self._writer_conn: sqlite3.Connection | None = None  # the writer thread's own catalog connection
        self._in_flight: list[Future[None]] = []  # oldest first; each holds one of the two row buffers
        self._free: list[dict[str, np.ndarray]] = []

    def record(self, run_id: str, series_step: SeriesStep) -> None:
        """Record the model's weights now as the new run ``run_id``, step ``series_step`` of its series."""
        self._raise_failures()
        first = 0
        if self._setup is None:
            self._set_up(run_id)  # here, not at construction: a series with nothing left to record reads no data
            first = self._setup.probe_stop
        setup = self._setup
        if self._store is None and self.out.exists():
            self._store = open_store_to_write(self.out)
        if self._run_bytes > MAX_RUN_BYTES or (self._store is not None and self._store.find_run(run_id) is not None):
            self.wait()
            record(self.loaded, self.data, self.points, self.out, run=run_id, progress=False, series_step=series_step,
                   **self.options)
            return
        rows = self._rows(setup, first)
        if self._store is None:  # made only now: a first checkpoint with NaN rows leaves no store behind
            self._store = open_store_to_write(self.out)
        lock = RunLock(self._store, run_id)
        try:
            self._in_flight.append(self._pool.submit(self._write, run_id, series_step, rows, lock))
        except BaseException:
            lock.release()
            raise

    def _set_up(self, run_id: str) -> None:
        """Check the options and data, set the model and data up (one probe batch of the weights now) and the
        size of every run."""
        check_data_path(self.data)
        max_tokens, chunk_rows = self.options.get("max_tokens", 128), self.options.get("chunk_rows")
        check_record_options(self.dtype, self.batch_size, max_tokens, chunk_rows)
        keep_freed_heap()
        self._setup = setup = setup_recording(
            self.loaded, self.data, self.points, self.out, self.options.get("reduce"), self.dtype, self.batch_size,
            max_tokens, run_id, None, self.options.get("device"), self.options.get("model_dtype"), "local",
            self.options.get("text_column", "text"))
        self._n_rows = int(setup.batches.input_row_ends[-1])
        self._chunk_rows = run_chunk_rows(chunk_rows, setup.specs, self.dtype, self._n_rows)
        row_bytes = sum(int(np.prod(s.shape, dtype=np.int64)) for s in setup.specs)
        self._run_bytes = self._n_rows * row_bytes * np.dtype(ON_DISK_DTYPE[self.dtype]).itemsize

    def _rows(self, setup: RecordingSetup, first: int) -> dict[str, np.ndarray]:
        """Every stored row of this run, in a buffer no run in flight holds (waiting for one to be written)."""
        while len(self._in_flight) >= 2:
            self._in_flight.pop(0).result()
        rows = self._free.pop() if self._free else {
            s.point: aligned_empty((self._n_rows, *s.shape), ON_DISK_DTYPE[self.dtype]) for s in setup.specs}
        row_ends = setup.batches.input_row_ends
        if first:
            for point, block in setup.probe.items():
                rows[point][: len(block)] = block
        n_inputs = len(setup.table)
        copies = HostCopies(self.loaded.device, self.dtype, dtype_name(self.loaded.dtype))
        for start in range(first, n_inputs, self.batch_size):
            stop = min(start + self.batch_size, n_inputs)
            _place(rows, copies.submit(setup.rows.on_device(start, stop), start, start), row_ends)
        _place(rows, copies.flush(), row_ends)
        return rows

    def _write(self, run_id: str, series_step: SeriesStep, rows: dict[str, np.ndarray], lock: RunLock) -> None:
        """In the writer thread: the run's arrays and chunk files, then its catalog rows in one commit."""
        setup, store_path, n_rows, chunk_rows = self._setup, self.out, self._n_rows, self._chunk_rows
        try:
            create_run_arrays(self._store, run_id, setup.specs, self.dtype, n_rows, chunk_rows)
            root = store_path / "arrays" / run_id
            written = write_chunk_range(root, open_run_arrays(store_path, run_id, rows), chunk_rows, 0, rows)
            register = new_run_rows(run_id, setup.settings, setup.specs, setup.batches, setup.table, self.data,
                                    chunk_rows)
            conn = self._connection()
            with catalog.transaction(conn):
                register(conn)
                commit_rows(conn, run_id, len(setup.table), n_rows, written, final=True, series_step=series_step)
        except BaseException as exc:
            shutil.rmtree(store_path / "arrays" / run_id, ignore_errors=True)  # no catalog rows point at them
            if isinstance(exc, (OSError, sqlite3.OperationalError)) and is_disk_full(exc):
                raise NeurometryError(
                    f"the disk holding {store_path} is full (run {run_id} was not stored; the runs before it "
                    "are); free some space and rerun the same command: it goes on from there"
                ) from None
            raise
        finally:
            lock.release()
            self._free.append(rows)

    def _connection(self) -> sqlite3.Connection:
        # only the writer thread uses it, and holds it for the session: SQLite checkpoints its log each time
        # the last connection closes
        if self._writer_conn is None:
            self._writer_conn = catalog.connect(self.out / CATALOG_FILE)
        return self._writer_conn

    def _close_connection(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    def _raise_failures(self) -> None:
        """Raise the first error of a run already written (a full disk), once the writes before it are done."""
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.pop(0).result()

    def wait(self) -> None:
        """Wait until every run handed to the writer is committed (raising the first error)."""
        try:
            for future in self._in_flight:
                future.result()
        finally:
            self._in_flight.clear()

    def close(self, quiet: bool = False) -> None:
        """Wait for the runs in flight (raising the first error, unless ``quiet``), then let go of the writer
        thread and the store. Closing twice does nothing."""
        if self._pool is None:
            return
        try:
            self.wait()
        except Exception:
            if not quiet:
                raise
        finally:
            self._pool.submit(self._close_connection).result()
            self._pool.shutdown(wait=True)
            self._pool = None
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> SeriesSession:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(quiet=kind is not None)  # after an error in the caller, that error is the one to see


def _place(rows: dict[str, np.ndarray], blocks: list, row_ends: np.ndarray) -> None:
    """Copy each ``(first input, point -> rows)`` block to its rows of the run's buffers."""
    for start, block in blocks:
        row = int(row_ends[start - 1]) if start else 0
        for point, values in block.items():
            rows[point][row : row + len(values)] = values

