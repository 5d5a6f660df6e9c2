"""Data-parallel SAE training on Ray (``sae train --ray``): 2 Ray Train workers on a local Ray, started once for
the module and always shut down, train the single process's SAE on the same rows for the same steps; its
held-out FVU is within 2% of the single process's, and it is saved in the same layout."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.features.evaluate import evaluate_sae
from neurometry.features.io import load_sae
from neurometry.features.sae import SAEConfig
from neurometry.features.train import TrainConfig, train_sae
from neurometry.store import open_store
from neurometry.workflows.sae import train_on_store
from tests.features.test_train import make_store, superposition

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

FVU_TOLERANCE = 0.02  # relative; measured here: equal to 5 digits (0.03937 both)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """12,000 rows, each a sum of 3 of 48 unit directions in 32 dimensions; 1,200 inputs of 10 rows."""
    x, _ = superposition(12_000, d=32, m=48, active=3)
    path = tmp_path_factory.mktemp("planted") / "s.nmstore"
    make_store(path, x, np.repeat(np.arange(1200), 10))
    return path


def test_two_workers_match_the_single_process(local_ray, planted, tmp_path):
    torch.set_num_threads(1)
    train = TrainConfig(batch_size=256, lr=4e-3, steps=300, held_out=0.1, dead_after_rows=20_000)
    cfg = SAEConfig(d_in=32, d_sae=96, architecture="topk", k=3, point="x", model="toy")
    single = train_sae(planted, "x", tmp_path / "single", cfg, train, progress=False)
    result, record = train_on_store(planted, "x", tmp_path / "dp", train, architecture="topk", latents=96, k=3,
                                    progress=False, engine="ray", workers=2)
    assert ray.is_initialized()  # it joined the fixture's Ray and left it running
    assert result.steps == single.steps == 300 and result.rows_seen == single.rows_seen
    assert result.held_out_start == single.held_out_start and record["workers"] == 2
    store, store_fvu = open_store(planted), {}
    for name, trained in (("single", single), ("dp", result)):
        store_fvu[name] = evaluate_sae(trained.sae, store, "x", start=trained.held_out_start, progress=False).fvu
    assert store_fvu["single"] < 0.1
    assert abs(store_fvu["dp"] - store_fvu["single"]) <= FVU_TOLERANCE * store_fvu["single"], store_fvu

    saved = load_sae(tmp_path / "dp")
    with torch.no_grad():
        torch.testing.assert_close(saved.W_dec, result.sae.W_dec)
    documents = {name: json.loads((tmp_path / name / "cfg.json").read_text()) for name in ("single", "dp")}
    assert documents["dp"].keys() == documents["single"].keys()
    extra = documents["dp"]["neurometry"]["extra"]
    assert extra["workers"] == 2 and extra["engine"] == "ray" and extra["steps"] == 300
    assert sorted(p.name for p in (tmp_path / "dp").iterdir()) == ["cfg.json", "sae_weights.safetensors"]


def test_without_ray_the_extra_is_named(planted, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    out = tmp_path / "sae"
    code = main(["sae", "train", str(planted), "--point", "x", "--latents", "16", "--k", "2", "--steps", "2",
                 "--out", str(out), "--ray"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'neurometry[ray]'" in err[0], err
    assert not out.exists()
