"""``--device`` and ``--model-dtype``: names resolved to what this machine has, one-line errors otherwise."""

from __future__ import annotations

import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.models import load_model
from neurometry.models.devices import (
    device_name,
    dtype_name,
    inputs_to,
    resolve_device,
    resolve_model_dtype,
)

TINY = "neurometry.models.tiny:tiny_llama"
NO_CUDA = not torch.cuda.is_available()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_cpu_and_default():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_auto_without_cuda_is_the_cpu_and_says_so_once(capsys):
    assert resolve_device("auto") == torch.device("cpu")
    assert capsys.readouterr().err.strip().splitlines() == ["device: cpu (no CUDA)"]
    assert resolve_device("auto", announce=False) == torch.device("cpu")
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_names_the_fix(spec):
    with pytest.raises(NeurometryError) as exc:
        resolve_device(spec)
    message = one_line(exc)
    assert "CUDA is not available" in message and "--device cpu" in message


@pytest.mark.skipif(NO_CUDA, reason="needs CUDA")
def test_cuda_index_out_of_range_names_the_valid_ones():
    with pytest.raises(NeurometryError) as exc:
        resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert "pick one of them" in one_line(exc)


def test_mps_without_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(NeurometryError) as exc:
        resolve_device("mps")
    assert "no Apple MPS" in one_line(exc)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu"])
def test_unknown_device(spec):
    with pytest.raises(NeurometryError) as exc:
        resolve_device(spec)
    assert "auto" in one_line(exc) or "cuda:N" in one_line(exc)


def test_model_dtypes():
    assert resolve_model_dtype("float32") is torch.float32
    assert resolve_model_dtype("bfloat16") is torch.bfloat16
    assert resolve_model_dtype("float16") is torch.float16
    assert resolve_model_dtype(None) is torch.float32
    assert dtype_name(torch.bfloat16) == "bfloat16"
    assert device_name(torch.device("cpu")) == "cpu" and device_name(torch.device("cuda", 1)) == "cuda:1"
    with pytest.raises(NeurometryError) as exc:
        resolve_model_dtype("int8")
    assert "float32, bfloat16, float16" in one_line(exc)


def test_inputs_to_casts_floats_only():
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.int64), "pixels": torch.ones(2, 3)}
    moved = inputs_to(batch, torch.device("cpu"), torch.bfloat16)
    assert moved["input_ids"].dtype == torch.int64 and moved["pixels"].dtype == torch.bfloat16
    assert inputs_to(torch.ones(2), torch.device("cpu"), torch.float16).dtype == torch.float16


def test_load_model_default_is_cpu_float32_and_dtype_casts():
    plain = load_model(TINY)
    assert plain.device == torch.device("cpu") and plain.dtype == torch.float32
    half = load_model(TINY, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in half.module.parameters())
    assert load_model(half) is half and half.dtype == torch.bfloat16  # a LoadedModel stays as it is
    assert load_model(half, dtype="float32").dtype == torch.float32


def test_load_hf_folder_loads_in_the_model_dtype(tmp_path):
    tiny = load_model(TINY)
    tiny.module.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), dtype="float16")
    assert loaded.dtype == torch.float16 and loaded.device == torch.device("cpu")
    assert load_model(str(tmp_path / "m")).dtype == torch.float32


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_load_model_on_missing_cuda_fails_before_loading():
    with pytest.raises(NeurometryError) as exc:
        load_model("no-such-model-name", device="cuda")
    assert "CUDA is not available" in one_line(exc)
