"""SAE training: planted features recovered, shuffling buffer, held-out tail, exact resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from neurometry.errors import NeurometryError
from neurometry.features.buffer import ShufflingBuffer, held_out_start
from neurometry.features.io import load_sae
from neurometry.features.train import TrainConfig, geometric_median, train_sae
from neurometry.store import import_array, open_store


def superposition(n: int, d: int, m: int, active: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows that are sums of `active` of m unit directions in d < m dimensions (Elhage et al. 2022)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(m, d))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    codes = np.zeros((n, m), np.float32)
    which = np.argsort(rng.random((n, m)), axis=1)[:, :active]
    np.put_along_axis(codes, which, rng.uniform(0.5, 1.5, size=(n, active)).astype(np.float32), axis=1)
    return (codes @ features).astype(np.float32), features


def make_store(path, x: np.ndarray, inputs: np.ndarray | None = None):
    store = open_store(path, create=True)
    meta = None if inputs is None else pd.DataFrame({"row_id": np.arange(len(x)), "text_id": inputs})
    import_array(store, "toy", "x", (x[lo : lo + 4096] for lo in range(0, len(x), 4096)), len(x), meta)
    return store


def matched_cosines(decoder: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Cosine of each planted feature with its decoder row under the best one-to-one matching."""
    w = decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    cos = features @ w.T
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def test_topk_recovers_planted_directions_in_superposition(tmp_path):
    torch.set_num_threads(2)
    x, features = superposition(20000, d=32, m=48, active=3)
    store = make_store(tmp_path / "s.nmstore", x)
    train = TrainConfig(batch_size=256, lr=4e-3, train_rows=120_000, held_out=0.0, dead_after_rows=20_000)
    result = train_sae(store, "x", tmp_path / "sae", architecture="topk", d_sae=96, k=3, train=train, progress=False)
    cos = matched_cosines(result.sae.W_dec.detach().numpy(), features)
    assert cos.min() >= 0.9, np.sort(cos)[:5]
    # what was saved is what was returned, and it acts on raw rows (the input scale is folded in)
    saved = load_sae(tmp_path / "sae")
    xt = torch.from_numpy(x[:500])
    with torch.no_grad():
        torch.testing.assert_close(saved(xt), result.sae(xt))
        fvu = float(((saved(xt) - xt) ** 2).sum() / ((xt - xt.mean(0)) ** 2).sum())
    assert fvu < 0.1


def test_resume_equals_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(2)
    x, _ = superposition(3000, d=16, m=24, active=2, seed=1)
    store = make_store(tmp_path / "s.nmstore", x)
    for arch in ("topk", "batchtopk", "relu", "jumprelu"):
        train = TrainConfig(batch_size=128, train_rows=128 * 30, held_out=0.0, checkpoint_every=7, resample_every=5,
                            dead_after_rows=256)
        whole = train_sae(store, "x", tmp_path / f"whole-{arch}", architecture=arch, d_sae=32, k=2,
                          train=train, progress=False)
        first = train_sae(store, "x", tmp_path / f"parts-{arch}", architecture=arch, d_sae=32, k=2,
                          train=train, progress=False, max_steps=12)
        assert first.steps == 12
        assert load_sae(tmp_path / f"parts-{arch}").cfg.extra["steps"] == 12  # usable when interrupted
        rest = train_sae(store, "x", tmp_path / f"parts-{arch}", architecture=arch, d_sae=32, k=2,
                         train=train, progress=False)
        assert rest.resumed_from == 12 and rest.steps == whole.steps == 30
        for name, value in whole.sae.inference_state().items():
            torch.testing.assert_close(rest.sae.inference_state()[name], value, rtol=0, atol=0, msg=f"{arch} {name}")


def test_resume_refuses_a_different_setup(tmp_path):
    x, _ = superposition(2000, d=8, m=12, active=2)
    store = make_store(tmp_path / "s.nmstore", x)
    train = TrainConfig(batch_size=128, held_out=0.0)
    train_sae(store, "x", tmp_path / "sae", d_sae=16, k=2, train=train, progress=False, max_steps=3)
    with pytest.raises(NeurometryError, match="different training setup"):
        train_sae(store, "x", tmp_path / "sae", d_sae=16, k=3, train=train, progress=False)
    again = train_sae(store, "x", tmp_path / "sae", d_sae=16, k=3, train=train, progress=False, fresh=True)
    assert again.resumed_from == 0


def test_buffer_covers_every_training_row_once_per_epoch_and_mixes_inputs(tmp_path):
    n = 10_000
    x = np.arange(n, dtype=np.float32)[:, None].repeat(2, 1)  # each row holds its own index
    inputs = np.arange(n) // 50  # 200 inputs of 50 consecutive rows (tokens of one text)
    store = make_store(tmp_path / "s.nmstore", x, inputs)
    buffer = ShufflingBuffer(store, "x", None, stop=8000, batch_size=100, capacity=2000, seed=3)
    batches = list(buffer.epoch(0))
    seen = torch.cat(batches)[:, 0].long()
    assert len(batches) == 80 and len(seen.unique()) == 8000 and int(seen.max()) < 8000
    first_inputs = np.unique(inputs[batches[0][:, 0].long().numpy()])
    assert len(first_inputs) >= 20  # 100 rows from a 2,000-row buffer of 40 inputs
    again = torch.cat(list(ShufflingBuffer(store, "x", None, 8000, 100, 2000, seed=3).epoch(0)))
    assert torch.equal(again, torch.cat(batches))
    other = torch.cat(list(buffer.epoch(1)))
    assert not torch.equal(other, torch.cat(batches))


def test_held_out_tail_starts_at_an_input_boundary(tmp_path):
    n = 1000
    inputs = np.repeat(np.arange(40), 25)
    store = make_store(tmp_path / "s.nmstore", np.zeros((n, 3), np.float32), inputs)
    # import_array stores one row per input, so the boundary is the row itself; 10% of 1000 inputs
    assert held_out_start(store, "x", None, 0.1) == 900
    assert held_out_start(store, "x", None, 0.0) == 1000
    with pytest.raises(NeurometryError, match="held-out fraction"):
        held_out_start(store, "x", None, 1.0)


def test_geometric_median_minimises_the_sum_of_distances():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 3, generator=g), torch.full((20, 3), 50.0)])  # far outliers
    median = geometric_median(x)

    def cost(y: torch.Tensor) -> float:
        return float((x.double() - y.double()).norm(dim=1).sum())

    best = cost(median)
    for _ in range(50):
        assert cost(median + 0.01 * torch.randn(3, generator=g)) >= best - 1e-9
    assert float(median.norm()) < float(x.mean(0).norm())  # the mean is dragged by the outliers


def test_held_out_tail_of_a_token_run_keeps_whole_texts(tmp_path):
    from neurometry.models.tiny import tiny_llama
    from neurometry.record import record

    data = tmp_path / "d.jsonl"
    texts = [f"sentence number {i} has a few words in it" + " more" * (i % 4) for i in range(20)]
    data.write_text("".join(f'{{"text": "{t}"}}\n' for t in texts))
    record(tiny_llama(), data, ["resid.1"], out=tmp_path / "t.nmstore", reduce="tokens", progress=False)
    store = open_store(tmp_path / "t.nmstore")
    meta = store.metadata()
    start = held_out_start(store, "resid.1", None, 0.25)
    assert meta["input_row"].iloc[start] == 15 and meta["input_row"].iloc[start - 1] == 14
    assert meta["position"].iloc[start] == 0


def test_min_position_leaves_first_tokens_out_of_training_and_evaluation(tmp_path):
    from neurometry.features.buffer import row_mask
    from neurometry.features.evaluate import evaluate_sae
    from neurometry.models.tiny import tiny_llama
    from neurometry.record import record

    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"text": "text {i} says hello to the world again"}}\n' for i in range(40)))
    record(tiny_llama(), data, ["resid.1"], out=tmp_path / "t.nmstore", reduce="tokens", progress=False)
    store = open_store(tmp_path / "t.nmstore")
    positions = store.metadata()["position"].to_numpy()
    keep = row_mask(store, "resid.1", None, 1)
    assert np.array_equal(keep, positions >= 1)
    # rows hold their index in a copy of the store, so a batch tells which rows it came from
    n = len(positions)
    marked = make_store(tmp_path / "m.nmstore", np.arange(n, dtype=np.float32)[:, None].repeat(2, 1))
    buffer = ShufflingBuffer(marked, "x", None, stop=n, batch_size=16, capacity=64, keep=keep)
    seen = torch.cat(list(buffer.epoch(0)))[:, 0].long().numpy()
    assert len(seen) == keep.sum() // 16 * 16 and keep[seen].all()
    result = train_sae(
        store, "resid.1", tmp_path / "sae", d_sae=16, k=2,
        train=TrainConfig(batch_size=32, held_out=0.25, min_position=1), progress=False,
    )
    assert result.sae.cfg.extra["min_position"] == 1
    metrics = evaluate_sae(result.sae, store, "resid.1", start=result.held_out_start, progress=False)
    assert metrics.n_rows == int(keep[result.held_out_start :].sum()) < n - result.held_out_start
    everything = evaluate_sae(result.sae, store, "resid.1", start=result.held_out_start, min_position=0, progress=False)
    assert everything.n_rows == n - result.held_out_start
