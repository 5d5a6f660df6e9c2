"""Plain arrays out of a store: a point as .npy, its row metadata as Parquet or CSV beside it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurometry.errors import NeurometryError
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
    try:
        array = np.lib.format.open_memmap(tmp_array, mode="w+", dtype=dtype, shape=(info.n_rows, *info.shape))
        row = 0
        for block in store.iter_chunks(point, run=info.run_id):
            array[row : row + len(block)] = block
            row += len(block)
        array.flush()
        del array
        meta = store.metadata(info.run_id)
        if meta_format == "parquet":
            meta.to_parquet(tmp_meta, index=False)
        else:
            meta.to_csv(tmp_meta, index=False)
        os.replace(tmp_array, out)
        os.replace(tmp_meta, meta_path)
    finally:
        for tmp in (tmp_array, tmp_meta):
            if tmp.exists():
                tmp.unlink()
    return [out, meta_path]
