"""``device=`` and the prefetching reader in SAE training, evaluation and feature examples: the CPU device
and the reader change no bit, a missing GPU stops before anything is written, checkpoints and cfg.json are
device-neutral, the GPU-resident shuffling buffer is chosen by free memory, and a bfloat16 model gives the
float32 cross-entropy.

Measured on the tiny Llama (``resid.0``, the exact mirror SAE): clean CE 10.321733 nats in float32,
10.321771 in bfloat16 (3.8e-5 apart), 10.321735 in float16; spliced = clean and loss recovered 1 in all three.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.features.buffer import ShufflingBuffer, buffer_fits_on
from neurometry.features.evaluate import ce_loss_recovered, evaluate_sae
from neurometry.features.examples import feature_examples
from neurometry.features.train import TrainConfig, train_sae
from neurometry.models.tiny import tiny_llama
from neurometry.record import record
from neurometry.store import open_store
from tests.conftest import SENTENCES, write_jsonl
from tests.features.conftest import mirror_sae
from tests.features.test_train import make_store, superposition

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
BF16_CE_TOLERANCE = 2e-4  # nats; measured 3.8e-5 between bfloat16 and float32 (module docstring)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    x, _ = superposition(1500, d=16, m=24, active=2, seed=1)
    return make_store(tmp_path_factory.mktemp("devices") / "s.nmstore", x)


def weights(result) -> dict[str, torch.Tensor]:
    return result.sae.inference_state()


def assert_same_weights(a, b, what: str) -> None:
    for name, value in weights(a).items():
        torch.testing.assert_close(weights(b)[name], value, rtol=0, atol=0, msg=f"{what}: {name}")


def test_training_on_the_cpu_device_equals_the_default_bit_for_bit(planted, tmp_path):
    train = TrainConfig(batch_size=64, steps=20, held_out=0.0, buffer_rows=256)
    settings = {"architecture": "topk", "d_sae": 32, "k": 2, "train": train, "progress": False}
    default = train_sae(planted, "x", tmp_path / "default", **settings)
    for device in ("cpu", torch.device("cpu")):
        assert_same_weights(default, train_sae(planted, "x", tmp_path / str(device), device=device, **settings), str(device))
    document = json.loads((tmp_path / "cpu" / "cfg.json").read_text())
    assert document["device"] == "cpu"


def test_training_with_and_without_prefetch_is_bit_identical(planted, tmp_path):
    # a small buffer (many refills) and a second epoch pass through the reader; relu resamples dead latents,
    # drawing rows on the CPU, and the topk path is covered by the resume test below
    train = TrainConfig(batch_size=64, steps=30, held_out=0.0, buffer_rows=192, resample_every=5,
                        dead_after_rows=128, checkpoint_every=15)
    settings = {"architecture": "relu", "d_sae": 32, "train": train, "progress": False}
    read_ahead = train_sae(planted, "x", tmp_path / "on", prefetch=True, **settings)
    in_line = train_sae(planted, "x", tmp_path / "off", prefetch=False, **settings)
    assert read_ahead.steps == in_line.steps == 30 and read_ahead.rows_seen > 1500
    assert "resampled" in in_line.history[0]  # step 10 resampled (on the CPU generator)
    assert_same_weights(read_ahead, in_line, "relu")
    assert read_ahead.history == in_line.history


def test_checkpoints_are_cpu_float32_and_resume_across_settings(planted, tmp_path):
    from safetensors.torch import load_file

    train = TrainConfig(batch_size=64, steps=20, held_out=0.0, checkpoint_every=5)
    settings = {"architecture": "topk", "d_sae": 32, "k": 2, "train": train, "progress": False}
    whole = train_sae(planted, "x", tmp_path / "whole", **settings)
    train_sae(planted, "x", tmp_path / "parts", max_steps=8, prefetch=False, **settings)
    state = load_file(str(tmp_path / "parts" / "checkpoint" / "state.safetensors"))
    assert {t.device.type for t in state.values()} == {"cpu"}
    assert all(t.dtype == torch.float32 for name, t in state.items() if name.startswith("param."))
    rest = train_sae(planted, "x", tmp_path / "parts", device="cpu", **settings)
    assert rest.resumed_from == 8
    assert_same_weights(whole, rest, "resumed")


@NO_CUDA
def test_a_missing_gpu_stops_before_anything_is_written(planted, tmp_path):
    for device in ("cuda", "cuda:1"):
        with pytest.raises(NeurometryError, match="CUDA is not available"):
            train_sae(planted, "x", tmp_path / "sae", d_sae=16, k=2, progress=False, device=device)
    assert not (tmp_path / "sae").exists()


@NO_CUDA
def test_auto_picks_the_cpu_says_so_and_records_it(planted, tmp_path, capsys):
    train = TrainConfig(batch_size=128, steps=3, held_out=0.0)
    train_sae(planted, "x", tmp_path / "auto", d_sae=16, k=2, train=train, progress=False, device="auto")
    assert capsys.readouterr().err.count("device: cpu (no CUDA)") == 1
    assert json.loads((tmp_path / "auto" / "cfg.json").read_text())["device"] == "cpu"


def test_evaluation_and_examples_with_and_without_prefetch_agree(tmp_path):
    data = write_jsonl(tmp_path / "sentences.jsonl", [{"text": t} for t in SENTENCES])
    record(tiny_llama(seed=0), data, ["resid.0"], tmp_path / "s", reduce="tokens", progress=False)
    store = open_store(tmp_path / "s")
    sae = mirror_sae(32, threshold=0.05)
    for settings in ({"chunk_rows": 7}, {"chunk_rows": 16, "min_position": 1}):  # 7: many blocks, the last partial
        on = evaluate_sae(sae, store, "resid.0", progress=False, prefetch=True, **settings)
        off = evaluate_sae(sae, store, "resid.0", progress=False, prefetch=False, **settings)
        assert on == off and on.n_rows > 50
        a = feature_examples(sae, store, "resid.0", top=3, progress=False, prefetch=True, **settings)
        b = feature_examples(sae, store, "resid.0", top=3, progress=False, prefetch=False, **settings)
        assert np.array_equal(a.frequency, b.frequency) and np.array_equal(a.max_activation, b.max_activation)
        assert [a.latent(j) for j in range(a.d_sae)] == [b.latent(j) for j in range(b.d_sae)]


def test_a_bfloat16_model_gives_the_float32_cross_entropy():
    exact = mirror_sae(32)
    reference = ce_loss_recovered(exact, tiny_llama(seed=0), "resid.0", SENTENCES)
    for dtype in ("bfloat16", "float16"):
        half = ce_loss_recovered(exact, tiny_llama(seed=0).place(None, dtype), "resid.0", SENTENCES)
        assert half.n_tokens == reference.n_tokens
        assert half.clean_loss == pytest.approx(reference.clean_loss, abs=BF16_CE_TOLERANCE)
        # the SAE (float32) splices the half-precision tensor back exactly: all of the loss is recovered
        assert half.spliced_loss == half.clean_loss and half.loss_recovered == pytest.approx(1.0, abs=1e-9)


def test_the_shuffling_buffer_goes_on_the_gpu_only_when_it_fits(planted, monkeypatch):
    cpu = torch.device("cpu")
    assert not buffer_fits_on(cpu, 10, 10)
    assert ShufflingBuffer(planted, "x", None, 1500, 128, device="cpu").holder == cpu
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (12 * gib, 80 * gib))
    cuda = torch.device("cuda", 0)
    # 3 copies of 65,536 x 4,096 float32 (1 GiB each) in a quarter of 12 GiB free: yes; of 8,192 wide: no
    assert buffer_fits_on(cuda, 65536, 4096)
    assert not buffer_fits_on(cuda, 65536, 8192)
