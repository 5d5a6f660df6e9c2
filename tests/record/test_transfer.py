"""Device-to-host copies that overlap the next batch (``record.transfer.HostCopies``).

The pinned, non-blocking CUDA copies cannot run here; what they change is *when* each batch's rows come
back (one ``submit`` later). That schedule is forced on the CPU below, so the order, the values and the
refusals of overflow are pinned down on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from neurometry import NeurometryError, open_store, record
from neurometry.models.tiny import tiny_llama
from neurometry.record import recorder
from neurometry.record.transfer import HostCopies, to_disk
from tests.record.test_record_dtype import overflow_after

CPU = torch.device("cpu")


def batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3 + i, 5, generator=generator) for i in range(n)]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_overlapped_copies_come_back_one_call_later_in_order_and_equal(dtype):
    values = batches(4)
    copies = HostCopies(CPU, dtype, overlap=True)
    got = []
    for i, v in enumerate(values):
        back = copies.submit({"p": v}, first_input=10 * i, tag=i)
        assert [tag for tag, _ in back] == ([] if i == 0 else [i - 1])
        got += back
    got += copies.flush()
    assert copies.flush() == []
    assert [tag for tag, _ in got] == [0, 1, 2, 3]
    for (_, rows), v in zip(got, values, strict=True):
        np.testing.assert_array_equal(rows["p"], to_disk(v, dtype, "p", 0))
    plain = HostCopies(CPU, dtype)
    assert not plain.overlap
    assert [tag for tag, _ in plain.submit({"p": values[0]}, 0, "now")] == ["now"]


def test_overflow_is_refused_when_its_copy_is_collected_naming_its_batch():
    copies = HostCopies(CPU, "float16", model_dtype="bfloat16", overlap=True)
    copies.submit({"p": torch.ones(2, 3)}, first_input=0)
    copies.submit({"p": torch.full((2, 3), 1e6)}, first_input=7)  # beyond float16: inf on conversion
    with pytest.raises(NeurometryError, match="exceeds the float16 range near input row 7"):
        copies.flush()
    bad = torch.ones(2, 3)
    bad[1, 2] = float("nan")
    copies.submit({"p": bad}, first_input=9)
    with pytest.raises(NeurometryError, match="overflowed in bfloat16"):
        copies.flush()


@pytest.mark.parametrize("budget", [None, 200], ids=["batch-size", "token-budget"])
def test_a_run_with_overlapped_copies_stores_the_same_rows(budget, sentences_file, tmp_path, monkeypatch):
    model = tiny_llama()
    points = ["embed", "resid.*"]
    record(model, sentences_file, points, tmp_path / "plain", reduce="tokens", batch_size=3,
           max_batch_tokens=budget, progress=False)
    monkeypatch.setattr(recorder, "HostCopies", functools.partial(HostCopies, overlap=True))
    record(model, sentences_file, points, tmp_path / "overlap", reduce="tokens", batch_size=3,
           max_batch_tokens=budget, chunk_rows=5, progress=False)
    plain, overlapped = open_store(tmp_path / "plain"), open_store(tmp_path / "overlap")
    for point in ["embed", "resid.0", "resid.1"]:
        np.testing.assert_array_equal(overlapped.activations(point), plain.activations(point))


def test_an_overflow_found_one_batch_late_still_leaves_nothing(sentences_file, tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "HostCopies", functools.partial(HostCopies, overlap=True))
    model = tiny_llama()
    handle = overflow_after(model, 2)
    try:
        with pytest.raises(NeurometryError, match="overflowed in float16"):
            record(model, sentences_file, ["resid.*"], tmp_path / "s", batch_size=2, chunk_rows=2,
                   model_dtype="float16", progress=False)
    finally:
        handle.remove()
    assert not (tmp_path / "s").exists()
