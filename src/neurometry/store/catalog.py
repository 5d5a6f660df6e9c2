"""The store's catalog: an embedded SQLite database of datasets, runs, points, rows and commits.

SQLite in WAL mode is the commit point of the store: an array chunk counts as stored only once the
catalog row that covers it is committed, so a crash between the two leaves nothing half-visible.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT_NAME = "neurometry-store"
FORMAT_VERSION = 2

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
""" + RESULTS_TABLE


def connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    """Open the catalog with WAL journaling, so readers never block the writer and a kill loses nothing committed.

    ``read_only`` opens it with SQLite's ``mode=ro``, so a viewer cannot change the store by mistake.
    """
    if read_only:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


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
    """
    with transaction(conn):
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
    except sqlite3.DatabaseError:
        return None, None
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
