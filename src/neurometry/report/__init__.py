"""One self-contained HTML page with every result a store holds (plots embedded, no network to view)."""

from neurometry.report.build import SECTIONS, build_report

__all__ = ["SECTIONS", "build_report"]
