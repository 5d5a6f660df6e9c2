"""The ending every command shares: draw ``--plot``, print the table or one JSON document (``--json``),
then name the files written."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from neurometry.tables.text import emit_json

if TYPE_CHECKING:
    from neurometry.plots import Figure


def finish(
    args: argparse.Namespace,
    document: Any,
    show: Callable[[], None],
    figure: Callable[[], Figure] | None = None,
    wrote: Iterable[str | Path] = (),
) -> None:
    """With ``--plot`` write ``figure()`` there; with ``--json`` print ``document`` only, else call ``show``
    (the table) and name each file written."""
    written = [Path(p) for p in wrote]
    if figure is not None and getattr(args, "plot", None):
        written.append(plots().save_figure(figure(), args.plot))
    if getattr(args, "json", False):
        emit_json(document)
        return
    show()
    for path in written:
        print(f"wrote {path}")


def plots() -> ModuleType:
    """:mod:`neurometry.plots`, imported on first use: matplotlib loads only for a ``--plot``."""
    import neurometry.plots

    return neurometry.plots
