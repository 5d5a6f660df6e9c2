"""Plain-text tables for the CLI."""

from __future__ import annotations


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """Print ``rows`` under ``headers`` in left-aligned columns, with a rule under the header."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
