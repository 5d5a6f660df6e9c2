"""Reading the files users hand us (safetensors, .npy, delimited tables) with one clear error each."""

from __future__ import annotations

import os
from typing import Any


def read_safetensors(path: str | os.PathLike, fix: str = "", as_torch: bool = False) -> dict[str, Any]:
    """The tensors of a safetensors file by name (NumPy arrays, or torch tensors with ``as_torch``).

    A file that is not safetensors (truncated, garbage, another format) raises NeurometryError naming it,
    with ``fix`` (what to give instead) after the reason. The caller checks that the file exists, so its
    own message can say what the file was for.
    """
    from safetensors import SafetensorError

    from neurometry.errors import NeurometryError

    if as_torch:
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise NeurometryError(f"{path} is not a readable safetensors file ({error}){fix}") from None


def read_npy(
    path: str | os.PathLike, mmap: bool = False, fix: str = "save it with numpy.save", what: str | None = None
) -> Any:
    """A .npy array, never unpickled (``mmap`` maps it read-only instead of reading it); a missing or
    unreadable file, or a pickled object array, raises NeurometryError saying what could not be read
    (``what``, default "PATH as a .npy array"), why, then ``fix``."""
    import numpy as np

    from neurometry.errors import NeurometryError

    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except EOFError:  # a file of no bytes
        raise NeurometryError(f"cannot read {what or f'{path} as a .npy array'} (the file is empty); {fix}") from None
    except (OSError, ValueError) as error:
        raise NeurometryError(f"cannot read {what or f'{path} as a .npy array'} ({error}); {fix}") from None


def read_delimited(path: str | os.PathLike, fix: str, **options: Any) -> Any:
    """``pandas.read_csv(path, **options)``; an empty file, a malformed row or bytes that are not text raise
    NeurometryError naming the file, the reason and ``fix`` (what to give instead). The caller checks that the
    file exists, so its own message can say what the file was for."""
    import pandas as pd

    from neurometry.errors import NeurometryError

    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise NeurometryError(f"{path} is empty; {fix}") from None
    except (ValueError, OSError) as error:  # ParserError and UnicodeDecodeError are ValueErrors
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise NeurometryError(f"cannot read {path} as a table ({reason}); {fix}") from None
