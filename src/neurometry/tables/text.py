"""Plain-text tables and JSON documents: what every command, the demo and the report's text share."""

from __future__ import annotations

import json


def emit_json(document: object, indent: int | None = None) -> None:
    """Print ``document`` as one JSON document on stdout; arrays and NumPy scalars become lists and numbers."""
    print(json.dumps(document, indent=indent, default=_json_default))


def _json_default(value: object) -> object:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """Print ``rows`` under ``headers`` in left-aligned columns, with a rule under the header."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
