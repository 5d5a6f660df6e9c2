"""Reading a store: runs, points, activations (whole or streamed) and row metadata.

Layout of a store folder::

    STORE/
      neurometry.json          format stamp
      catalog.sqlite           datasets, inputs, runs, points, tokens, commits, results
      arrays/RUN/POINT/        one Zarr v3 array per (run, point): rows x feature shape
      locks/RUN.lock           held by the one process recording RUN

Only committed rows are visible: a run that is still recording (or was killed) shows the rows of
its last commit, so readers and a concurrent ``record`` never see a half-written chunk. Every chunk a
read touches is checked against the size and CRC-32C its commit recorded (:mod:`neurometry.store.chunks`),
so a deleted, truncated or overwritten chunk file raises instead of reading back as zeros or garbage.

A store in a folder this process cannot write to (a read-only mount, another user's files) is opened
read-only: everything reads as usual, and the first write says the store is read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.store import catalog
from neurometry.store.chunks import PointChunks, recorded_checksums

CATALOG_FILE = "catalog.sqlite"
STAMP_FILE = "neurometry.json"


@dataclass(frozen=True)
class PointInfo:
    """One stored point of one run."""

    run_id: str
    point: str
    module_path: str
    kind: str
    shape: tuple[int, ...]  # per-row feature shape
    dtype: str  # on-disk dtype; 'bfloat16' is kept as uint16 and widened to float32 on read
    n_rows: int  # committed rows


@dataclass(frozen=True)
class SeriesStep:
    """One checkpoint of a series: its step and the complete run recorded from it."""

    series: str
    step: int
    run_id: str
    source: str  # the checkpoint file or folder, or 'live' (recorded during training)
    weights_hash: str | None


@dataclass(frozen=True)
class RunInfo:
    """One recording: a model over a dataset with fixed settings."""

    run_id: str
    model: str
    dataset_id: str
    reduce: str
    dtype: str
    n_inputs: int
    n_rows: int  # rows when complete
    chunk_rows: int
    status: str
    committed_inputs: int
    committed_rows: int
    settings: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 values stored as their uint16 bit patterns to float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class Store:
    """An opened store. Use :func:`open_store` to get one."""

    def __init__(self, path: Path, conn: sqlite3.Connection, read_only: str | None = None):
        self.path = path
        self._conn = conn
        self._read_only = read_only  # why writes are refused, or None

    @property
    def read_only(self) -> bool:
        """True when this store was opened read-only (asked for, or its folder cannot be written)."""
        return self._read_only is not None

    def check_writable(self) -> None:
        """Raise :class:`NeurometryError` when this store refuses writes."""
        if self._read_only is not None:
            raise NeurometryError(
                f"{self.path} is read-only ({self._read_only}); copy the store to a folder you can write to "
                "and run this there"
            )

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, runs={[r.run_id for r in self.runs()]})"

    # -- catalog queries -------------------------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """Every run in the store, oldest first."""
        return self._run_infos("", ())

    def find_run(self, run: str) -> RunInfo | None:
        """Run ``run``, or None when the store has none of that name (one row read, however many runs)."""
        found = self._run_infos(" WHERE r.run_id = ?", (run,))
        return found[0] if found else None

    def _run_infos(self, where: str, parameters: tuple) -> list[RunInfo]:
        rows = self._conn.execute(
            "SELECT r.run_id, r.model, r.dataset_id, r.reduce, r.dtype, r.n_inputs, r.n_rows, r.chunk_rows,"
            " r.status, COALESCE(c.input_end, 0), COALESCE(c.row_end, 0), r.settings"
            f" FROM runs r LEFT JOIN commits c ON c.run_id = r.run_id{where} ORDER BY r.created, r.run_id",
            parameters,
        ).fetchall()
        return [RunInfo(*row[:11], settings=json.loads(row[11])) for row in rows]

    def run_info(self, run: str) -> RunInfo:
        info = self.find_run(run)
        if info is not None:
            return info
        names = [r.run_id for r in self.runs()]
        raise NeurometryError(
            f"no run {run!r} in {self.path}{did_you_mean(run, names)}; runs here: {', '.join(names) or 'none'}"
        )

    def points(self, run: str | None = None) -> list[PointInfo]:
        """Stored points, in depth order, of one run or of all runs."""
        runs = {r.run_id: r for r in self.runs()}
        query = "SELECT run_id, point, module_path, kind, shape, dtype FROM points"
        args: tuple = ()
        if run is not None:
            self.run_info(run)
            query += " WHERE run_id = ?"
            args = (run,)
        rows = self._conn.execute(query + " ORDER BY run_id, position", args).fetchall()
        # the two queries are separate reads: a run a concurrent `record` registers between them has
        # points but no run yet; it is left out until the next call sees both
        return [
            PointInfo(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], runs[r[0]].committed_rows)
            for r in rows
            if r[0] in runs
        ]

    def point_info(self, point: str, run: str | None = None) -> PointInfo:
        """Find one point; ``run`` may be omitted when only one run holds it."""
        candidates = [p for p in self.points(run) if p.point == point]
        if not candidates:
            names = sorted({p.point for p in self.points(run)})
            where = f"run {run!r} of {self.path}" if run else str(self.path)
            raise NeurometryError(
                f"no point {point!r} in {where}{did_you_mean(point, names)}; `neurometry ls {self.path}` lists them"
            )
        if len(candidates) > 1:
            runs = ", ".join(p.run_id for p in candidates)
            raise NeurometryError(f"point {point!r} is in several runs ({runs}); name one with --run")
        return candidates[0]

    # -- series: runs ordered along training -------------------------------------------------
    def _series_rows(self, where: str = "1=1", args: tuple = ()) -> list[SeriesStep]:
        try:
            rows = self._conn.execute(
                f"SELECT series, step, run_id, source, weights_hash FROM series WHERE {where} ORDER BY series, step",
                args,
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a format-2/3 store opened read-only: it holds no series
                return []
            raise
        return [SeriesStep(*row) for row in rows]

    def series_names(self) -> list[str]:
        """The names of the store's series, sorted."""
        return sorted({s.series for s in self._series_rows()})

    def series(self, name: str) -> list[SeriesStep]:
        """The checkpoints of series ``name`` in step order; an unknown name is refused with the known ones."""
        steps = self._series_rows("series = ?", (name,))
        if not steps:
            names = self.series_names()
            raise NeurometryError(
                f"no series {name!r} in {self.path}{did_you_mean(name, names)}; series here: "
                f"{', '.join(names) or 'none (record checkpoints with `neurometry record --checkpoints` or `neurometry lab`)'}"
            )
        return steps

    def series_of(self, run: str) -> SeriesStep | None:
        """The series checkpoint a run was recorded from, or None for a run outside any series."""
        found = self._series_rows("run_id = ?", (run,))
        return found[0] if found else None

    # -- arrays ----------------------------------------------------------------------------
    def chunk_files(self, info: PointInfo) -> PointChunks:
        """The committed chunk files of a point, with the checksums their commits recorded."""
        n_chunks = 0
        if info.n_rows:
            n_chunks = -(-info.n_rows // self.run_info(info.run_id).chunk_rows)
        recorded = recorded_checksums(self._conn, info.run_id, info.point, n_chunks)
        return PointChunks(self.path, info.run_id, info.point, info.n_rows, recorded)

    def _decode(self, info: PointInfo, block: np.ndarray) -> np.ndarray:
        return bfloat16_bits_to_float32(block) if info.dtype == "bfloat16" else block

    def activations(self, point: str, run: str | None = None) -> np.ndarray:
        """All committed rows of a point as one array, shape (rows, *feature shape).

        float16 stays float16; bfloat16 is widened to float32.
        """
        info = self.point_info(point, run)
        return self._decode(info, self.chunk_files(info).read(0, info.n_rows))

    def iter_chunks(
        self,
        point: str,
        run: str | None = None,
        chunk_rows: int | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield committed rows ``[start, stop)`` of a point in consecutive blocks of ``chunk_rows``.

        Memory stays bounded by one block, so later stages can stream over points larger than RAM.
        The default block is the on-disk chunk, which reads each chunk file exactly once.
        """
        info = self.point_info(point, run)
        files = self.chunk_files(info)
        stop = info.n_rows if stop is None else min(stop, info.n_rows)
        step = chunk_rows or files.chunk_rows
        for begin in range(start, stop, step):
            yield self._decode(info, files.read(begin, min(begin + step, stop)))

    # -- metadata --------------------------------------------------------------------------
    def one_run(self, run: str | None) -> str:
        """``run``, or the store's only run when None (several: one line asking for --run)."""
        if run is None:
            runs = self.runs()
            if len(runs) != 1:
                raise NeurometryError(f"{self.path} holds {len(runs)} runs; name one with --run")
            run = runs[0].run_id
        return run

    def row_index(self, run: str | None = None) -> pd.DataFrame:
        """Where each committed row comes from, without the data columns: ``row``, ``input_row`` and,
        for ``reduce=tokens``, ``position``, ``token_id``, ``token``, for ``reduce=steps`` (a recurrent tensor
        model's state at every time step) ``trial`` and ``time``. Cheaper than :meth:`metadata` on token runs
        of millions of rows (no join with the data)."""
        info = self.run_info(self.one_run(run))
        if info.reduce == "tokens":
            return pd.read_sql_query(
                "SELECT row, input_row, position, token_id, token FROM tokens WHERE run_id = ? AND row < ?"
                " ORDER BY row",
                self._conn,
                params=(info.run_id, info.committed_rows),
            )
        rows = np.arange(info.committed_rows)
        if info.reduce == "steps":  # a tensor model's state at every time step: rows are (trial, time) in order
            steps = int(info.settings["time_steps"])
            return pd.DataFrame({"row": rows, "input_row": rows // steps, "trial": rows // steps, "time": rows % steps})
        return pd.DataFrame({"row": rows, "input_row": rows})

    def metadata(self, run: str | None = None) -> pd.DataFrame:
        """One row per committed stored row: ``row``, ``input_row`` (row of the data file), for
        ``reduce=tokens`` also ``position``, ``token_id``, ``token``, for ``reduce=steps`` ``trial`` and
        ``time``; then every column of the data."""
        run = self.one_run(run)
        frame = self.row_index(run)
        inputs = self.inputs(self.run_info(run).dataset_id)
        joined = inputs.iloc[frame["input_row"].to_numpy()].reset_index(drop=True)
        joined = joined.drop(columns=[c for c in joined.columns if c in frame.columns])
        return pd.concat([frame.reset_index(drop=True), joined], axis=1)

    def dataset_source(self, dataset_id: str) -> str | None:
        """Where a dataset's rows came from: the data file's absolute path as recorded (or an import's source)."""
        row = self._conn.execute("SELECT source FROM datasets WHERE dataset_id = ?", (dataset_id,)).fetchone()
        return row[0] if row else None

    def inputs(self, dataset_id: str) -> pd.DataFrame:
        """The data rows of a dataset, in file order, with every original column."""
        rows = self._conn.execute(
            "SELECT meta FROM inputs WHERE dataset_id = ? ORDER BY row_id", (dataset_id,)
        ).fetchall()
        return pd.DataFrame([json.loads(r[0]) for r in rows])

    # -- results (read and write them through neurometry.store.results, which owns the kinds) ----------
    def replace_results(self, kind: str, run: str, schema: int, rows: list[dict], whole_sets: bool) -> None:
        """In one transaction, delete what ``rows`` replace and insert them. Each row has ``result_set``,
        ``point``, ``name``, ``params`` and ``extra`` (JSON-ready dicts) and ``value``. ``whole_sets``
        deletes every row of each named set first; otherwise only the rows of the (set, point) pairs saved."""
        now = pd.Timestamp.now("UTC").isoformat()
        where = "run_id = ? AND kind = ? AND result_set = ?"
        with self.transaction() as conn:
            if whole_sets:
                for name in dict.fromkeys(r["result_set"] for r in rows):
                    conn.execute(f"DELETE FROM results WHERE {where}", (run, kind, name))
            else:
                for name, point in dict.fromkeys((r["result_set"], r["point"]) for r in rows):
                    conn.execute(f"DELETE FROM results WHERE {where} AND point = ?", (run, kind, name, point))
            conn.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run, kind, r["result_set"], r["point"], r["name"], catalog.dumps(r["params"]),
                     None if r["value"] is None else float(r["value"]), catalog.dumps(r["extra"]), schema, now)
                    for r in rows
                ],
            )

    def result_rows(
        self, kind: str | None = None, run: str | None = None, result_set: str | None = None
    ) -> pd.DataFrame:
        """Saved results as stored: run_id, kind, result_set, point, name, params and extra (JSON text),
        value, schema, created."""
        where, args = _result_filter(kind, run, result_set)
        query = f"SELECT * FROM results WHERE {where} ORDER BY run_id, kind, point, name, result_set"
        return pd.read_sql_query(query, self._conn, params=args)

    def result_sets(self) -> pd.DataFrame:
        """One row per (run_id, kind, result_set) with ``points``, ``records`` and ``created`` (the latest)."""
        return pd.read_sql_query(
            "SELECT run_id, kind, result_set, COUNT(DISTINCT point) AS points, COUNT(*) AS records,"
            " MAX(created) AS created FROM results GROUP BY run_id, kind, result_set ORDER BY run_id, kind, result_set",
            self._conn,
        )

    def delete_results(self, kind: str | None = None, run: str | None = None, result_set: str | None = None) -> int:
        """Delete saved results (all that match); returns how many rows went."""
        where, args = _result_filter(kind, run, result_set)
        with self.transaction() as conn:
            return conn.execute(f"DELETE FROM results WHERE {where}", args).rowcount

    # -- plumbing for the writer -----------------------------------------------------------
    def transaction(self):
        """A write transaction on the catalog: ``with store.transaction() as conn: ...``.

        A read-only store refuses it with one line that says so."""
        self.check_writable()
        return catalog.transaction(self._conn)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def close(self) -> None:
        self._conn.close()


def _result_filter(kind: str | None, run: str | None, result_set: str | None) -> tuple[str, list[str]]:
    """The WHERE clause (and its arguments) that keeps the results of ``kind``, ``run`` and ``result_set``
    (each only when given)."""
    given = [(column, value) for column, value in (("kind", kind), ("run_id", run), ("result_set", result_set))
             if value is not None]
    return " AND ".join(["1=1", *(f"{column} = ?" for column, _ in given)]), [value for _, value in given]


def is_store(path: Path) -> bool:
    return (path / CATALOG_FILE).is_file() and (path / STAMP_FILE).is_file()


def open_store(path: str | os.PathLike, create: bool = False, read_only: bool = False) -> Store:
    """Open the store at ``path``; with ``create=True`` make it if it does not exist; with
    ``read_only=True`` the catalog refuses every write (for viewers such as ``neurometry serve``).

    A store this process cannot write to (a read-only mount, a folder of another user) opens
    read-only by itself, so every command that only reads works there; a write then raises
    :class:`NeurometryError` saying so (``create=True`` refuses it up front). A new store is built in a
    temporary folder beside ``path`` and renamed into place, so an interrupted creation never leaves a
    half-made store behind.
    """
    path = Path(path)
    check_store_path(path, create)
    if not path.exists():
        _create(path)
    reason = "opened read-only" if read_only else None
    if reason is None and not writable(path):
        reason = "its folder or catalog cannot be written"
    conn = catalog.connect(path / CATALOG_FILE, read_only=reason is not None)
    try:
        name, version = catalog.read_format(conn)
    except sqlite3.OperationalError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise catalog.damaged(path / CATALOG_FILE, exc) from None
    if name != catalog.FORMAT_NAME:
        conn.close()
        raise NeurometryError(f"{path} is not a neurometry store (catalog format {name!r}); choose another folder")
    if version is not None and version < catalog.FORMAT_VERSION and reason is None:
        catalog.migrate(conn, version)
        stamp = {"format": catalog.FORMAT_NAME, "version": catalog.FORMAT_VERSION}
        (path / STAMP_FILE).write_text(json.dumps(stamp) + "\n")
        version = catalog.FORMAT_VERSION
    readable = catalog.READABLE_VERSIONS if reason is not None else (catalog.FORMAT_VERSION,)
    if version not in readable:
        conn.close()
        if version is not None and version < catalog.FORMAT_VERSION:
            where = ("copy it to a folder you can write to and open it there once with any command"
                     if reason != "opened read-only" else "open it once with a command that may write")
            raise NeurometryError(
                f"{path} is in store format version {version}; {where} (`neurometry ls {path}`) to upgrade it "
                f"to version {catalog.FORMAT_VERSION}"
            )
        raise NeurometryError(
            f"{path} was written in store format version {version}; this neurometry reads version "
            f"{catalog.FORMAT_VERSION}: record it again, or use the neurometry release that wrote it"
        )
    return Store(path, conn, read_only=reason)


def writable(path: Path) -> bool:
    """Whether this process may write the store at ``path`` (its folder, catalog and arrays).

    ``os.access`` answers for the file system too: a read-only mount refuses even root."""
    targets = [path, path / CATALOG_FILE, path / "arrays"]
    targets += [path / f"{CATALOG_FILE}-{suffix}" for suffix in ("wal", "shm") if (path / f"{CATALOG_FILE}-{suffix}").exists()]
    return all(os.access(target, os.W_OK) for target in targets if target.exists())


def check_store_path(path: str | os.PathLike, create: bool = False) -> None:
    """The checks :func:`open_store` makes before it touches anything, for commands that save into a store
    after long work and should fail before it: ``path`` is a store, or (with ``create``) a new folder in
    an existing folder this process can write to."""
    path = Path(path)
    if path.exists():
        if not path.is_dir() or not is_store(path):
            raise NeurometryError(
                f"{path} exists but is not a neurometry store (no {CATALOG_FILE} and {STAMP_FILE}); give the "
                "folder that `neurometry record --out` made (recording into a new path makes one)"
            )
        if create and not writable(path):
            raise NeurometryError(
                f"{path} is read-only (its folder or catalog cannot be written); copy the store to a folder you "
                "can write to, or choose another store"
            )
        return
    if not create:
        raise NeurometryError(f"no store at {path}; record one with `neurometry record MODEL DATA --out {path}`")
    parent = path.parent.resolve()
    if not parent.exists():
        raise NeurometryError(f"folder {parent} does not exist; create it first or choose another path")
    if not os.access(parent, os.W_OK):
        raise NeurometryError(f"cannot write in {parent}; choose a folder you can write to")


def _create(path: Path) -> None:
    parent = path.parent.resolve()
    tmp = parent / f".{path.name}.creating-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "arrays").mkdir(parents=True)
        (tmp / "locks").mkdir()
        conn = catalog.connect(tmp / CATALOG_FILE)
        catalog.initialise(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        stamp = {"format": catalog.FORMAT_NAME, "version": catalog.FORMAT_VERSION}
        (tmp / STAMP_FILE).write_text(json.dumps(stamp) + "\n")
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
