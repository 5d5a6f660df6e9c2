"""Plain arrays out of a store: a point as .npy, its row metadata as Parquet or CSV beside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.store.chunks import is_disk_full
from neurometry.store.store import Store


def export_point(
    store: Store, point: str, out: str | os.PathLike, run: str | None = None, meta_format: str = "parquet"
) -> list[Path]:
    """Write the committed rows of ``point`` to ``out`` (.npy, streamed chunk by chunk) and the row
    metadata to ``out`` with suffix ``.parquet`` or ``.csv``. Both appear whole or not at all."""
    out = Path(out)
    if out.suffix != ".npy":
        raise NeurometryError(f"--out {out} must end in .npy")
    if not out.parent.resolve().is_dir():
        raise NeurometryError(f"folder {out.parent} does not exist; create it first")
    if not os.access(out.parent.resolve(), os.W_OK):
        raise NeurometryError(f"cannot write in {out.parent}; choose another --out")
    info = store.point_info(point, run)
    meta_path = out.with_suffix(f".{meta_format}")
    tmp_array = out.with_name(f".{out.name}.partial")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.partial")
    dtype = np.float32 if info.dtype == "bfloat16" else np.dtype(info.dtype)
    shape = (info.n_rows, *info.shape)
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
    free = shutil.disk_usage(out.parent.resolve()).free
    if needed > free:
        raise NeurometryError(
            f"{out} needs {needed / 1e6:.1f} MB and its disk has {free / 1e6:.1f} MB free; free some space or "
            "choose another --out"
        )
    try:
        # Written through a plain file, not a memory map: a full disk is then an OSError to report, where
        # a memory-mapped write would die of SIGBUS and leave the partial file.
        with open(tmp_array, "wb") as handle:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(handle, header)
            rows = 0
            for block in store.iter_chunks(point, run=info.run_id):
                write_block(handle, np.ascontiguousarray(block, dtype=dtype))
                rows += len(block)
        if rows != info.n_rows:  # the store changed under us
            raise NeurometryError(f"{point} gave {rows} rows instead of {info.n_rows}; export it again")
        meta = store.metadata(info.run_id)
        if meta_format == "parquet":
            meta.to_parquet(tmp_meta, index=False)
        else:
            meta.to_csv(tmp_meta, index=False)
        os.replace(tmp_array, out)
        os.replace(tmp_meta, meta_path)
    except OSError as exc:
        if is_disk_full(exc):
            raise NeurometryError(f"the disk is full while writing {out}; free some space and export again") from None
        raise NeurometryError(f"cannot write {out} ({exc.strerror or exc}); choose another --out") from None
    finally:
        for tmp in (tmp_array, tmp_meta):
            if tmp.exists():
                tmp.unlink()
    return [out, meta_path]


def write_block(handle: BinaryIO, block: np.ndarray) -> None:
    """Append a C-contiguous block's bytes to an open file."""
    handle.write(memoryview(block).cast("B"))
