"""Tables of `neurometry measure`."""

from __future__ import annotations

from neurometry.tables.text import print_table


def print_measures(records: list[dict]) -> None:
    """Points x measures (transposed when there are more measures than points), then any notes."""
    points = list(dict.fromkeys(r["point"] for r in records))
    names = list(dict.fromkeys(r["measure"] for r in records))
    values = {(r["point"], r["measure"]): r["value"] for r in records}

    def fmt(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"

    transpose = len(names) > len(points)
    rows, cols = (names, points) if transpose else (points, names)
    head = "measure" if transpose else "point"
    print_table([head] + cols, [[r] + [fmt(values.get((c, r) if transpose else (r, c))) for c in cols] for r in rows])
    notes = {r["note"] for r in records if r.get("note")}
    for note in sorted(notes):
        print(f"note: {note}")
