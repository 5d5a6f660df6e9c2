"""Arrays from files (.npy, .mat, .parquet) into a store as one point of a new run: `neurometry import`.

The counterpart of :mod:`neurometry.store.export`. Everything is checked before anything is written
(file, format, dtype, shape, finiteness, metadata rows, run name); the store is created only after
that, and the rows then go through :func:`neurometry.store.writer.import_array`, which makes the run
visible in the catalog only once every row is stored. A failure leaves no run behind (and no store,
when this call made it).

Nothing is unpickled: ``.npy`` files are read with ``allow_pickle=False`` (memory-mapped, checked
and copied in blocks), ``.mat`` files with :func:`scipy.io.loadmat`, ``.parquet`` with pandas.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.store.store import Store, check_store_path, open_store
from neurometry.store.writer import RunLock, import_array

FORMATS = (".npy", ".mat", ".parquet")
METADATA_FORMATS = (".parquet", ".csv")
BLOCK_BYTES = 8 * 2**20  # rows are checked and copied in blocks of about this size
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RESERVED_COLUMNS = ("row", "input_row")  # the store derives these for every run


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_file` left in the store."""

    store: Path
    run_id: str
    point: str
    n_rows: int
    shape: tuple[int, ...]  # per-row feature shape
    dtype: str  # stored dtype (float32 or float16)
    source_dtype: str  # dtype in the file
    source: str  # the run's model column: import:FILE
    key: str | None = None  # the .mat variable imported
    metadata_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # conversions the user should know about


@dataclass
class _Source:
    """A validated array: read in blocks (memory-mapped .npy) or held whole (.mat, .parquet)."""

    array: np.ndarray
    name: str  # for messages: the file, or FILE['key']
    metadata: pd.DataFrame | None = None  # columns a .parquet file carries beside its list column
    key: str | None = None  # the variable of a .mat file


def import_file(
    path: str | os.PathLike,
    store_path: str | os.PathLike,
    point: str,
    run: str | None = None,
    metadata: str | os.PathLike | None = None,
    key: str | None = None,
) -> ImportResult:
    """Import the array in ``path`` (.npy, .mat or .parquet) as ``point`` of a new run of the store at
    ``store_path`` (created if missing).

    The array is rows x features, or rows x any per-row shape; 1-D and 0-D arrays are refused, and so
    are NaN or Inf values and non-numeric dtypes. float16 is stored as float16; every other numeric dtype
    (float64, integers, booleans) as float32, since a store holds float32, float16 or bfloat16 points.
    ``run`` defaults to the file's stem; ``metadata`` (.parquet or .csv, one row per array row) becomes
    the run's row metadata (``store.metadata(run)``). ``key`` picks the variable of a .mat file (by
    default its only numeric matrix).
    """
    path, store_path = Path(path), Path(store_path)
    suffix = _check_input(path, key)
    if not NAME.fullmatch(point):
        raise NeurometryError(f"point name {point!r} may hold only letters, digits, '.', '_' and '-'; choose another --point")
    run_id = run if run is not None else _default_run_name(path)
    if not NAME.fullmatch(run_id):
        raise NeurometryError(f"run name {run_id!r} may hold only letters, digits, '.', '_' and '-'; choose another --run")
    meta_path = Path(metadata) if metadata is not None else None
    if meta_path is not None:
        _check_metadata_path(meta_path)
    check_store_path(store_path, create=True)
    if store_path.exists():  # a clash found before reading a large array
        existing = open_store(store_path)  # writable: an older store format is upgraded, as any writer does
        try:
            _check_new_run(existing, run_id)
        finally:
            existing.close()

    source = {".npy": _read_npy, ".mat": _read_mat, ".parquet": _read_parquet}[suffix](path, key)
    stored, notes = _check_array(source)
    rows = _metadata(source, meta_path, len(source.array), notes)

    created = not store_path.exists()
    store = open_store(store_path, create=True)
    try:
        lock = RunLock(store, run_id)
        try:
            _check_new_run(store, run_id)
            _drop_orphan_dataset(store, run_id)
            import_array(store, run_id, point, _blocks(source.array, stored), len(source.array), rows,
                         source=f"import:{path.name}")
        finally:
            lock.release()
    except BaseException:
        runs = store.runs()
        store.close()
        if created and not runs:
            shutil.rmtree(store_path, ignore_errors=True)
        raise
    store.close()
    return ImportResult(
        store=store_path, run_id=run_id, point=point, n_rows=len(source.array), shape=tuple(source.array.shape[1:]),
        dtype=stored.name, source_dtype=source.array.dtype.name, source=f"import:{path.name}",
        key=source.key, metadata_columns=[str(c) for c in rows.columns], notes=notes,
    )


# -- checks before reading ---------------------------------------------------------------------

def _check_input(path: Path, key: str | None) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise NeurometryError(
            f"cannot import {path.name}: give a .npy, .mat or .parquet file (numpy.save writes .npy)"
        )
    if not path.is_file():
        raise NeurometryError(f"file {path} does not exist; give an existing .npy, .mat or .parquet file")
    if key is not None and suffix != ".mat":
        raise NeurometryError(f"--key picks a variable of a .mat file; drop it for {path.name}")
    return suffix


def _check_metadata_path(path: Path) -> None:
    if path.suffix.lower() not in METADATA_FORMATS:
        raise NeurometryError(f"--metadata {path.name} must be a .parquet or .csv file with one row per array row")
    if not path.is_file():
        raise NeurometryError(f"metadata file {path} does not exist; give a .parquet or .csv file or drop --metadata")


def _default_run_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "import"


def _check_new_run(store: Store, run_id: str) -> None:
    if store.find_run(run_id) is not None:
        raise NeurometryError(
            f"run {run_id!r} already exists in {store.path}; pass --run with another name, or remove that run "
            "(or import into another --out store)"
        )


def _drop_orphan_dataset(store: Store, run_id: str) -> None:
    """Remove the data rows a failed earlier import of ``run_id`` left (no run uses them any more), so
    this import's metadata replaces them instead of being skipped as already present."""
    dataset = f"import-{run_id}"
    with store.transaction() as tx:
        if tx.execute("SELECT 1 FROM runs WHERE dataset_id = ?", (dataset,)).fetchone():
            return
        tx.execute("DELETE FROM inputs WHERE dataset_id = ?", (dataset,))
        tx.execute("DELETE FROM datasets WHERE dataset_id = ?", (dataset,))


# -- readers -----------------------------------------------------------------------------------

def _read_npy(path: Path, key: str | None) -> _Source:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        message = str(exc).lower()
        if "pickle" in message or "object" in message:
            raise NeurometryError(
                f"{path.name} holds Python objects (pickled data or a dtype=object array), which neurometry never "
                "unpickles; save a numeric array, e.g. numpy.save(path, array.astype(numpy.float32))"
            ) from None
        raise NeurometryError(f"cannot read {path.name} as .npy ({str(exc).splitlines()[0]}); save it with numpy.save") from None
    except (OSError, EOFError) as exc:
        raise NeurometryError(f"cannot read {path.name} as .npy ({exc}); save it with numpy.save") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise NeurometryError(f"{path.name} is an .npz archive, not one array; save one array with numpy.save as .npy")
    return _Source(array, path.name)


def _mat_variables(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    import scipy.io

    try:
        return scipy.io.whosmat(path)
    except NotImplementedError:
        raise NeurometryError(
            f"{path.name} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; save it in MATLAB with "
            "save(FILE, VAR, '-v7'), or write the array to .npy"
        ) from None
    except (ValueError, OSError, TypeError) as exc:
        raise NeurometryError(f"cannot read {path.name} as a MATLAB file ({str(exc).splitlines()[0]}); check the file") from None


def _describe(variables: list[tuple[str, tuple[int, ...], str]]) -> str:
    return ", ".join(f"{name} ({'x'.join(map(str, shape))} {kind})" for name, shape, kind in variables) or "none"


def _read_mat(path: Path, key: str | None) -> _Source:
    import scipy.io
    import scipy.sparse

    variables = _mat_variables(path)
    numeric = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
               "logical", "sparse"}
    if key is None:
        # a matrix: numeric, with at least two dimensions longer than 1 (MATLAB has no 1-D arrays)
        matrices = [v for v in variables if v[2] in numeric and sum(d > 1 for d in v[1]) >= 2]
        if len(matrices) != 1:
            what = "no numeric matrix" if not matrices else f"{len(matrices)} numeric matrices"
            raise NeurometryError(f"{path.name} holds {what}; its variables: {_describe(variables)}; choose one with --key")
        key = matrices[0][0]
    names = [v[0] for v in variables]
    if key not in names:
        raise NeurometryError(
            f"{path.name} has no variable {key!r}{did_you_mean(key, names)}; its variables: {_describe(variables)}; "
            "choose one with --key"
        )
    name = f"{path.name}[{key!r}]"
    kind = dict((v[0], v[2]) for v in variables)[key]
    if kind not in numeric:
        raise NeurometryError(f"{name} is a MATLAB {kind}, not a numeric array; choose a numeric variable with --key")
    try:
        value = scipy.io.loadmat(path, variable_names=[key], mat_dtype=True)[key]  # double stays float64
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise NeurometryError(f"cannot read {key!r} from {path.name} ({str(exc).splitlines()[0]}); check the file") from None
    if scipy.sparse.issparse(value):
        value = value.toarray()
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[0] == 1 and value.shape[1] != 1:
        raise NeurometryError(
            f"{name} is a 1 x {value.shape[1]} row vector; import a rows x features matrix "
            "(one value per row: save it as a column, N x 1)"
        )
    return _Source(value, name, key=key)


def _nested(value: object) -> np.ndarray:
    """A list cell of a parquet column (possibly nested) as one N-D array."""
    if isinstance(value, np.ndarray) and value.dtype == object or isinstance(value, (list, tuple)):
        return np.stack([_nested(v) for v in value]) if len(value) else np.zeros(0)
    return np.asarray(value)


def _is_list(value: object) -> bool:
    return isinstance(value, (np.ndarray, list, tuple))


def _read_parquet(path: Path, key: str | None) -> _Source:
    try:
        table = pd.read_parquet(path)
    except (ValueError, OSError, ImportError) as exc:
        raise NeurometryError(f"cannot read {path.name} as Parquet ({str(exc).splitlines()[0]}); check the file") from None
    table.columns = [str(c) for c in table.columns]
    lists = [c for c in table.columns if table[c].dtype == object and any(_is_list(v) for v in table[c].head(100))]
    if len(lists) > 1:
        raise NeurometryError(f"{path.name} has several list columns ({', '.join(lists)}); keep one, the features")
    if lists:
        column = lists[0]
        values = list(table[column])
        missing = [i for i, v in enumerate(values) if not _is_list(v)]
        if missing:
            raise NeurometryError(f"{path.name}: row {missing[0]} of list column {column!r} is empty; fill or drop that row")
        try:
            array = np.stack([_nested(v) for v in values]) if values else np.zeros((0, 0))
        except ValueError:
            shapes = [np.shape(_safe_nested(v)) for v in values]
            row = next(i for i, s in enumerate(shapes) if s != shapes[0])
            raise NeurometryError(
                f"{path.name}: list column {column!r} has rows of different shapes (row 0: {shapes[0]}, "
                f"row {row}: {shapes[row]}); every row needs the same number of values"
            ) from None
        rest = table.drop(columns=[column])
        return _Source(array, f"{path.name}[{column!r}]", rest if len(rest.columns) else None)
    other = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if other:
        raise NeurometryError(
            f"{path.name} has non-numeric columns ({', '.join(other)}); give features as numeric columns or one list "
            "column, and row labels with --metadata"
        )
    if not len(table.columns):
        raise NeurometryError(f"{path.name} has no columns; give features as numeric columns or one list column")
    dtypes = set(table.dtypes)
    if len(dtypes) == 1 and isinstance(next(iter(dtypes)), np.dtype):
        return _Source(table.to_numpy(), path.name)
    # mixed or nullable columns: one float64 array, a missing value becomes NaN (refused with its row)
    return _Source(table.to_numpy(dtype=np.float64, na_value=np.nan), path.name)


def _safe_nested(value: object) -> object:
    try:
        return _nested(value)
    except ValueError:
        return value


# -- checks of the values ----------------------------------------------------------------------

def _check_array(source: _Source) -> tuple[np.dtype, list[str]]:
    """The stored dtype for ``source``, after checking dtype, shape and that every value is finite there."""
    array, name = source.array, source.name
    dtype = array.dtype
    if dtype.kind == "c":
        raise NeurometryError(f"{name} is complex ({dtype}); import the real and imaginary parts, or numpy.abs, as real arrays")
    if dtype.kind not in "biuf" or dtype.names is not None:
        raise NeurometryError(f"{name} has dtype {dtype}, not numbers; convert it with .astype(numpy.float32)")
    if array.ndim < 2:
        raise NeurometryError(
            f"{name} is {array.ndim}-D (shape {array.shape}); import rows x features (reshape a vector to (n, 1))"
        )
    if array.shape[0] == 0:
        raise NeurometryError(f"{name} has no rows (shape {array.shape}); import at least one row")
    if array[0].size == 0:
        raise NeurometryError(f"{name} has no features (shape {array.shape}); import at least one value per row")
    stored = np.dtype(np.float16 if dtype == np.float16 else np.float32)
    converted = dtype not in (np.float16, np.float32)
    bad, first, exact, overflow = 0, None, True, False
    for lo, block in _row_blocks(array):
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, reported below
            cast = block.astype(stored, copy=False)
        finite = np.isfinite(cast)
        exact = exact and (not converted or bool(np.array_equal(cast, block)))
        if not finite.all():
            rows = np.flatnonzero(~finite.reshape(len(block), -1).all(axis=1))
            if first is None:
                first = lo + int(rows[0])
                overflow = bool(np.isfinite(np.asarray(block[rows[0]])).all()) and dtype.kind == "f"
            bad += int((~finite).sum())
    if first is not None:
        if overflow:
            raise NeurometryError(
                f"{name} row {first} holds values beyond float32's range (about 3.4e38); rescale the data before importing"
            )
        raise NeurometryError(
            f"{name} has {bad} NaN or Inf values, the first in row {first}; replace or drop them "
            "(numpy.nan_to_num, or drop those rows) before importing"
        )
    notes = []
    if converted:  # a store holds float32, float16 or bfloat16 points
        how = "every value exactly" if exact else "rounded to float32's 7 significant digits"
        notes.append(f"{dtype} values stored as float32 ({how})")
    return stored, notes


def _row_blocks(array: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    row_bytes = max(1, array[0].nbytes)
    step = max(1, BLOCK_BYTES // row_bytes)
    for lo in range(0, len(array), step):
        yield lo, np.asarray(array[lo : lo + step])


def _blocks(array: np.ndarray, stored: np.dtype) -> Iterator[np.ndarray]:
    for _, block in _row_blocks(array):
        yield np.ascontiguousarray(block, dtype=stored)


def _metadata(source: _Source, path: Path | None, n_rows: int, notes: list[str]) -> pd.DataFrame:
    """The run's row metadata: the --metadata file, the columns beside a parquet list column, or none."""
    if path is not None and source.metadata is not None:
        raise NeurometryError(
            f"{source.name.split('[')[0]} carries row metadata columns ({', '.join(map(str, source.metadata.columns))}) "
            "beside its list column; drop --metadata or drop those columns"
        )
    if path is None:
        table = source.metadata if source.metadata is not None else pd.DataFrame(index=range(n_rows))
    else:
        try:
            table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, keep_default_na=False)
        except (ValueError, OSError, ImportError) as exc:
            raise NeurometryError(f"cannot read metadata {path.name} ({str(exc).splitlines()[0]}); check the file") from None
        if len(table) != n_rows:
            raise NeurometryError(
                f"metadata {path.name} has {len(table)} rows but {source.name} has {n_rows}; give one metadata row per array row"
            )
    table = table.reset_index(drop=True)
    table.columns = [str(c) for c in table.columns]
    for column in RESERVED_COLUMNS:
        if column not in table.columns:
            continue
        values = table[column]
        if pd.api.types.is_integer_dtype(values) and np.array_equal(values.to_numpy(), np.arange(n_rows)):
            table = table.drop(columns=[column])  # the store gives the same numbers (an export's `row`)
        else:
            renamed = f"source_{column}"
            if renamed in table.columns:
                raise NeurometryError(f"metadata has both {column!r} and {renamed!r}; rename {column!r}, which the store sets")
            table = table.rename(columns={column: renamed})
            notes.append(f"metadata column {column!r} kept as {renamed!r} (the store numbers rows itself)")
    return table
