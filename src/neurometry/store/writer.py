"""Writing one run into a store, chunk by chunk, so that a kill at any moment loses nothing committed.

The protocol:

1. ``begin_run`` knows every row the run will have (token counts come from tokenising first), so each
   array is created once with its final shape and its metadata never changes afterwards.
2. Rows are buffered per point and written only in whole chunks, each chunk file written once.
3. After the chunk files are written, one catalog transaction moves the commit mark forward.
   Readers see rows below the mark only. A resumed run continues from the mark; rows it
   recomputes below the mark are dropped, so every row is stored exactly once.
"""

from __future__ import annotations

import fcntl
import shutil
from dataclasses import dataclass

import numpy as np
import pandas as pd
import zarr
import zarr.codecs

from neurometry.errors import NeurometryError
from neurometry.store import catalog
from neurometry.store.store import Store

TARGET_CHUNK_BYTES = 8 * 2**20
ON_DISK_DTYPE = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}


@dataclass(frozen=True)
class PointSpec:
    """What the writer needs to know of one point before the first row arrives."""

    point: str
    module_path: str
    kind: str
    shape: tuple[int, ...]  # per-row feature shape


def chunk_rows_for(specs: list[PointSpec], dtype: str, n_rows: int) -> int:
    """Rows per chunk: about 8 MiB for the widest point, one chunk size for the whole run."""
    itemsize = np.dtype(ON_DISK_DTYPE[dtype]).itemsize
    widest = max(int(np.prod(s.shape)) for s in specs) * itemsize
    rows = max(16, TARGET_CHUNK_BYTES // max(widest, 1))
    return int(max(1, min(rows, 65536, n_rows)))


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


def ensure_dataset(store: Store, dataset_id: str, source: str, table: pd.DataFrame) -> None:
    """Insert the data rows once per dataset (all or nothing); later runs on the same data share them."""
    conn = store.connection
    if conn.execute("SELECT 1 FROM datasets WHERE dataset_id = ?", (dataset_id,)).fetchone():
        return
    columns = [str(c) for c in table.columns]
    records = (dict(zip(columns, row, strict=True)) for row in table.itertuples(index=False, name=None))
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?)",
            (dataset_id, source, len(table), catalog.dumps(columns)),
        )
        tx.executemany(
            "INSERT INTO inputs VALUES (?, ?, ?)",
            ((dataset_id, i, catalog.dumps(rec)) for i, rec in enumerate(records)),
        )


def delete_run(store: Store, run_id: str) -> None:
    """Remove a run's catalog rows, then its arrays (catalog first: arrays without a run are invisible)."""
    with store.transaction() as tx:
        for table in ("runs", "points", "commits", "tokens", "results"):
            tx.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    shutil.rmtree(store.path / "arrays" / run_id, ignore_errors=True)


class _RowBuffer:
    """Rows waiting for a whole chunk: one growable array per point, so a flush copies nothing extra."""

    def __init__(self, shape: tuple[int, ...], dtype: str, capacity: int):
        self.data = np.empty((capacity, *shape), dtype=ON_DISK_DTYPE[dtype])
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        end = self.size + len(block)
        if end > len(self.data):
            grown = np.empty((max(end, 2 * len(self.data)), *self.data.shape[1:]), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = block
        self.size = end

    def drop_front(self, count: int) -> None:
        rest = self.size - count
        if rest:
            self.data[:rest] = self.data[count : self.size].copy()
        self.size = rest


class RunWriter:
    """Appends the rows of one run in order and commits them in whole chunks."""

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
        self.next_row = int(input_row_ends[first_input - 1]) if first_input > 0 else 0
        root = store.path / "arrays" / run_id
        self.arrays = {s.point: zarr.open_array(str(root / s.point), mode="r+") for s in specs}
        self.buffers = {s.point: _RowBuffer(s.shape, dtype, 2 * chunk_rows) for s in specs}
        self.buffered = 0

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Append the next rows (same count for every point, in row order, already in on-disk dtype)."""
        counts = {len(block) for block in rows.values()}
        if len(counts) != 1:
            raise RuntimeError(f"points disagree on the number of rows: {counts}")
        count = counts.pop()
        skip = max(0, self.committed_rows + self.buffered - self.next_row)
        self.next_row += count
        if skip >= count:
            return
        for point, block in rows.items():
            self.buffers[point].append(block[skip:] if skip else block)
        self.buffered += count - skip
        if self.buffered >= self.chunk_rows:
            self._flush(self.buffered - self.buffered % self.chunk_rows)

    def finish(self) -> None:
        """Write what is left and mark the run complete, in one commit."""
        self._flush(self.buffered, final=True)

    def _flush(self, count: int, final: bool = False) -> None:
        start = self.committed_rows
        for point, buffer in self.buffers.items():
            if count:
                self.arrays[point][start : start + count] = buffer.data[:count]
                buffer.drop_front(count)
        self.buffered -= count
        self.committed_rows += count
        input_end = int(np.searchsorted(self.input_row_ends, self.committed_rows, side="right"))
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO commits VALUES (?, ?, ?)", (self.run_id, input_end, self.committed_rows)
            )
            if final:
                tx.execute(
                    "UPDATE runs SET status = 'complete', finished = ? WHERE run_id = ?",
                    (pd.Timestamp.now("UTC").isoformat(), self.run_id),
                )


def create_run_arrays(store: Store, run_id: str, specs: list[PointSpec], dtype: str, n_rows: int, chunk_rows: int) -> None:
    """Create every array of a run at its final shape (written once, never resized)."""
    root = store.path / "arrays" / run_id
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for spec in specs:
        # Activations barely compress; attention probabilities are mostly zero padding and do.
        compressors = zarr.codecs.ZstdCodec(level=3) if spec.kind == "attention" else None
        zarr.create_array(
            store=str(root / spec.point),
            shape=(n_rows, *spec.shape),
            chunks=(chunk_rows, *spec.shape),
            dtype=ON_DISK_DTYPE[dtype],
            compressors=compressors,
            fill_value=0,
        )
