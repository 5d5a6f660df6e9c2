"""Writing one run into a store, chunk by chunk, so that a kill at any moment loses nothing committed.

The protocol:

1. The recorder knows every row the run will have (it tokenises first), so ``create_run_arrays``
   makes each array once at its final shape, and its metadata never changes afterwards.
2. Rows are buffered per point and written only in whole chunks, each chunk file once, by a writer
   thread (with O_DIRECT where the file system allows), while the model computes the next batches.
3. After a chunk's files are written, one catalog transaction moves the commit mark forward and
   records each new chunk file's size and CRC-32C (so reads can tell a damaged chunk).
   Readers see rows below the mark only. A resumed run continues from the mark; rows it
   recomputes below the mark are dropped, so every row is stored exactly once.
4. A new run's catalog rows (dataset, run, points, token rows) appear in one transaction, before
   the first commit; a kill before then leaves only arrays that the next call replaces.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import math
import mmap
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from neurometry.errors import NeurometryError
from neurometry.store import catalog
from neurometry.store.chunks import crc32c
from neurometry.store.store import CATALOG_FILE, SeriesStep, Store

TARGET_CHUNK_BYTES = 2 * 2**20
DIRECT_ALIGN = 4096  # O_DIRECT wants buffers, offsets and sizes in multiples of the logical block
ON_DISK_DTYPE = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}


@dataclass(frozen=True)
class PointSpec:
    """What the writer needs to know of one point before the first row arrives."""

    point: str
    module_path: str
    kind: str
    shape: tuple[int, ...]  # per-row feature shape


def chunk_rows_for(specs: list[PointSpec], dtype: str, n_rows: int) -> int:
    """Rows per chunk: about 2 MiB for the widest point, one chunk size for the whole run."""
    itemsize = np.dtype(ON_DISK_DTYPE[dtype]).itemsize
    row_bytes = [int(np.prod(s.shape)) * itemsize for s in specs]
    rows = max(16, TARGET_CHUNK_BYTES // max(max(row_bytes), 1))
    # Whole chunks of every point in multiples of 4 KiB, so they can be written with O_DIRECT.
    step = math.lcm(*(DIRECT_ALIGN // math.gcd(b, DIRECT_ALIGN) for b in row_bytes))
    rows = max(step, rows - rows % step)
    return int(max(1, min(rows, n_rows)))


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """An uninitialised array whose data starts on a 4 KiB boundary (for O_DIRECT writes)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + DIRECT_ALIGN, dtype=np.uint8)
    offset = -raw.ctypes.data % DIRECT_ALIGN
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def huge_page_empty(shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """An uninitialised array in anonymous memory advised for transparent huge pages where the kernel
    offers them: first-touching 177 MiB took 0.13 s instead of 0.36 s on these VMs, whose kernel
    charges ~2.8 ms per MiB of fresh 4 KiB pages. Falls back to ``np.empty``."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < 2**21 or advise is None:
        return np.empty(shape, dtype)
    region = mmap.mmap(-1, nbytes)
    try:
        region.madvise(advise)
    except OSError:
        pass  # no huge pages here: ordinary pages, as np.empty would give
    return np.frombuffer(region, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def _write_file(path: Path, view: memoryview, flags: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o644)
    try:
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
    finally:
        os.close(fd)


def write_chunk_file(path: Path, data: np.ndarray) -> None:
    """Write one whole chunk file, bypassing the page cache when the buffer allows it.

    On these VMs, filling fresh page-cache pages costs about 2.8 ms per MiB of CPU in the kernel,
    as much as the data's share of the forward pass; O_DIRECT writes cost almost no CPU and overlap
    with the model. Written to a temporary name and renamed, so a chunk file is never half there.
    """
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    direct = getattr(os, "O_DIRECT", 0) if (view.nbytes % DIRECT_ALIGN == 0
                                            and data.ctypes.data % DIRECT_ALIGN == 0) else 0
    try:
        try:
            _write_file(tmp, view, direct)
        except OSError as exc:
            if not direct or exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            _write_file(tmp, view, 0)  # a file system that accepts O_DIRECT on open but not on write
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a disk-full or failed write leaves no partial file behind
        raise


class RunLock:
    """An exclusive advisory lock on one run, so that two processes never record it at once."""

    def __init__(self, store: Store, run_id: str):
        (store.path / "locks").mkdir(exist_ok=True)
        self._file = open(store.path / "locks" / f"{run_id}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise NeurometryError(
                f"another process is recording run {run_id!r} into {store.path}; wait for it or choose --run"
            ) from None

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def insert_dataset(conn: sqlite3.Connection, dataset_id: str, source: str, table: pd.DataFrame) -> None:
    """Insert the data rows once per dataset (call inside a transaction); later runs on the same data share them."""
    if conn.execute("SELECT 1 FROM datasets WHERE dataset_id = ?", (dataset_id,)).fetchone():
        return
    columns = [str(c) for c in table.columns]
    records = (dict(zip(columns, row, strict=True)) for row in table.itertuples(index=False, name=None))
    conn.execute("INSERT INTO datasets VALUES (?, ?, ?, ?)", (dataset_id, source, len(table), catalog.dumps(columns)))
    conn.executemany(
        "INSERT INTO inputs VALUES (?, ?, ?)", ((dataset_id, i, catalog.dumps(rec)) for i, rec in enumerate(records))
    )


def add_to_series(store: Store, run_id: str, series: str, step: int, source: str,
                  weights_hash: str | None = None) -> None:
    """Make the complete run ``run_id`` the checkpoint ``step`` of ``series`` (replacing what that step held)."""
    with store.transaction() as tx:
        insert_series_step(tx, SeriesStep(series, int(step), run_id, source, weights_hash))


def insert_series_step(conn: sqlite3.Connection, entry: SeriesStep) -> None:
    """Insert ``entry`` (call inside a transaction), replacing the run its step held before."""
    check_series_name(entry.series)
    conn.execute("DELETE FROM series WHERE series = ? AND step = ? AND run_id != ?",
                 (entry.series, entry.step, entry.run_id))
    conn.execute("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)",
                 (entry.run_id, entry.series, entry.step, entry.weights_hash, entry.source))


def check_series_name(series: str) -> str:
    """A series name is a run-name prefix: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", series):
        raise NeurometryError(f"series name {series!r} may hold only letters, digits, '.', '_' and '-'; choose another")
    return series


def delete_run(store: Store, run_id: str) -> None:
    """Remove a run's catalog rows, then its arrays (catalog first: arrays without a run are invisible)."""
    with store.transaction() as tx:
        for table in ("runs", "points", "commits", "tokens", "results", "chunks", "series"):
            tx.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    shutil.rmtree(store.path / "arrays" / run_id, ignore_errors=True)


class _RowBuffer:
    """Rows waiting for a whole chunk: one growable array per point, so a flush copies nothing extra."""

    def __init__(self, shape: tuple[int, ...], dtype: str, capacity: int):
        self.data = aligned_empty((capacity, *shape), ON_DISK_DTYPE[dtype])
        self.spare = aligned_empty(self.data.shape, self.data.dtype)  # handed to the writer last time, reused
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        end = self.size + len(block)
        if end > len(self.data):
            grown = aligned_empty((max(end, 2 * len(self.data)), *self.data.shape[1:]), self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = block
        self.size = end

    def take(self, count: int) -> np.ndarray:
        """Hand over the first ``count`` rows (no copy); the rest moves to the spare array.

        The caller must be done with the rows handed over last time (one write in flight at most).
        """
        full, rest = self.data, self.size - count
        if self.spare.shape != full.shape:
            self.spare = aligned_empty(full.shape, full.dtype)
        self.data, self.spare = self.spare, full
        self.data[:rest] = full[count : self.size]
        self.size = rest
        return full[:count]


class RunWriter:
    """Appends the rows of one run in order and commits them in whole chunks.

    Chunk files are written by one background thread while the model computes the next batches;
    a chunk is committed in the catalog (from this thread) only after its write has finished. A run
    whose rows all fit in the buffer is written at :meth:`finish`, in the calling thread.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        specs: list[PointSpec],
        dtype: str,
        input_row_ends: np.ndarray,
        chunk_rows: int,
        committed_rows: int = 0,
        first_input: int = 0,
        register: Callable[[sqlite3.Connection], None] | None = None,
    ):
        self.store = store
        self.run_id = run_id
        self.specs = specs
        self.dtype = dtype
        self.chunk_rows = chunk_rows
        # input_row_ends[i] = number of rows of inputs 0..i, so inputs [0, k) end at row input_row_ends[k-1]
        self.input_row_ends = input_row_ends
        self.n_rows = int(input_row_ends[-1]) if len(input_row_ends) else 0
        self.committed_rows = committed_rows
        self.flushed_rows = committed_rows  # rows handed to the writer thread
        self.next_row = int(input_row_ends[first_input - 1]) if first_input > 0 else 0
        self.root = store.path / "arrays" / run_id
        # every chunk file is written, all-zero ones too: a committed chunk without a file is damage
        self.arrays = open_run_arrays(store.path, run_id, [s.point for s in specs])
        self.buffers = {s.point: _RowBuffer(s.shape, dtype, 2 * chunk_rows) for s in specs}
        self.buffered = 0
        # The writer thread starts with the first whole chunk. A run that fits in the buffer (a probe set
        # recorded at every step of a series) is written at finish in this thread, in one transaction: a
        # thread and a second catalog connection cost more than its rows.
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[list[tuple[str, int, int, int]]] | None = None
        self._pending_rows = committed_rows
        self._ranges: dict[int, tuple[int, list[tuple[str, int, int, int]]]] = {}  # commit_written's waiting ranges
        # Catalog rows of a new run (dataset, run, points, token rows): inserted by the writer thread, in
        # one transaction of its own, while the first batches are computed, or else with the first commit.
        self._unregistered = register
        self._registered: Future[None] | None = None

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Append the next rows (same count for every point, in row order, already in on-disk dtype)."""
        counts = {len(block) for block in rows.values()}
        if len(counts) != 1:
            raise RuntimeError(f"points disagree on the number of rows: {counts}")
        count = counts.pop()
        skip = max(0, self.flushed_rows + self.buffered - self.next_row)
        self.next_row += count
        if skip >= count:
            return
        for point, block in rows.items():
            self.buffers[point].append(block[skip:] if skip else block)
        self.buffered += count - skip
        if self.buffered >= self.chunk_rows and self.next_row < self.n_rows:  # the last rows wait for finish()
            self._flush(self.buffered - self.buffered % self.chunk_rows)

    def finish(self, series_step: SeriesStep | None = None) -> None:
        """Write what is left and mark the run complete (and the step ``series_step`` of its series), in one commit."""
        if self._pool is None:
            count = self.buffered
            written = self._write(self.flushed_rows, {p: b.take(count) for p, b in self.buffers.items()}) if count else []
            self.flushed_rows += count
            self.buffered = 0
            self._commit(self.flushed_rows, final=True, written=written, series_step=series_step)
            return
        self._flush(self.buffered)
        self._wait_and_commit()
        self._commit(self.flushed_rows, final=True, series_step=series_step)
        self.close()

    def close(self) -> None:
        """Stop the writer thread (a write in flight finishes; it is committed only by ``finish``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _background(self) -> ThreadPoolExecutor:
        """The writer thread, started (with the catalog rows of a new run as its first task) on first use."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neurometry-writer")
            if self._unregistered is not None:
                self._registered = self._pool.submit(self._register, self._unregistered)
                self._unregistered = None
        return self._pool

    def _register(self, register: Callable[[sqlite3.Connection], None]) -> None:
        conn = catalog.connect(self.store.path / CATALOG_FILE)
        try:
            with catalog.transaction(conn):
                register(conn)
        finally:
            conn.close()

    def _flush(self, count: int) -> None:
        if not count:
            return
        self._wait_and_commit()  # at most one write in flight: memory stays bounded, buffers can swap
        blocks = {point: buffer.take(count) for point, buffer in self.buffers.items()}
        start = self.flushed_rows
        self.flushed_rows += count
        self.buffered -= count
        self._pending = self._background().submit(self._write, start, blocks)
        self._pending_rows = self.flushed_rows

    def _write(self, start: int, blocks: dict[str, np.ndarray]) -> list[tuple[str, int, int, int]]:
        return write_chunk_range(self.root, self.arrays, self.chunk_rows, start, blocks)

    def commit_written(self, start: int, stop: int, written: list[tuple[str, int, int, int]]) -> None:
        """Take chunk files another process wrote for rows ``[start, stop)`` (chunk-aligned; ``written`` as
        :func:`write_chunk_range` returns it) and commit every row now written without a gap from the
        start: ranges may arrive in any order, and a range after a gap waits, uncommitted, for the gap."""
        self._ranges[start] = (stop, written)
        rows, entries = self.committed_rows, []
        while rows in self._ranges:
            rows, range_written = self._ranges.pop(rows)
            entries += range_written
        if rows > self.committed_rows:
            self.flushed_rows = self.next_row = rows
            self._commit(rows, written=entries)

    def _wait_and_commit(self) -> None:
        if self._pending is not None:
            written = self._pending.result()  # a failed write raises here, before anything is committed
            self._pending = None
            self._commit(self._pending_rows, written=written)

    def _commit(self, rows: int, final: bool = False, written: list[tuple[str, int, int, int]] = (),
                series_step: SeriesStep | None = None) -> None:
        if self._registered is not None:
            self._registered.result()
            self._registered = None
        input_end = int(np.searchsorted(self.input_row_ends, rows, side="right"))
        with self.store.transaction() as tx:
            if self._unregistered is not None:
                self._unregistered(tx)
                self._unregistered = None
            commit_rows(tx, self.run_id, input_end, rows, written, final, series_step)
        self.committed_rows = rows


def commit_rows(conn: sqlite3.Connection, run_id: str, input_end: int, rows: int,
                written: Iterable[tuple[str, int, int, int]] = (), final: bool = False,
                series_step: SeriesStep | None = None) -> None:
    """Commit a run's rows ``[0, rows)`` (inputs ``[0, input_end)``) and the chunk files ``written`` for them
    (call inside a transaction); ``final`` marks the run complete and makes it ``series_step``."""
    conn.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?)", [(run_id, *entry) for entry in written])
    conn.execute("INSERT OR REPLACE INTO commits VALUES (?, ?, ?)", (run_id, input_end, rows))
    if final:
        conn.execute("UPDATE runs SET status = 'complete', finished = ? WHERE run_id = ?",
                     (pd.Timestamp.now("UTC").isoformat(), run_id))
        if series_step is not None:
            insert_series_step(conn, series_step)


@dataclass(frozen=True)
class ArrayLayout:
    """What writing a run's chunk files needs of one array's ``zarr.json``: where chunk files go, and whether
    its codecs go beyond raw bytes (then zarr encodes the chunks)."""

    compressed: bool
    key_prefix: str  # "c/" for zarr's default chunk key encoding, "" for its "v2" one
    separator: str

    @classmethod
    def read(cls, path: Path) -> ArrayLayout:
        metadata = json.loads((path / "zarr.json").read_bytes())
        encoding = metadata["chunk_key_encoding"]
        separator = encoding.get("configuration", {}).get("separator", "/" if encoding["name"] == "default" else ".")
        return cls(compressed=any(c["name"] != "bytes" for c in metadata["codecs"]),
                   key_prefix=f"c{separator}" if encoding["name"] == "default" else "", separator=separator)

    def chunk_file(self, array: Path, chunk: int, ndim: int) -> Path:
        """The file of row chunk ``chunk`` of an ``ndim``-dimensional array whose features are one chunk."""
        key = self.key_prefix + self.separator.join(map(str, (chunk,) + (0,) * (ndim - 1)))
        return array.joinpath(*key.split("/"))


def open_run_arrays(store_path: Path, run_id: str, points: Iterable[str]) -> dict[str, ArrayLayout]:
    """The layouts of a run's arrays, read for writing chunk files (every chunk file is written, all-zero
    ones too: a committed chunk without a file is damage). Read straight from ``zarr.json``: opening each
    array through zarr's event loop costs ~2.5 ms, most of a small run's fixed cost."""
    root = Path(store_path) / "arrays" / run_id
    return {p: ArrayLayout.read(root / p) for p in points}


def write_chunk_range(root: Path, arrays: dict[str, ArrayLayout], chunk_rows: int, start: int,
                      blocks: dict[str, np.ndarray]) -> list[tuple[str, int, int, int]]:
    """Write the chunk files of rows ``[start, start + len)`` of a run whose arrays lie in ``root`` (``start``
    chunk-aligned; the last chunk may be partial); returns (point, chunk, nbytes, crc32c) of each file."""
    written = []
    for point, data in blocks.items():
        layout = arrays[point]
        if layout.compressed:
            array = zarr.open_array(str(root / point), mode="r+").with_config({"write_empty_chunks": True})
            array[start : start + len(data)] = data
            for chunk in range(start // chunk_rows, -(-(start + len(data)) // chunk_rows)):
                encoded = layout.chunk_file(root / point, chunk, data.ndim).read_bytes()
                written.append((point, chunk, len(encoded), crc32c(encoded)))
            continue
        # Uncompressed chunks are the raw little-endian bytes of the full chunk shape (Zarr v3
        # pads edge chunks), so whole chunks go straight to their files.
        for lo in range(0, len(data), chunk_rows):
            block = data[lo : lo + chunk_rows]
            if len(block) < chunk_rows:
                padded = aligned_empty((chunk_rows, *block.shape[1:]), block.dtype)
                padded[: len(block)] = block
                padded[len(block) :] = 0
                block = padded
            chunk = (start + lo) // chunk_rows
            write_chunk_file(layout.chunk_file(root / point, chunk, block.ndim), block)
            written.append((point, chunk, block.nbytes, crc32c(np.ascontiguousarray(block))))
    return written


def create_run_arrays(store: Store, run_id: str, specs: list[PointSpec], dtype: str, n_rows: int, chunk_rows: int) -> None:
    """Create every array of a run at its final shape (written once, never resized).

    Each array's ``zarr.json`` is zarr's own metadata document, written directly: ``zarr.create_array``
    goes through zarr's event loop, ~1.5 ms an array, which a series of small runs pays many times over."""
    root = store.path / "arrays" / run_id
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for spec in specs:
        # Activations barely compress; attention probabilities are mostly zero padding and do.
        codecs: list[dict] = [{"name": "bytes", "configuration": {"endian": "little"}}]
        if spec.kind == "attention":
            codecs.append({"name": "zstd", "configuration": {"level": 3, "checksum": False}})
        metadata = {  # what zarr.create_array writes for these settings, key for key (a test compares them)
            "shape": [n_rows, *spec.shape], "data_type": ON_DISK_DTYPE[dtype],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk_rows, *spec.shape]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0 if ON_DISK_DTYPE[dtype] == "uint16" else 0.0, "codecs": codecs, "attributes": {},
            "zarr_format": 3, "node_type": "array", "storage_transformers": [],
        }
        (root / spec.point).mkdir()
        (root / spec.point / "zarr.json").write_text(json.dumps(metadata, indent=2))


def import_array(
    store: Store,
    run_id: str,
    point: str,
    chunks: Iterable[np.ndarray],
    n_rows: int,
    metadata: pd.DataFrame | None = None,
    source: str = "array",
) -> None:
    """Store rows from elsewhere (brain recordings, another toolkit's activations) as a point of a new run.

    ``chunks`` yields consecutive blocks of rows (rows, *feat) in float32 or float16, ``n_rows`` in all;
    ``metadata`` (one row per stored row) becomes the run's data rows. All or nothing: the run
    appears in the catalog only once every row is written.
    """
    _check_new_run(store, run_id)
    iterator = iter(chunks)
    first = np.asarray(next(iterator))
    dtype = _import_dtype(first)
    meta = metadata if metadata is not None else pd.DataFrame({"row_id": np.arange(n_rows)})
    spec = PointSpec(point, "", "vector", tuple(first.shape[1:]))
    chunk_rows = chunk_rows_for([spec], dtype, n_rows)
    register = _registration(run_id, source, meta, [spec], dtype, n_rows, chunk_rows, {})
    create_run_arrays(store, run_id, [spec], dtype, n_rows, chunk_rows)
    writer = RunWriter(store, run_id, [spec], dtype, np.arange(1, n_rows + 1), chunk_rows, register=register)
    try:
        seen = 0
        for block in itertools.chain([first], iterator):
            block = np.asarray(block, dtype=ON_DISK_DTYPE[dtype])
            if block.shape[1:] != spec.shape or not np.isfinite(block).all():
                raise NeurometryError(f"rows {seen}..{seen + len(block)} are not finite rows of shape {spec.shape}")
            seen += len(block)
            if seen > n_rows:
                raise NeurometryError(f"more than n_rows={n_rows} rows were given")
            writer.add({point: block})
        if seen != n_rows:
            raise NeurometryError(f"{seen} rows were given for n_rows={n_rows}")
        writer.finish()
    except BaseException:
        writer.close()
        delete_run(store, run_id)
        raise


def import_rows(
    store: Store,
    run_id: str,
    arrays: dict[str, np.ndarray],
    metadata: pd.DataFrame,
    source: str,
    settings: dict | None = None,
) -> None:
    """Store rows computed in memory (words with their hidden states, ...) as a new run: ``arrays`` maps each
    point to its (rows, *feat) float32 or float16 rows, ``metadata`` has one row per stored row and becomes the
    run's data rows, ``settings`` are kept with the run. No arrays at all gives a run of metadata only. All or
    nothing, like :func:`import_array`."""
    _check_new_run(store, run_id)
    n_rows = len(metadata)
    if n_rows == 0:
        raise NeurometryError(f"run {run_id!r} would have no rows; give at least one")
    dtypes = {_import_dtype(np.asarray(rows)) for rows in arrays.values()}
    if len(dtypes) > 1:
        raise NeurometryError("import every point in one dtype (float32 or float16)")
    dtype = dtypes.pop() if dtypes else "float32"
    specs = []
    for point, rows in arrays.items():
        if len(rows) != n_rows or not np.isfinite(rows).all():
            raise NeurometryError(f"point {point!r} has {len(rows)} rows (or non-finite values) for {n_rows} "
                                  "metadata rows; give one finite row per metadata row")
        specs.append(PointSpec(point, "", "vector", tuple(np.asarray(rows).shape[1:])))
    chunk_rows = chunk_rows_for(specs, dtype, n_rows) if specs else n_rows
    register = _registration(run_id, source, metadata, specs, dtype, n_rows, chunk_rows, settings or {})
    create_run_arrays(store, run_id, specs, dtype, n_rows, chunk_rows)
    writer = RunWriter(store, run_id, specs, dtype, np.arange(1, n_rows + 1), chunk_rows, register=register)
    try:
        if specs:
            writer.add({point: np.asarray(rows, dtype=ON_DISK_DTYPE[dtype]) for point, rows in arrays.items()})
        else:  # nothing to write: every row is there once the run is registered
            writer.flushed_rows = writer.next_row = n_rows
        writer.finish()
    except BaseException:
        writer.close()
        delete_run(store, run_id)
        raise


def _check_new_run(store: Store, run_id: str) -> None:
    store.check_writable()
    if store.find_run(run_id) is not None:
        raise NeurometryError(f"run {run_id!r} already exists in {store.path}; choose another name")


def _import_dtype(rows: np.ndarray) -> str:
    dtype = {"float32": "float32", "float16": "float16"}.get(rows.dtype.name)
    if dtype is None:
        raise NeurometryError(f"import float32 or float16 rows, not {rows.dtype}; convert with .astype(np.float32)")
    return dtype


def _registration(run_id: str, source: str, meta: pd.DataFrame, specs: list[PointSpec], dtype: str, n_rows: int,
                  chunk_rows: int, settings: dict) -> Callable[[sqlite3.Connection], None]:
    """The catalog rows of an imported run (its dataset, the run, its points), inserted by the writer."""
    if len(meta) != n_rows:
        raise NeurometryError(f"metadata has {len(meta)} rows for {n_rows} array rows; give one per row")
    dataset = f"import-{run_id}"
    settings = {"model": source, "dataset_id": dataset, "points": [[s.point, "", list(s.shape)] for s in specs],
                "reduce": "none", "dtype": dtype, "max_tokens": 0, **settings}

    def register(conn: sqlite3.Connection) -> None:
        insert_dataset(conn, dataset, source, meta)
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, 'none', ?, ?, ?, ?, ?, 'recording', ?, NULL)",
            (run_id, source, dataset, dtype, catalog.dumps(settings), n_rows, n_rows, chunk_rows,
             pd.Timestamp.now("UTC").isoformat()),
        )
        for position, spec in enumerate(specs):
            conn.execute("INSERT INTO points VALUES (?, ?, ?, '', 'vector', ?, ?)",
                         (run_id, spec.point, position, catalog.dumps(list(spec.shape)), dtype))
        conn.execute("INSERT INTO commits VALUES (?, 0, 0)", (run_id,))

    return register
