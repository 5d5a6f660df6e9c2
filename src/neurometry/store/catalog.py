"""The store's catalog: an embedded SQLite database of datasets, runs, points, rows and commits.

SQLite in WAL mode is the commit point of the store: an array chunk counts as stored only once the
catalog row that covers it is committed, so a crash between the two leaves nothing half-visible. The
same transaction records each new chunk file's size and CRC-32C (table ``chunks``, format 3), so a
chunk deleted, truncated or overwritten later is caught when it is read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from neurometry.errors import NeurometryError

FORMAT_NAME = "neurometry-store"
FORMAT_VERSION = 4
# what a read-only open serves as it is (format 2 lacks the chunk checksums, formats 2 and 3 the series)
READABLE_VERSIONS = (2, 3, 4)

RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,              -- one of neurometry.store.results.KINDS
    result_set TEXT NOT NULL,        -- what produced the rows (its settings, its other side); saving replaces it
    point TEXT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,            -- JSON
    value REAL,
    extra TEXT NOT NULL,             -- JSON
    schema INTEGER NOT NULL,         -- version of the kind's record layout when written
    created TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, result_set, point, name, params)
);
"""

CHUNKS_TABLE = """
CREATE TABLE IF NOT EXISTS chunks (
    run_id TEXT NOT NULL,
    point TEXT NOT NULL,
    chunk INTEGER NOT NULL,          -- index along rows: rows [chunk * chunk_rows, (chunk + 1) * chunk_rows)
    nbytes INTEGER NOT NULL,         -- size of the chunk file
    crc32c INTEGER NOT NULL,         -- CRC-32C of the chunk file's bytes
    PRIMARY KEY (run_id, point, chunk)
);
"""

SERIES_TABLE = """
CREATE TABLE IF NOT EXISTS series (
    run_id TEXT PRIMARY KEY,         -- a complete run: one checkpoint of the series
    series TEXT NOT NULL,            -- the series' name
    step INTEGER NOT NULL,           -- training step, epoch or token count: the order of the series
    weights_hash TEXT,               -- SHA-256 of the checkpoint's weights (finds identical checkpoints)
    source TEXT NOT NULL,            -- the checkpoint file or folder, or 'live' for a training loop
    UNIQUE (series, step)
);
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    columns TEXT NOT NULL            -- JSON list of the data's column names
);
CREATE TABLE IF NOT EXISTS inputs (
    dataset_id TEXT NOT NULL,
    row_id INTEGER NOT NULL,         -- 0-based position of the row in the data file
    meta TEXT NOT NULL,              -- JSON object: every column of the data row
    PRIMARY KEY (dataset_id, row_id)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    reduce TEXT NOT NULL,
    dtype TEXT NOT NULL,
    settings TEXT NOT NULL,          -- JSON: everything that decides the stored values
    n_inputs INTEGER NOT NULL,
    n_rows INTEGER NOT NULL,         -- rows when complete
    chunk_rows INTEGER NOT NULL,
    status TEXT NOT NULL,            -- 'recording' or 'complete'
    created TEXT NOT NULL,
    finished TEXT
);
CREATE TABLE IF NOT EXISTS points (
    run_id TEXT NOT NULL,
    point TEXT NOT NULL,
    position INTEGER NOT NULL,       -- depth order within the run
    module_path TEXT NOT NULL,
    kind TEXT NOT NULL,
    shape TEXT NOT NULL,             -- JSON list: the per-row feature shape
    dtype TEXT NOT NULL,             -- on-disk dtype name (bfloat16 is stored as uint16)
    PRIMARY KEY (run_id, point)
);
CREATE TABLE IF NOT EXISTS commits (
    run_id TEXT PRIMARY KEY,
    input_end INTEGER NOT NULL,      -- inputs [0, input_end) have all their rows stored
    row_end INTEGER NOT NULL         -- rows [0, row_end) are stored, in whole chunks
);
CREATE TABLE IF NOT EXISTS tokens (
    run_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    input_row INTEGER NOT NULL,
    position INTEGER NOT NULL,
    token_id INTEGER NOT NULL,
    token TEXT NOT NULL,
    PRIMARY KEY (run_id, row)
);
""" + RESULTS_TABLE + CHUNKS_TABLE + SERIES_TABLE


def connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    """Open the catalog with WAL journaling, so readers never block the writer and a kill loses nothing committed.

    ``read_only`` opens it with SQLite's ``mode=ro``, so a viewer cannot change the store by mistake. Where
    that cannot open it (a read-only folder or mount without the WAL's ``-shm`` file, where ``mode=ro``
    would need to create one), it is opened ``immutable``: nobody can be writing there, and with no
    ``-wal`` file beside it the main file holds every commit. A damaged or truncated catalog raises
    :class:`NeurometryError`.
    """
    conn = None
    try:
        if read_only:
            conn = _connect_read_only(path)
        else:
            conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        check_size(conn, path)
        return conn
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            raise damaged(path, exc) from None  # "file is not a database", "database disk image is malformed"
        raise


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise NeurometryError(
                f"{path.parent} is read-only and its catalog has commits still in {wal.name}; open the store once "
                "where it is writable (any command, e.g. `neurometry ls`) to fold them in, then copy it here again"
            ) from None
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def check_size(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a catalog file shorter than its pages (a truncated copy), which SQLite would read as zeros.

    Only ``stat`` looks at the file: opening it again in this process and closing it would drop every
    SQLite lock this process holds on it (POSIX record locks belong to the process, not the descriptor).
    While a -wal file holds frames the main file may lag behind by design, so only one without is judged.
    """
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    size = path.stat().st_size
    if size < pages * page_size:
        raise damaged(path, f"truncated: {size} of {pages * page_size} bytes")


def damaged(path: Path, reason: object) -> NeurometryError:
    return NeurometryError(
        f"the catalog {path} is damaged ({reason}); it indexes every run and result of the store, so restore the "
        "store from a copy, or record it again into a new --out"
    )


def initialise(conn: sqlite3.Connection) -> None:
    """Create the tables and stamp the format version."""
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT_NAME,))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(FORMAT_VERSION),))


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (the connection is in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a catalog of an older format ``version`` to :data:`FORMAT_VERSION`, in one transaction.

    Version 1 had no result sets: its results become the unnamed set ``''`` of schema 1, which readers
    that look for a producer's set do not find, so the step that wrote them computes them again.
    Version 2 had no chunk checksums: its chunks stay without, and reads check them for presence and
    size only (``neurometry verify`` counts them as unchecked). Versions before 4 had no series: their
    runs belong to none.
    """
    with transaction(conn):
        conn.execute(CHUNKS_TABLE)
        conn.execute(SERIES_TABLE)
        if version == 1:
            conn.execute("ALTER TABLE results RENAME TO results_v1")
            conn.execute(RESULTS_TABLE)
            conn.execute(
                "INSERT INTO results SELECT run_id, kind, '', point, name, params, value, extra, 1, created"
                " FROM results_v1"
            )
            conn.execute("DROP TABLE results_v1")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(FORMAT_VERSION),))


def read_format(conn: sqlite3.Connection) -> tuple[str | None, int | None]:
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # an SQLite file of something else
            return None, None
        raise
    version = rows.get("version")
    return rows.get("format"), int(version) if version is not None else None


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: object) -> object:
    # numpy scalars and arrays from metadata columns
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
