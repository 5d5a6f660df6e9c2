"""The readers of user-given tensor files: what they read back, and the one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from neurometry.errors import NeurometryError
from neurometry.files import read_npy, read_safetensors


def test_read_safetensors_as_numpy_or_torch(tmp_path):
    weights = {"W": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_file(weights, str(tmp_path / "w.safetensors"))
    np.testing.assert_array_equal(read_safetensors(tmp_path / "w.safetensors")["W"], weights["W"])
    loaded = read_safetensors(tmp_path / "w.safetensors", as_torch=True)["W"]
    assert isinstance(loaded, torch.Tensor) and torch.equal(loaded, torch.from_numpy(weights["W"]))


@pytest.mark.parametrize("content", [b"x", b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"])
def test_a_broken_safetensors_file_is_one_line_with_the_fix(tmp_path, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(NeurometryError, match=r"bad.safetensors is not a readable safetensors file \(.*\); give W"):
        read_safetensors(tmp_path / "bad.safetensors", "; give W")


def test_read_npy_reads_maps_and_refuses_pickles_and_missing_files(tmp_path):
    array = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(read_npy(tmp_path / "a.npy"), array)
    mapped = read_npy(tmp_path / "a.npy", mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(NeurometryError, match="objects.npy as a .npy array .*; save it with numpy.save"):
        read_npy(tmp_path / "objects.npy")
    with pytest.raises(NeurometryError, match=r"^cannot read labels from .*missing.npy \(.*\); one per row$"):
        read_npy(tmp_path / "missing.npy", fix="one per row", what=f"labels from {tmp_path / 'missing.npy'}")
