"""Reading the DATA a model is recorded on: JSONL, CSV or Parquet with a `text` or `image` column, or for
a tensor model a .npy array (or .npz with an ``inputs`` array and per-row columns) of numeric rows."""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from neurometry.errors import NeurometryError
from neurometry.files import read_npy

ARRAY_SUFFIXES = (".npy", ".npz")

# utf-8-sig: a byte-order mark (Windows editors write one) is read and dropped; without one it is utf-8
READERS = {
    ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False, encoding="utf-8-sig"),
    ".json": lambda p: pd.read_json(p, dtype=False, encoding="utf-8-sig"),
    ".csv": lambda p: pd.read_csv(p, keep_default_na=False, encoding="utf-8-sig"),
    ".parquet": pd.read_parquet,
}


def check_data_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it is a file; else one line saying what it is (a folder, or nothing) and what to
    give instead."""
    path = Path(path)
    if path.is_dir():
        raise NeurometryError(
            f"DATA {path} is a folder; give one .jsonl, .csv or .parquet file (a table with a text or image "
            "column) or a .npy/.npz array, e.g. one inside it"
        )
    if not path.is_file():
        raise NeurometryError(f"data file {path} does not exist; give a .jsonl, .csv, .parquet, .npy or .npz file")
    return path


def _file_key(path: Path) -> tuple[str, int, int]:
    """A file's identity for the caches below: a file rewritten since changes its size or modification time."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def load_arrays(path: str | os.PathLike) -> tuple[np.ndarray, pd.DataFrame]:
    """The inputs of a tensor model: (rows, ...) numeric ``inputs`` and one metadata row per input.

    A .npy file is the inputs; a .npz holds ``inputs`` and, as metadata columns, any 1-D arrays of one value
    per row (labels, operands). Nothing is unpickled. Integer inputs stay integers (token ids), floats are
    read as float32; NaN/Inf, 0-D arrays and empty ones are refused.

    The last file read is kept when under :data:`CACHED_ARRAY_BYTES` (its inputs read-only, the table
    copied for each caller): a series records the same probe inputs once per checkpoint, and reading and
    checking them each time cost ~3 ms a run.
    """
    path = check_data_path(path)
    key = _file_key(path)
    if key in _recent_arrays:
        inputs, table = _recent_arrays[key]
        return inputs, table.copy()
    inputs, table = _read_arrays(path)
    _recent_arrays.clear()
    if inputs.nbytes <= CACHED_ARRAY_BYTES:
        inputs.setflags(write=False)
        _recent_arrays[key] = inputs, table.copy()
    return inputs, table


CACHED_ARRAY_BYTES = 256 * 2**20
_recent_arrays: dict[tuple[str, int, int], tuple[np.ndarray, pd.DataFrame]] = {}


def _read_arrays(path: Path) -> tuple[np.ndarray, pd.DataFrame]:
    fix = "save the inputs with numpy.save (or numpy.savez with an 'inputs' array)"
    if path.suffix.lower() == ".npy":
        inputs, columns = read_npy(path, fix=fix), {}
    elif path.suffix.lower() == ".npz":
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file under a .npz name
                raise ValueError("it is a single array, not an archive of named arrays")
            with loaded as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise NeurometryError(f"cannot read {path} as a .npz archive ({error}); {fix}") from None
        if "inputs" not in arrays:
            raise NeurometryError(f"{path} has no 'inputs' array (it holds {', '.join(arrays) or 'nothing'}); {fix}")
        inputs = arrays.pop("inputs")
        columns = arrays
    else:
        raise NeurometryError(f"a tensor model reads .npy or .npz arrays, not {path.name}; {fix}")
    if inputs.ndim == 0 or len(inputs) == 0:
        raise NeurometryError(f"{path}: the inputs are empty or 0-D (shape {inputs.shape}); give one row per input")
    if inputs.dtype.kind not in "iuf" and inputs.dtype != np.bool_:
        raise NeurometryError(f"{path}: inputs of dtype {inputs.dtype} are not numeric; {fix}")
    if inputs.dtype.kind == "f":
        if not np.isfinite(inputs).all():
            raise NeurometryError(f"{path}: the inputs hold NaN or Inf; drop or fix those rows")
        with np.errstate(over="ignore"):
            inputs = inputs.astype(np.float32, copy=False)
        if not np.isfinite(inputs).all():
            raise NeurometryError(f"{path}: the inputs hold values beyond float32's range (~3.4e38); rescale them")
    table = {"row_id": np.arange(len(inputs))}
    for name, values in columns.items():
        if values.ndim != 1 or len(values) != len(inputs):
            raise NeurometryError(
                f"{path}: array {name!r} has shape {values.shape}; metadata arrays hold one value per input "
                f"({len(inputs)})"
            )
        table[name] = values
    return inputs, pd.DataFrame(table)


def load_table(path: str | os.PathLike, modality: str, text_column: str = "text") -> pd.DataFrame:
    """Read DATA and check it has what a ``modality`` ("text" or "image") model needs.

    Returns the table with every column kept as row metadata. Image paths are made absolute,
    relative to the data file's folder. A text model reads ``text_column``, kept as ``text`` (so a CSV
    of ``statement`` and ``label`` columns records with ``text_column="statement"``).
    """
    path = check_data_path(path)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        raise NeurometryError(f"{path.name} is an array; a {modality} model reads a .jsonl, .csv or .parquet table")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise NeurometryError(f"cannot read {path.name}: DATA must end in .jsonl, .json, .csv or .parquet")
    try:
        table = reader(path)
    except ValueError as exc:
        raise NeurometryError(f"cannot parse {path}: {str(exc).splitlines()[0]}; check the file format") from None
    if len(table) == 0:
        raise NeurometryError(f"data file {path} has no rows; give at least one row")
    column = "text" if modality == "text" else "image"
    if modality == "text" and text_column != "text":
        if text_column not in table.columns:
            raise NeurometryError(f"{path} has no {text_column!r} column for --text-column (columns: "
                                  f"{', '.join(map(str, table.columns))})")
        if "text" in table.columns:
            raise NeurometryError(f"{path} has a 'text' column besides --text-column {text_column}; rename one of them")
        table = table.rename(columns={text_column: "text"})
    if column not in table.columns:
        raise NeurometryError(
            f"{path} has no {column!r} column (columns: {', '.join(map(str, table.columns))}); "
            f"a {modality} model reads the {column!r} column"
        )
    values = table[column]
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise NeurometryError(f"{path}: row {bad[0]} has an empty or non-string {column!r}; fix or drop that row")
    if modality == "image":
        table = table.copy()
        table[column] = [str((path.parent / v).resolve()) for v in values]
        missing = [v for v in table[column] if not Path(v).is_file()]
        if missing:
            raise NeurometryError(f"image {missing[0]} does not exist ({len(missing)} missing); fix the paths in {path}")
    return table


def dataset_id(path: str | os.PathLike) -> str:
    """A content hash of the data file, so runs on the same data join on row ids."""
    return _content_hash(_file_key(Path(path)))


@functools.lru_cache(maxsize=16)
def _content_hash(key: tuple[str, int, int]) -> str:
    digest = hashlib.sha256()
    with open(key[0], "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
