"""Check a whole store: the catalog's integrity, and every committed chunk of every point against the
size and CRC-32C its commit recorded (what ``neurometry verify`` prints)."""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from neurometry.store.chunks import DamagedChunk
from neurometry.store.store import Store


@dataclass(frozen=True)
class Damage:
    """One damaged chunk (``chunk`` None: the point's array metadata)."""

    run_id: str
    point: str
    chunk: int | None
    first_row: int
    stop_row: int
    problem: str


@dataclass
class StoreCheck:
    """What :func:`verify_store` found."""

    runs: int = 0
    points: int = 0
    chunks: int = 0  # committed chunks read
    unchecked: int = 0  # of which without a recorded checksum (committed before store format 3)
    catalog: str = "ok"  # SQLite's quick_check, "ok" when sound
    damage: list[Damage] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.catalog == "ok" and not self.damage

    def first_damaged_rows(self) -> dict[str, int]:
        """Per damaged run, the first row of its first damaged chunk (where recording it again starts)."""
        first: dict[str, int] = {}
        for d in self.damage:
            first[d.run_id] = min(first.get(d.run_id, d.first_row), d.first_row)
        return first


def verify_store(store: Store, progress: bool = False) -> StoreCheck:
    """Read every committed chunk of ``store`` and check it; list each one that is missing, truncated or
    does not match its checksum. Reads about as much as exporting every point."""
    check = StoreCheck()
    try:
        rows = store.connection.execute("PRAGMA quick_check").fetchall()
        check.catalog = "; ".join(str(r[0]) for r in rows[:3]) or "ok"
    except sqlite3.DatabaseError as exc:
        check.catalog = str(exc)
    runs = store.runs()
    points = store.points()
    check.runs, check.points = len(runs), len(points)
    bar = tqdm(total=len(points), unit="point", desc="verify", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    for info in points:
        try:
            files = store.chunk_files(info)
        except DamagedChunk as exc:
            check.damage.append(Damage(info.run_id, info.point, None, 0, info.n_rows, exc.problem))
            bar.update()
            continue
        for chunk in range(files.n_chunks):
            check.chunks += 1
            check.unchecked += chunk not in files.recorded
            try:
                files.check(chunk)
            except DamagedChunk as exc:
                check.damage.append(Damage(info.run_id, info.point, chunk, *files.rows_of(chunk), exc.problem))
        bar.update()
    bar.close()
    return check
