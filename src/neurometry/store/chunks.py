"""The chunk files of the stored arrays, checked as they are read.

A run's arrays are Zarr v3 arrays chunked along rows only, one file per chunk (``c/K/0...``). Since store
format 3, the transaction that commits a chunk also records its file's size and CRC-32C in the catalog's
``chunks`` table. :class:`PointChunks` reads chunk files itself and checks them: a committed chunk
whose file is missing, shorter or longer than recorded, or whose bytes no longer match their checksum
raises :class:`DamagedChunk` (a :class:`NeurometryError` naming the point, the chunk and the remedy)
instead of reading back as Zarr's fill value (zeros) or as garbage. Chunks committed before format 3
have no checksum and are checked for presence and, uncompressed, for size.

Uncompressed chunks (activations) are read straight into the caller's array with ``readinto``, so the
check costs one CRC-32C pass (hardware-accelerated, about 0.2 ms per 2 MiB chunk) over a read Zarr
would make anyway. Compressed chunks (attention patterns) are checked, then decoded by Zarr.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from neurometry.errors import NeurometryError

try:
    from google_crc32c import value as _crc32c_value
except ImportError:  # pragma: no cover - zarr 3.0 depended on the crc32c package instead
    from crc32c import crc32c as _crc32c_value


def crc32c(data: bytes | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of bytes or of a C-contiguous array's bytes."""
    return int(_crc32c_value(data))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full: an OSError, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in str(exc)  # 13: SQLITE_FULL
    return False


def remedy(store: Path) -> str:
    return (f"`neurometry verify {store}` lists every damaged chunk, and with --repair-by-rerecording records "
            "the damaged runs again")


class DamagedChunk(NeurometryError):
    """A committed chunk (or a point's array metadata) that is missing or does not match the catalog."""

    def __init__(self, store: Path, run_id: str, point: str, chunk: int | None, rows: tuple[int, int], problem: str):
        self.run_id, self.point, self.chunk, self.rows, self.problem = run_id, point, chunk, rows, problem
        what = f"chunk {chunk} (rows {rows[0]}-{rows[1] - 1})" if chunk is not None else "the array metadata"
        super().__init__(f"{what} of point {point!r}, run {run_id!r} in {store} {problem}; {remedy(store)}")


class PointChunks:
    """The chunk files of one stored point and what the catalog recorded of each.

    ``committed_rows`` bounds what may be read; ``recorded`` maps a chunk index to its (nbytes, crc32c).
    """

    def __init__(self, store: Path, run_id: str, point: str, committed_rows: int, recorded: dict[int, tuple[int, int]]):
        self.store, self.run_id, self.point = store, run_id, point
        self.committed_rows = committed_rows
        self.recorded = recorded
        self.folder = store / "arrays" / run_id / point
        try:
            self.array = zarr.open_array(str(self.folder), mode="r")
        except Exception as exc:  # missing or unreadable zarr.json: zarr raises several types
            raise DamagedChunk(store, run_id, point, None, (0, committed_rows),
                               f"is missing or unreadable ({type(exc).__name__})") from None
        self.chunk_rows = int(self.array.chunks[0])
        self.dtype = self.array.dtype
        self.row_shape = tuple(self.array.shape[1:])
        serializer = getattr(self.array, "serializer", None)  # zarr >= 3.1; without it, Zarr decodes
        endian = getattr(getattr(serializer, "endian", None), "value", None)
        # every array a store makes has one chunk across a row's features; one made elsewhere is read by Zarr
        self.row_chunked = tuple(self.array.chunks[1:]) == self.row_shape
        self.raw = (  # chunk files are the array's bytes: read them straight into the result
            self.row_chunked and not self.array.compressors and not self.array.filters
            and isinstance(serializer, zarr.codecs.BytesCodec) and sys.byteorder == "little"
            and (endian == "little" or self.dtype.itemsize == 1)
        )
        self.chunk_nbytes = self.chunk_rows * math.prod(self.row_shape) * self.dtype.itemsize
        self.n_chunks = -(-committed_rows // self.chunk_rows)

    def rows_of(self, chunk: int) -> tuple[int, int]:
        return chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.committed_rows)

    def path(self, chunk: int) -> Path:
        key = self.array.metadata.encode_chunk_key((chunk,) + (0,) * len(self.row_shape))
        return self.folder.joinpath(*key.split("/"))

    def _damaged(self, chunk: int, problem: str) -> DamagedChunk:
        return DamagedChunk(self.store, self.run_id, self.point, chunk, self.rows_of(chunk), problem)

    def _read_checked(self, chunk: int, into: np.ndarray | None = None) -> bytes | np.ndarray:
        """The bytes of one committed chunk file, checked against the catalog; read into ``into`` (a
        C-contiguous array of the whole chunk's size) when given."""
        try:
            handle = open(self.path(chunk), "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise self._damaged(chunk, "is missing (its file was deleted)") from None
        except OSError as exc:
            raise self._damaged(chunk, f"cannot be read ({exc.strerror})") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            recorded = self.recorded.get(chunk)
            expected = recorded[0] if recorded else (self.chunk_nbytes if self.raw else None)
            if expected is not None and size != expected:
                raise self._damaged(chunk, f"has {size} bytes instead of {expected} (truncated or overwritten)")
            if into is None:
                data: bytes | np.ndarray = handle.read()
                got = len(data)
            else:
                view, got = memoryview(into).cast("B"), 0
                while got < view.nbytes:
                    count = handle.readinto(view[got:])
                    if not count:
                        break
                    got += count
                data = into
            if expected is not None and got != expected:
                raise self._damaged(chunk, f"has {got} bytes instead of {expected} (it changed while read)")
        if recorded and crc32c(data) != recorded[1]:
            raise self._damaged(chunk, "does not match its checksum (its bytes were overwritten or corrupted)")
        return data

    def check(self, chunk: int) -> None:
        """Read one committed chunk and check it (raises :class:`DamagedChunk`)."""
        self._read_checked(chunk)

    def read(self, begin: int, end: int) -> np.ndarray:
        """Committed rows ``[begin, end)`` in the on-disk dtype, every chunk they touch checked first."""
        end = min(end, self.committed_rows)
        if not self.row_chunked:
            return self.array[begin:end]
        out = np.empty((max(end - begin, 0), *self.row_shape), self.dtype)
        size = self.chunk_rows
        for chunk in range(begin // size, -(-end // size)):
            lo, hi = max(begin, chunk * size), min(end, (chunk + 1) * size)
            target = out[lo - begin : hi - begin]
            if not self.raw:
                self._read_checked(chunk)
                target[...] = self.array[lo:hi]
            elif lo == chunk * size and hi == (chunk + 1) * size:
                self._read_checked(chunk, into=target)
            else:
                block = self._read_checked(chunk, into=np.empty((size, *self.row_shape), self.dtype))
                target[...] = block[lo - chunk * size : hi - chunk * size]
        return out


def recorded_checksums(conn: sqlite3.Connection, run_id: str, point: str, below_chunk: int) -> dict[int, tuple[int, int]]:
    """(nbytes, crc32c) of the committed chunks ``[0, below_chunk)`` of a point, by chunk index."""
    try:
        rows = conn.execute(
            "SELECT chunk, nbytes, crc32c FROM chunks WHERE run_id = ? AND point = ? AND chunk < ?",
            (run_id, point, below_chunk),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a format-2 store opened read-only: no checksums yet
            return {}
        raise
    return {chunk: (nbytes, crc) for chunk, nbytes, crc in rows}
