"""Making and writing figures."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.figure import Figure

from neurometry.errors import NeurometryError


def new_figure(width: float, height: float, dpi: int = 130) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, written at ``dpi`` by :func:`save_figure`."""
    return Figure(figsize=(width, height), dpi=dpi)


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` (the format from its suffix, at the figure's dpi); returns the path."""
    path = Path(path)
    if not path.parent.resolve().is_dir():
        raise NeurometryError(f"folder {path.parent} does not exist; create it first or choose another --plot")
    figure.savefig(path)
    return path


def figure_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes (for pages that inline their images)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
