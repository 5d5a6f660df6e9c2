"""Tensor models (a plain module with ``.example_input``) recorded from .npy/.npz arrays: integer rows are token
ids, float rows are read as float32; every reduction stores exactly what a plain forward gives; a .npz's 1-D
arrays become metadata columns; bad arrays are refused with one line and leave no store behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from neurometry import NeurometryError, open_store, record
from neurometry.models import LoadedModel
from neurometry.models.load import wrap_module
from neurometry.record.data import load_arrays
from tests.conftest import SENTENCES, write_jsonl

VOCAB, WIDTH, POSITIONS, ROWS = 11, 8, 5, 7


class TokenToy(nn.Module):
    """Embedding -> linear -> tanh -> mean over positions -> head."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.mix = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, 3)
        self.example_input = torch.zeros(1, POSITIONS, dtype=torch.long)

    def forward(self, ids):
        return self.head(torch.tanh(self.mix(self.embed(ids))).mean(1))


class FeatureToy(nn.Module):
    """Feature vectors (rows, 6) -> hidden 5 -> 2."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.hidden = nn.Linear(6, 5)
        self.out = nn.Linear(5, 2)
        self.example_input = torch.zeros(1, 6)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def plain(module: nn.Module, inputs: torch.Tensor, paths: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    """Outputs of ``paths`` (module paths; "" the root) of plain forwards over batches of ``batch_size`` rows in
    order (float32 matrix products round by batch shape, so the batches are the recording's)."""
    got: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    handles = [module.get_submodule(p).register_forward_hook(lambda _m, _i, o, p=p: got[p].append(o))
               for p in paths]
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                module(inputs[start : start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return {p: torch.cat(outputs) for p, outputs in got.items()}


@pytest.fixture
def token_ids(tmp_path):
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(ROWS, POSITIONS)).astype(np.int32)
    np.save(tmp_path / "ids.npy", ids)
    return tmp_path / "ids.npy", ids


@pytest.mark.parametrize("reduce", ["none", "last", "mean", "first"])
def test_token_ids_from_npy_store_a_plain_forward_for_every_reduction(reduce, token_ids, tmp_path):
    path, ids = token_ids
    model = wrap_module(TokenToy(), "toy")
    assert model.modality == "tensor"
    result = record(model, path, ["embed", "mix", "head", "output"], tmp_path / "s", reduce=reduce, batch_size=3,
                    progress=False)
    assert (result.n_inputs, result.n_rows) == (ROWS, ROWS)
    want = plain(model.module, torch.from_numpy(ids).long(), ["embed", "mix", "head", ""], 3)
    for path_, tokens in (("embed", want["embed"]), ("mix", want["mix"])):
        expected = {
            "none": tokens,
            "last": tokens[:, -1],
            "first": tokens[:, 0],
            "mean": (tokens.double().sum(1) / POSITIONS).float(),  # the mean runs in float64
        }[reduce]
        store = open_store(tmp_path / "s")
        try:
            stored = store.activations(path_, result.run_id)
        finally:
            store.close()
        assert stored.dtype == np.float32 and stored.shape == tuple(expected.shape)
        np.testing.assert_array_equal(stored, expected.numpy())
    store = open_store(tmp_path / "s")
    try:
        # a (rows, width) point is one row per input whatever the reduction
        np.testing.assert_array_equal(store.activations("head", result.run_id), want["head"].numpy())
        np.testing.assert_array_equal(store.activations("output", result.run_id), want[""].numpy())
        assert store.run_info(result.run_id).reduce == reduce
        assert store.metadata(result.run_id)["row_id"].tolist() == list(range(ROWS))
    finally:
        store.close()


def test_the_default_reduction_of_a_tensor_model_is_none(token_ids, tmp_path):
    path, ids = token_ids
    model = wrap_module(TokenToy(), "toy")
    record(model, path, ["embed"], tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    try:
        assert store.activations("embed").shape == (ROWS, POSITIONS, WIDTH)
        assert store.runs()[0].reduce == "none"
    finally:
        store.close()


def test_float_rows_from_npz_with_metadata_columns(tmp_path):
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(9, 6))  # float64: read as float32
    np.savez(tmp_path / "x.npz", inputs=inputs, label=np.arange(9) % 3, name=np.array(list("abcdefghi")),
             weight=np.linspace(0, 1, 9))
    model = wrap_module(FeatureToy(), "features")
    result = record(model, tmp_path / "x.npz", ["hidden", "out"], tmp_path / "s", progress=False, batch_size=4)
    want = plain(model.module, torch.from_numpy(inputs.astype(np.float32)), ["hidden", "out"], 4)
    store = open_store(tmp_path / "s")
    try:
        for point in ("hidden", "out"):
            np.testing.assert_array_equal(store.activations(point, result.run_id), want[point].numpy())
        meta = store.metadata(result.run_id)
        assert meta["label"].tolist() == [i % 3 for i in range(9)]
        assert meta["name"].tolist() == list("abcdefghi")
        assert meta["weight"].tolist() == pytest.approx(np.linspace(0, 1, 9).tolist())
        assert "inputs" not in meta.columns
    finally:
        store.close()
    arrays, table = load_arrays(tmp_path / "x.npz")
    assert arrays.dtype == np.float32 and list(table.columns) == ["row_id", "label", "name", "weight"]


def test_integer_arrays_stay_integers(tmp_path):
    np.save(tmp_path / "u8.npy", np.arange(12, dtype=np.uint8).reshape(4, 3))
    arrays, table = load_arrays(tmp_path / "u8.npy")
    assert arrays.dtype == np.uint8 and arrays.tolist() == np.arange(12).reshape(4, 3).tolist()
    assert table["row_id"].tolist() == [0, 1, 2, 3]


def _save_object_npy(path):
    np.save(path, np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)


def _save_renamed_npy(path):
    np.save(path.with_suffix(".npy"), np.zeros((3, 6)))
    path.with_suffix(".npy").rename(path)


def _save_truncated_npz(path):
    np.savez(path, inputs=np.zeros((30, 6)), label=np.arange(30))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_ARRAYS = {
    "nan.npy": (lambda p: np.save(p, np.r_[np.zeros((3, 6)), np.full((1, 6), np.nan)]), "NaN or Inf"),
    "inf.npz": (lambda p: np.savez(p, inputs=np.full((3, 6), np.inf)), "NaN or Inf"),
    "huge.npy": (lambda p: np.save(p, np.full((3, 6), 1e300)), "beyond float32's range"),
    "meta2d.npz": (lambda p: np.savez(p, inputs=np.zeros((3, 6)), label=np.zeros((3, 2))),
                   "array 'label' has shape \\(3, 2\\); metadata arrays hold one value per input \\(3\\)"),
    "metalen.npz": (lambda p: np.savez(p, inputs=np.zeros((3, 6)), label=np.zeros(4)), "array 'label' has shape"),
    "noinputs.npz": (lambda p: np.savez(p, x=np.zeros((3, 6)), label=np.arange(3)),
                     "has no 'inputs' array \\(it holds x, label\\)"),
    "object.npy": (_save_object_npy, "Object arrays cannot be loaded"),
    "objectmeta.npz": (lambda p: np.savez(p, inputs=np.zeros((2, 6)), tag=np.array([{}, 1], dtype=object)),
                       "Object arrays cannot be loaded"),
    "text.npy": (lambda p: np.save(p, np.array([["a"] * 6] * 2)), "not numeric"),
    "empty.npy": (lambda p: np.save(p, np.zeros((0, 6))), "empty or 0-D"),
    "scalar.npy": (lambda p: np.save(p, np.float32(3)), "empty or 0-D"),
    "renamed.npz": (_save_renamed_npy, "single array, not an archive"),
    "truncated.npz": (_save_truncated_npz, "cannot read .* as a .npz archive"),
    # rows the model cannot take fail in its own layers: said with both shapes
    "width.npy": (lambda p: np.save(p, np.zeros((3, 8))), "features cannot run on the rows of width.npy \\(each of "
                  "shape \\(8,\\); it takes rows of shape \\(6,\\)\\): mat1 and mat2 shapes cannot be multiplied"),
    "vector.npy": (lambda p: np.save(p, np.zeros(3)), "rows of vector.npy \\(each of shape \\(\\); it takes rows "
                   "of shape \\(6,\\)\\)"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_bad_arrays_are_refused_with_one_line_and_no_store(name, tmp_path):
    make, message = BAD_ARRAYS[name]
    make(tmp_path / name)
    model = wrap_module(FeatureToy(), "features")
    with pytest.raises(NeurometryError, match=message) as caught:
        record(model, tmp_path / name, ["hidden"], tmp_path / "s", progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "s").exists()


def test_a_table_for_a_tensor_model_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", [{"text": t} for t in SENTENCES])
    with pytest.raises(NeurometryError, match="a tensor model reads .npy or .npz arrays, not rows.jsonl"):
        record(wrap_module(FeatureToy(), "features"), data, ["hidden"], tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_an_array_for_a_text_model_is_refused(tmp_path):
    np.save(tmp_path / "ids.npy", np.zeros((3, 5), dtype=np.int64))
    # the data is read before the tokenizer is used: a text model without one shows it (and loads in no time)
    text_model = LoadedModel(name="text", module=TokenToy(), modality="text", tokenizer=None, preprocess=None,
                             points={})
    with pytest.raises(NeurometryError, match="ids.npy is an array; a text model reads a .jsonl"):
        record(text_model, tmp_path / "ids.npy", ["embed"], tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_text_reductions_do_not_apply_to_a_tensor_model(token_ids, tmp_path):
    path, _ = token_ids
    with pytest.raises(NeurometryError, match="--reduce 'tokens' does not apply to a tensor model"):
        record(wrap_module(TokenToy(), "toy"), path, ["embed"], tmp_path / "s", reduce="tokens", progress=False)
    assert not (tmp_path / "s").exists()


def test_a_store_holds_the_arrays_metadata_as_json(tmp_path):
    np.savez(tmp_path / "x.npz", inputs=np.ones((2, 6), dtype=np.float32), flag=np.array([True, False]))
    record(wrap_module(FeatureToy(), "features"), tmp_path / "x.npz", ["out"], tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    try:
        assert store.metadata()["flag"].tolist() == [True, False]
        assert json.loads(json.dumps(store.metadata()["row_id"].tolist())) == [0, 1]
    finally:
        store.close()


def test_a_series_step_is_committed_with_the_run_and_a_cached_probe_file_is_reread_when_it_changes(tmp_path):
    from neurometry.store.store import SeriesStep

    rng = np.random.default_rng(0)
    data = tmp_path / "x.npy"
    np.save(data, rng.normal(size=(ROWS, 6)).astype(np.float32))
    model = wrap_module(FeatureToy(), "toy")
    record(model, data, ["hidden"], tmp_path / "s", run="s-step0", progress=False,
           series_step=SeriesStep("s", 0, "s-step0", "live", None))
    store = open_store(tmp_path / "s")
    assert [(e.step, e.run_id) for e in store.series("s")] == [(0, "s-step0")]
    assert store.find_run("s-step0").complete
    store.close()
    with pytest.raises(ValueError, match="names run"):
        record(model, data, ["hidden"], tmp_path / "s", run="other", series_step=SeriesStep("s", 1, "s-step1", "", None))
    # the probe file rewritten in place: its new rows are read, not the ones kept from the first read
    changed = rng.normal(size=(ROWS, 6)).astype(np.float32)
    np.save(data, changed)
    inputs, _ = load_arrays(data)
    np.testing.assert_array_equal(inputs, changed)
    assert not inputs.flags.writeable  # kept for the next read, so nobody may write into it


class SequenceToy(nn.Module):
    """(trials, time, 3) -> a GRU's states (trials, time, 4) -> readout (trials, time, 2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.readout = nn.Linear(4, 2)
        self.example_input = torch.zeros(1, 6, 3)

    def forward(self, x):
        return self.readout(self.rnn(x)[0])


def test_steps_store_a_recurrent_models_state_at_every_time_step_with_trial_and_time(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(ROWS, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "trials.npz", inputs=inputs, condition=np.arange(ROWS) % 2)
    module = SequenceToy()
    record(wrap_module(module, "toy"), tmp_path / "trials.npz", ["rnn", "readout"], tmp_path / "s",
           reduce="steps", batch_size=3, progress=False)
    store = open_store(tmp_path / "s")
    with torch.no_grad():
        states = module.rnn(torch.from_numpy(inputs))[0]
    np.testing.assert_allclose(store.activations("rnn"), states.reshape(ROWS * 6, 4).numpy(), atol=1e-6)
    assert store.activations("readout").shape == (ROWS * 6, 2)
    meta = store.metadata()
    np.testing.assert_array_equal(meta["trial"], np.repeat(np.arange(ROWS), 6))
    np.testing.assert_array_equal(meta["time"], np.tile(np.arange(6), ROWS))
    np.testing.assert_array_equal(meta["condition"], np.repeat(np.arange(ROWS) % 2, 6))
    store.close()
    with pytest.raises(NeurometryError, match="steps records a row per time step"):
        np.save(tmp_path / "flat.npy", np.zeros((ROWS,), dtype=np.float32))
        record(wrap_module(FeatureToy(), "f"), tmp_path / "flat.npy", ["hidden"], tmp_path / "t", reduce="steps",
               progress=False)
    assert not (tmp_path / "t").exists()
