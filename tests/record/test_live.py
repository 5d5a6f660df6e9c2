"""Recording during training: a plain loop with ``Recorder`` (every N steps and the final one, values of the
weights at that step, modes restored, training bit-identical to a loop without it, a step recorded again
replaced) and a Hugging Face ``Trainer`` with ``trainer_callback()``."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neurometry import NeurometryError, open_store, record
from neurometry.models import LoadedModel
from neurometry.record.live import Recorder
from tests.conftest import SENTENCES, write_jsonl

ROWS, FEATURES = 10, 6


class Net(nn.Module):
    """Features -> hidden (with dropout, which draws random numbers in train mode) -> 3 classes; ``norm`` is a
    frozen layer kept in eval mode while the rest trains."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Dropout(0.3))
        self.norm = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.norm(self.body(x)))


def probe():
    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    metadata = pd.DataFrame({"label": ["even", "odd"] * (ROWS // 2), "index": np.arange(ROWS)})
    return inputs, metadata


def train(steps: int, recorder_options: dict | None = None, store=None, snapshots: dict | None = None):
    """Seeded training of ``Net`` for ``steps`` optimiser steps, with a Recorder when ``store`` is given; returns
    the model, the losses and the modes seen after each recorder call."""
    torch.manual_seed(0)
    model = Net()
    model.norm.eval()  # frozen: stays in eval mode while the rest trains
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.randn(32, FEATURES)
    target = torch.randint(0, 3, (32,))
    losses, modes = [], []
    recorder = Recorder(model, ["body", "head"], probe(), store, **recorder_options) if store is not None else None

    def one_step(step: int) -> None:
        if step:
            model.train()
            model.norm.eval()
            optimiser.zero_grad()
            batch = torch.randint(0, 32, (8,))
            loss = nn.functional.cross_entropy(model(data[batch]), target[batch])
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        if snapshots is not None:
            snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if recorder is not None:
            recorder.step(step)
            modes.append((model.training, model.body.training, model.norm.training))

    if recorder is None:
        for step in range(steps + 1):
            one_step(step)
    else:
        with recorder:
            for step in range(steps + 1):
                one_step(step)
    return model, losses, modes, recorder


def expected(weights: dict, inputs: np.ndarray) -> dict[str, np.ndarray]:
    module = Net()
    module.load_state_dict(weights)
    module.eval()
    got = {}
    hooks = [module.get_submodule(p).register_forward_hook(lambda _m, _i, o, p=p: got.__setitem__(p, o))
             for p in ("body", "head")]
    with torch.no_grad():
        module(torch.from_numpy(inputs))
    for hook in hooks:
        hook.remove()
    return {k: v.numpy() for k, v in got.items()}


@pytest.mark.parametrize("background", [False, "thread", "process"])
def test_a_plain_loop_records_every_n_steps_and_the_last(tmp_path, background):
    snapshots: dict = {}
    model, losses, modes, recorder = train(10, {"every": 4, "series": "net", "background": background},
                                           tmp_path / "s", snapshots)
    assert recorder.runs == ["net-step0", "net-step4", "net-step8", "net-step10"]
    assert all(mode == (True, True, False) for mode in modes[1:])  # train mode back, the frozen layer still eval
    inputs, metadata = probe()
    store = open_store(tmp_path / "s")
    try:
        steps = store.series("net")
        assert [(s.step, s.run_id, s.source) for s in steps] == [
            (0, "net-step0", "live"), (4, "net-step4", "live"), (8, "net-step8", "live"), (10, "net-step10", "live")]
        for s in steps:
            want = expected(snapshots[s.step], inputs)
            for point in ("body", "head"):
                np.testing.assert_array_equal(store.activations(point, s.run_id), want[point])
            meta = store.metadata(s.run_id)
            assert meta["label"].tolist() == metadata["label"].tolist()
            assert meta["index"].tolist() == list(range(ROWS))
        assert not np.array_equal(store.activations("head", "net-step0"), store.activations("head", "net-step10"))
    finally:
        store.close()


@pytest.mark.parametrize("background", [False, "thread", "process"])
def test_training_goes_on_exactly_as_without_a_recorder(tmp_path, background):
    alone, alone_losses, _, _ = train(8)
    watched, watched_losses, _, _ = train(8, {"every": 2, "background": background}, tmp_path / "s")
    assert watched_losses == alone_losses
    for (name, a), (_, b) in zip(alone.state_dict().items(), watched.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("background", ["thread", "process"])
def test_a_background_recording_that_fails_raises_in_the_training_thread(tmp_path, background):
    model = Net()
    recorder = Recorder(model, ["head"], probe(), tmp_path / "s", every=1, series="net", background=background)
    recorder.step(0)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))  # the copy of step 1 records NaN, which is refused
    recorder.step(1)
    with pytest.raises(NeurometryError, match="NaN"):
        recorder.finish()
    store = open_store(tmp_path / "s")
    assert [s.step for s in store.series("net")] == [0]  # step 0 stored whole, nothing of step 1
    store.close()
    recorder.close()


def test_a_recorder_process_that_dies_is_reported_and_the_steps_before_it_kept(tmp_path):
    model = Net()
    recorder = Recorder(model, ["head"], probe(), tmp_path / "s", every=1, series="net", background="process")
    recorder.step(0)
    deadline = time.monotonic() + 60
    while not recorder._worker._stored and time.monotonic() < deadline:  # step 0 stored, then the child is
        recorder._worker._drain(block=False)                              # killed (as the OOM killer would)
        time.sleep(0.01)
    os.kill(recorder._worker._process.pid, signal.SIGKILL)
    with pytest.raises(NeurometryError, match="recorder process ended with exit code -9 after step 0"):
        recorder.finish(1)
    store = open_store(tmp_path / "s")
    assert [s.step for s in store.series("net")] == [0]
    store.close()


def test_true_picks_a_process_for_a_plain_cpu_module_and_a_wrong_value_is_refused(tmp_path):
    assert Recorder(Net(), ["head"], probe(), tmp_path / "s", background=True).background == "process"
    with pytest.raises(NeurometryError, match="background='fork' is not one of"):
        Recorder(Net(), ["head"], probe(), tmp_path / "s", background="fork")


def test_a_step_recorded_again_in_another_session_is_replaced(tmp_path):
    _, _, _, first = train(4, {"every": 2, "series": "net"}, tmp_path / "s")
    store = open_store(tmp_path / "s")
    try:
        before = store.activations("head", "net-step2")
        first_source = store.dataset_source(store.run_info("net-step0").dataset_id)
    finally:
        store.close()
    # a second training run with other weights and other probe inputs records steps 0 and 2 again
    torch.manual_seed(1)
    model = Net()
    inputs = np.random.default_rng(9).normal(size=(4, FEATURES)).astype(np.float32)
    with Recorder(model, ["body", "head"], inputs, tmp_path / "s", every=2, series="net") as recorder:
        recorder.step(0)
        snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
        recorder.step(2)
    store = open_store(tmp_path / "s")
    try:
        assert [(s.step, s.run_id) for s in store.series("net")] == [(0, "net-step0"), (2, "net-step2"),
                                                                     (4, "net-step4")]
        assert sorted(r.run_id for r in store.runs()) == ["net-step0", "net-step2", "net-step4"]
        after = store.activations("head", "net-step2")
        assert after.shape == (4, 3) and before.shape == (ROWS, 3)
        np.testing.assert_array_equal(after, expected(snapshot, inputs)["head"])
        # the first session's step 4 still points at its own probe inputs
        assert store.dataset_source(store.run_info("net-step4").dataset_id) == first_source
        assert all(open(store.dataset_source(r.dataset_id), "rb").read(2) == b"PK" for r in store.runs())
    finally:
        store.close()


def test_aliases_token_ids_and_a_probe_file(tmp_path):
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(9, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, ids):
            return self.out(self.embed(ids))

    torch.manual_seed(0)
    model = Tokens()
    ids = np.random.default_rng(0).integers(0, 9, size=(5, 3)).astype(np.int32)
    np.save(tmp_path / "ids.npy", ids)
    recorder = Recorder(model, {"emb": "embed", "logits": "out"}, tmp_path / "ids.npy", tmp_path / "s", every=1,
                        series="tok", reduce="last")
    recorder.step(0)
    store = open_store(tmp_path / "s")
    try:
        assert [p.point for p in store.points("tok-step0")] == ["emb", "logits"]
        with torch.no_grad():
            want = model.embed(torch.from_numpy(ids).long())[:, -1]
        np.testing.assert_array_equal(store.activations("emb", "tok-step0"), want.numpy())
    finally:
        store.close()


def test_an_exception_in_training_records_no_final_step(tmp_path):
    torch.manual_seed(0)
    model = Net()
    with pytest.raises(RuntimeError, match="diverged"), \
            Recorder(model, ["head"], probe()[0], tmp_path / "s", every=5, series="net") as recorder:
        for step in range(8):
            recorder.step(step)
        raise RuntimeError("diverged")
    assert recorder.runs == ["net-step0", "net-step5"]


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (lambda: (Net(), ["head"], probe()), {"every": 0}, "every=0 must be a whole number"),
        (lambda: (Net(), ["head"], probe()), {"device": "cpu"}, "no option 'device'"),
        (lambda: (Net(), ["head"], probe()), {"series": "a b"}, "series name 'a b'"),
        (lambda: (Net(), ["hed"], probe()), {}, "unknown point 'hed'.*did you mean head"),
        (lambda: (Net(), ["head"], np.full((3, FEATURES), np.nan, dtype=np.float32)), {},
         "probe data: the inputs hold NaN or Inf"),
        (lambda: (Net(), ["head"], (probe()[0], pd.DataFrame({"m": [1, "a"] * 5}))), {},
         "metadata column 'm' is not numeric or text"),
        (lambda: (Net(), ["head"], (probe()[0], pd.DataFrame({"m": np.arange(3)}))), {},
         "array 'm' has shape \\(3,\\); metadata arrays hold one value per input \\(10\\)"),
        (lambda: ("net", ["head"], probe()), {}, "model is a str"),
    ],
)
def test_bad_settings_are_refused_before_training(args, options, message, tmp_path):
    model, points, data = args()
    with pytest.raises(NeurometryError, match=message):
        Recorder(model, points, data, tmp_path / "s", **options)
    if (tmp_path / "s").exists():
        store = open_store(tmp_path / "s")
        try:
            assert store.runs() == []
        finally:
            store.close()


def test_a_table_goes_with_a_loaded_model_not_a_plain_module(tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", [{"text": t} for t in SENTENCES])
    with pytest.raises(NeurometryError, match="rows.jsonl is a table for a text or image model"):
        Recorder(Net(), ["head"], data, tmp_path / "s")


def test_probe_data_of_the_wrong_kind_for_a_loaded_model_is_refused(tmp_path):
    from neurometry.models.load import wrap_module

    text = LoadedModel(name="text", module=Net(), modality="text", tokenizer=None, preprocess=None, points={})
    with pytest.raises(NeurometryError, match="is an array; a text model reads a .jsonl"):
        Recorder(text, ["head"], probe()[0], tmp_path / "s")
    module = Net()
    module.example_input = torch.zeros(1, FEATURES)
    tensor = wrap_module(module, "net")
    data = write_jsonl(tmp_path / "rows.jsonl", [{"text": t} for t in SENTENCES])
    with pytest.raises(NeurometryError, match="a tensor model reads .npy or .npz arrays, not rows.jsonl"):
        Recorder(tensor, ["head"], data, tmp_path / "s2")


# -- a Hugging Face Trainer --------------------------------------------------------------------------------

@pytest.mark.slow  # about 8 s alone; 25 s on a loaded 2-core machine (the Trainer's import is most of it)
def test_a_trainer_callback_records_every_n_optimiser_steps(tmp_path):
    from transformers import Trainer, TrainingArguments

    from neurometry.models.tiny import tiny_llama

    loaded = tiny_llama()
    attention = loaded.module.config._attn_implementation
    tokenizer = loaded.tokenizer
    probe_file = write_jsonl(tmp_path / "probe.jsonl", [{"text": t} for t in SENTENCES[:4]])
    encoded = [tokenizer(t, truncation=True, max_length=16)["input_ids"] for t in SENTENCES]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(encoded)

        def __getitem__(self, i):
            return {"input_ids": encoded[i]}

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    recorder = Recorder(loaded, ["resid.0", "resid.1", "attn_pattern.0"], probe_file, tmp_path / "s", every=2,
                        series="llama")
    arguments = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=6, per_device_train_batch_size=2,
                                  report_to=[], save_strategy="no", use_cpu=True, learning_rate=1e-2,
                                  disable_tqdm=True, logging_strategy="no")
    Trainer(model=loaded.module, args=arguments, train_dataset=Rows(), data_collator=collate,
            callbacks=[recorder.trainer_callback()]).train()
    assert loaded.module.config._attn_implementation == attention  # attention points did not change training
    store = open_store(tmp_path / "s")
    try:
        assert [(s.step, s.run_id) for s in store.series("llama")] == [
            (0, "llama-step0"), (2, "llama-step2"), (4, "llama-step4"), (6, "llama-step6")]
        assert not np.array_equal(store.activations("resid.1", "llama-step0"),
                                  store.activations("resid.1", "llama-step6"))
        assert store.run_info("llama-step6").n_rows == 4
        loaded.module.eval()  # the weights after the last step, recorded on their own
        points = ["resid.0", "resid.1", "attn_pattern.0"]
        final = open_store(record(loaded, probe_file, points, tmp_path / "final", progress=False).store)
        try:
            for point in points:
                np.testing.assert_array_equal(store.activations(point, "llama-step6"), final.activations(point))
        finally:
            final.close()
    finally:
        store.close()
