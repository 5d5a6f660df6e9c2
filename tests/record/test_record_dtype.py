"""``record --device/--model-dtype``: the choice is saved with the run, half-precision weights agree
with float32 to a stated tolerance, overflow is refused with nothing stored, and runs saved before
these settings existed still resume."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from neurometry import NeurometryError, open_store, record
from neurometry.models.tiny import tiny_llama

MODEL = "neurometry.models.tiny:tiny_llama"
POINTS = ["resid.*", "logits"]
# Largest relative error per row (||half - float32|| / ||float32||) measured on tiny_llama over the
# test sentences, mean and token rows alike: bfloat16 6.9e-3, float16 8.2e-4. The bounds leave ~2x.
TOLERANCE = {"bfloat16": 1.5e-2, "float16": 2e-3}


def test_a_run_saves_its_device_and_model_dtype_and_ls_shows_them(run_cli, sentences_file, tmp_path):
    out = tmp_path / "s"
    result = run_cli("record", MODEL, str(sentences_file), "--points", "resid.0", "--out", str(out),
                     "--model-dtype", "bfloat16", "--device", "auto", "--quiet")
    assert result.returncode == 0, result.stderr
    if not torch.cuda.is_available():
        assert result.stderr.splitlines().count("device: cpu (no CUDA)") == 1  # said once
    listed = run_cli("ls", str(out), "--json")
    settings = json.loads(listed.stdout)["runs"][0]["settings"]
    assert settings["model_dtype"] == "bfloat16"
    assert settings["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_defaults_are_cpu_float32(sentences_file, tmp_path):
    record(MODEL, sentences_file, ["resid.0"], tmp_path / "s", progress=False)
    settings = open_store(tmp_path / "s").runs()[0].settings
    assert (settings["device"], settings["model_dtype"]) == ("cpu", "float32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_exits_2_with_one_line_and_no_store(run_cli, sentences_file, tmp_path):
    out = tmp_path / "s"
    result = run_cli("record", MODEL, str(sentences_file), "--points", "resid.0", "--out", str(out),
                     "--device", "cuda")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--device cpu" in lines[0]
    assert not out.exists()


def test_unknown_model_dtype_exits_2(run_cli, capsys, sentences_file, tmp_path):
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it: one usage line
        run_cli("record", MODEL, str(sentences_file), "--points", "resid.0", "--out", str(tmp_path / "s"),
                "--model-dtype", "int8")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "'float32', 'bfloat16', 'float16'" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("model_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("reduce", ["mean", "tokens"])
def test_half_precision_agrees_with_float32_per_row(model_dtype, reduce, sentences_file, tmp_path):
    record(MODEL, sentences_file, POINTS, tmp_path / "f32", reduce=reduce, batch_size=3, progress=False)
    record(MODEL, sentences_file, POINTS, tmp_path / "half", reduce=reduce, batch_size=3, progress=False,
           model_dtype=model_dtype)
    ref, half = open_store(tmp_path / "f32"), open_store(tmp_path / "half")
    assert half.runs()[0].settings["model_dtype"] == model_dtype
    for point in ["resid.0", "resid.1", "logits"]:
        a, b = half.activations(point), ref.activations(point)
        assert a.dtype == np.float32 and a.shape == b.shape
        rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
        assert 1e-6 < rel.max() < TOLERANCE[model_dtype], (point, rel.max())  # really cast, and close


def overflow_after(model, calls_before: int):
    """A hook that scales layer 0's output by 1e6 from its ``calls_before``-th call on (inf in float16)."""
    calls = [0]

    def hook(_module, _inputs, output):
        calls[0] += 1
        if calls[0] <= calls_before:
            return None
        if isinstance(output, tuple):
            return (output[0] * 1e6, *output[1:])
        return output * 1e6

    return model.module.model.layers[0].register_forward_hook(hook)


@pytest.mark.parametrize("calls_before", [0, 2], ids=["first-batch", "mid-run"])
def test_float16_overflow_in_the_model_is_refused_with_nothing_stored(calls_before, sentences_file, tmp_path):
    model = tiny_llama()
    handle = overflow_after(model, calls_before)
    try:
        with pytest.raises(NeurometryError) as exc:
            record(model, sentences_file, ["resid.*"], tmp_path / "s", batch_size=2, chunk_rows=2,
                   model_dtype="float16", progress=False)
    finally:
        handle.remove()
    message = str(exc.value)
    assert "\n" not in message and "overflowed in float16" in message and "--model-dtype float32" in message
    assert not (tmp_path / "s").exists()


def test_overflow_mid_run_leaves_other_runs_and_no_rows_of_its_own(sentences_file, tmp_path):
    record(MODEL, sentences_file, ["resid.0"], tmp_path / "s", run="kept", progress=False)
    model = tiny_llama()
    handle = overflow_after(model, 2)
    try:
        with pytest.raises(NeurometryError, match="overflowed in float16"):
            record(model, sentences_file, ["resid.*"], tmp_path / "s", run="half", batch_size=2, chunk_rows=2,
                   model_dtype="float16", progress=False)
    finally:
        handle.remove()
    store = open_store(tmp_path / "s")
    assert [r.run_id for r in store.runs()] == ["kept"]
    assert store.runs()[0].complete


def strip_new_settings(store_path, run_id: str) -> None:
    """Make a run look recorded before ``device`` and ``model_dtype`` were saved."""
    conn = sqlite3.connect(store_path / "catalog.sqlite")
    try:
        (text,) = conn.execute("SELECT settings FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        settings = json.loads(text)
        del settings["device"], settings["model_dtype"]
        conn.execute("UPDATE runs SET settings = ? WHERE run_id = ?", (json.dumps(settings), run_id))
        conn.commit()
    finally:
        conn.close()


def test_old_format_settings_still_resume_with_default_flags(sentences_file, tmp_path):
    out = tmp_path / "s"
    record(MODEL, sentences_file, ["resid.0"], out, run="r", chunk_rows=2, progress=False)
    expected = open_store(out).activations("resid.0").copy()
    strip_new_settings(out, "r")
    # a complete old run: left as it is
    again = record(MODEL, sentences_file, ["resid.0"], out, run="r", chunk_rows=2, progress=False)
    assert again.already_complete
    # an interrupted old run: resumed from its commit mark
    conn = sqlite3.connect(out / "catalog.sqlite")
    conn.execute("UPDATE commits SET input_end = 4, row_end = 4 WHERE run_id = 'r'")
    conn.execute("UPDATE runs SET status = 'recording', finished = NULL WHERE run_id = 'r'")
    conn.execute("DELETE FROM chunks WHERE run_id = 'r' AND chunk >= 2")
    conn.commit()
    conn.close()
    resumed = record(MODEL, sentences_file, ["resid.0"], out, run="r", chunk_rows=2, progress=False)
    assert resumed.resumed_at == 4 and not resumed.already_complete
    store = open_store(out)
    assert store.runs()[0].complete
    # batches padded to another width after the resume point: equal to float32 rounding
    np.testing.assert_allclose(store.activations("resid.0"), expected, rtol=1e-5, atol=1e-7)
    # another model precision is another run: refused without --overwrite
    with pytest.raises(NeurometryError, match="other settings"):
        record(MODEL, sentences_file, ["resid.0"], out, run="r", model_dtype="bfloat16", progress=False)
