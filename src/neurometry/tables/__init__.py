"""Every text table neurometry prints: one module per stage, each turning results into lines on stdout.
The CLI and the demo print through these, so a result reads the same wherever it is shown."""

from neurometry.tables.text import emit_json, print_table

__all__ = ["emit_json", "print_table"]
