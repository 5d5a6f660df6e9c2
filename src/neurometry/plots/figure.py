"""Making and writing figures."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from matplotlib.figure import Figure

from neurometry.errors import NeurometryError


def new_figure(width: float, height: float, dpi: int = 130) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, written at ``dpi`` by :func:`save_figure`."""
    return Figure(figsize=(width, height), dpi=dpi)


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` (the format from its suffix, at the figure's dpi); returns the path.

    The figure is written beside ``path`` and renamed onto it, so a failed write leaves no partial file; a
    path that cannot be written (a folder, a missing or read-only folder, ``/proc``) or an unknown format
    raises :class:`NeurometryError`."""
    path = Path(path)
    if path.is_dir():
        raise NeurometryError(f"{path} is a folder; give a file name for the figure, e.g. {path / 'figure.png'}")
    if not path.parent.resolve().is_dir():
        raise NeurometryError(f"folder {path.parent} does not exist; create it first or choose another --plot")
    partial = path.with_name(f".{path.name}.partial")
    try:
        figure.savefig(partial, format=path.suffix[1:].lower() or "png")
        os.replace(partial, path)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise NeurometryError(f"cannot write the figure {path} ({why}); choose another --plot") from None
    return path


def figure_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes (for pages that inline their images)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
