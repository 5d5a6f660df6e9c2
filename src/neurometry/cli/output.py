"""What every command shares: checking its output paths and list options before any work
(:func:`check_output_path`, :func:`parse_numbers`), and the ending: draw ``--plot``, print the table or one
JSON document (``--json``), then name the files written (:func:`finish`)."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from neurometry.errors import NeurometryError
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


def check_output_path(path: str | os.PathLike, flag: str = "--out", *, folder: bool = False) -> Path:
    """Fail with one line, before any computation, when ``path`` cannot be written; returns it as a Path.

    A file path (the default) must not be a folder and must lie in an existing folder; a ``folder`` path must
    not be a file, and it (or, when it does not exist yet, the nearest existing folder above it) must be a
    folder. Either way that folder must take a new file: one is created and removed again, which also catches
    read-only mounts and places like ``/proc`` that ``os.access`` calls writable. ``flag`` names the option in
    the message. Nothing is left behind and nothing is created.
    """
    if not str(path).strip():  # Path("") is the working folder: never what an empty --out meant
        raise NeurometryError(f"{flag} is empty; give a {'folder' if folder else 'file'} name")
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise NeurometryError(f"{flag} {path} is a file; give a folder (a new name or an existing folder)")
        base = path
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir():
            raise NeurometryError(f"{flag} {path}: {base} is a file, not a folder; choose another {flag}")
    else:
        if path.is_dir():
            raise NeurometryError(f"{flag} {path} is a folder; give a file name inside it")
        base = path.parent
        if not base.exists():
            raise NeurometryError(f"folder {base} does not exist; create it first or choose another {flag}")
        if not base.is_dir():
            raise NeurometryError(f"{base} is a file, not a folder; choose another {flag}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".neurometry-write-check-", dir=base)
    except OSError as exc:
        raise NeurometryError(
            f"cannot write in {base} ({exc.strerror or exc}); choose another {flag}"
        ) from None
    os.close(handle)
    os.unlink(probe)
    return path


def parse_numbers(text: str, flag: str, kind: type = float, minimum: float | None = None) -> list[Any]:
    """``"1,2,4"`` as a list of ``kind`` (int or float), each finite and at least ``minimum``; anything else
    fails with one line naming ``flag``."""
    what = "whole numbers" if kind is int else "numbers"
    values = []
    for part in text.split(","):
        try:
            value = kind(part.strip())
        except ValueError:
            raise NeurometryError(
                f"{flag} takes comma-separated {what} (e.g. {flag} 1,2,4); {part.strip()!r} in {text!r} is not one"
            ) from None
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            bound = f" of at least {minimum:g}" if minimum is not None else ""
            raise NeurometryError(f"{flag} takes finite {what}{bound}; {text!r} holds {part.strip()}")
        values.append(value)
    return values


# the spellings every command shares (models.devices resolves them; kept as strings here so parsing imports no torch)
DEVICE_HELP = "auto|cpu|cuda|cuda:N|mps (auto: CUDA when present, else the CPU; default cpu)"
MODEL_DTYPES = ("float32", "bfloat16", "float16")


def add_device_arguments(parser: argparse.ArgumentParser, *, model_dtype: bool = True, what: str = "the model") -> None:
    """``--device`` (and, with ``model_dtype``, ``--model-dtype``) spelt alike on every command that runs a
    model or trains: ``args.device`` (default ``cpu``) and ``args.model_dtype`` (default ``float32``)."""
    parser.add_argument("--device", default="cpu", help=f"where {what} runs: {DEVICE_HELP}")
    if model_dtype:
        parser.add_argument("--model-dtype", default="float32", choices=MODEL_DTYPES,
                            help="precision of the model's weights (default float32; separate from a store's --dtype)")


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number of at least ``minimum``; anything else is a usage error,
    said in one line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def finite_number(text: str) -> float:
    """An argparse ``type`` for a finite number; NaN, Inf and text are a usage error, said in one line."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value
