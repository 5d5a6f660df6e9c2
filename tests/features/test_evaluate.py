"""SAE evaluation: reconstruction metrics on stored rows and cross-entropy loss recovered, on known answers.

The exact SAE is a ReLU SAE with W_enc = [I, -I], W_dec = [I; -I] and zero biases: relu(x) - relu(-x) = x.
With b_enc = -t it soft-thresholds each coordinate, x_hat = sign(x) max(|x| - t, 0), whose metrics have a
closed form computed here with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.features.evaluate import ce_loss_recovered, evaluate_sae
from neurometry.models.tiny import tiny_bert, tiny_llama
from neurometry.record import record
from neurometry.steer.evaluate import _text_logprobs
from neurometry.store import open_store
from tests.conftest import SENTENCES, write_jsonl
from tests.features.conftest import mirror_sae

torch.set_num_threads(2)

POINT = "resid.0"
D = 32  # tiny_llama's hidden size


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(seed=0)


@pytest.fixture(scope="module")
def store(llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sae_eval")
    data = write_jsonl(folder / "sentences.jsonl", [{"text": t} for t in SENTENCES])
    record(llama, data, [POINT], folder / "s", reduce="tokens", progress=False)
    return open_store(folder / "s")


@pytest.fixture(scope="module")
def rows(store):
    return store.activations(POINT).astype(np.float64)


def _fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def _latent_stats(codes: np.ndarray) -> tuple[float, float, float]:
    active = codes != 0
    freq = active.mean(0)
    return float(active.sum(1).mean()), float((freq == 0).mean()), float((freq > 0.1).mean())


def test_exact_sae_reconstructs_and_counts_latents(store, rows):
    metrics = evaluate_sae(mirror_sae(D), store, POINT, chunk_rows=7)  # 7: many blocks, the last one partial
    codes = np.concatenate([np.maximum(rows, 0), np.maximum(-rows, 0)], axis=1)
    l0, dead, dense = _latent_stats(codes)
    assert metrics.n_rows == len(rows) > 50
    assert metrics.fvu < 1e-10 and metrics.mse < 1e-10
    assert metrics.l0 == pytest.approx(l0, abs=1e-12)
    assert metrics.dead_fraction == pytest.approx(dead, abs=1e-12)
    assert metrics.dense_fraction == pytest.approx(dense, abs=1e-12)


def test_soft_threshold_sae_matches_closed_form(store, rows):
    t = float(np.median(np.abs(rows)))
    metrics = evaluate_sae(mirror_sae(D, threshold=t), store, POINT, chunk_rows=16)
    soft = np.sign(rows) * np.maximum(np.abs(rows) - t, 0)
    l0, dead, dense = _latent_stats(np.concatenate([np.maximum(rows - t, 0), np.maximum(-rows - t, 0)], axis=1))
    assert metrics.l0 == pytest.approx(l0, abs=1e-12)  # about half the 32 coordinates: |x| > median
    assert 10 < metrics.l0 < 22
    assert metrics.dead_fraction == pytest.approx(dead, abs=1e-12)
    assert metrics.dense_fraction == pytest.approx(dense, abs=1e-12)
    assert metrics.fvu == pytest.approx(_fvu(rows, soft), rel=1e-5)
    assert 0.05 < metrics.fvu < 0.95


def test_row_range_is_evaluated_alone(store, rows):
    t = float(np.median(np.abs(rows)))
    metrics = evaluate_sae(mirror_sae(D, threshold=t), store, POINT, start=10, stop=60, chunk_rows=9)
    part = rows[10:60]
    assert metrics.n_rows == 50
    assert metrics.fvu == pytest.approx(_fvu(part, np.sign(part) * np.maximum(np.abs(part) - t, 0)), rel=1e-5)


def test_zero_decoder_at_the_mean_leaves_all_variance(store, rows):
    sae = mirror_sae(D, decoder=False, b_dec=rows.mean(0))
    metrics = evaluate_sae(sae, store, POINT, chunk_rows=13)
    assert abs(metrics.fvu - 1.0) < 1e-9


def test_evaluate_errors(store):
    with pytest.raises(NeurometryError, match=r"32 features.*d_in=16"):
        evaluate_sae(mirror_sae(16), store, POINT)
    n = store.point_info(POINT).n_rows
    with pytest.raises(NeurometryError, match="not inside"):
        evaluate_sae(mirror_sae(D), store, POINT, start=5, stop=n + 1)
    with pytest.raises(NeurometryError, match="no point"):
        evaluate_sae(mirror_sae(D), store, "resid.7")


# -- cross-entropy ------------------------------------------------------------------------------


def _reference_losses(model) -> tuple[float, int]:
    """Mean next-token NLL of the clean model, every text run alone (no padding), and the target count."""
    nll, count = 0.0, 0
    for logp, ids in _text_logprobs(model, SENTENCES):
        nll -= float(logp[torch.arange(len(ids)), ids].sum())
        count += len(ids)
    return nll / count, count


def test_exact_sae_recovers_all_of_the_loss(llama):
    result = ce_loss_recovered(mirror_sae(D), llama, POINT, SENTENCES, batch_size=3)
    clean, count = _reference_losses(llama)
    assert result.n_tokens == count
    assert result.clean_loss == pytest.approx(clean, abs=1e-5)  # padded batches = texts run alone
    assert result.spliced_loss == pytest.approx(result.clean_loss, abs=1e-9)
    assert result.zero_ablation_loss - result.clean_loss > 1e-3  # a random model: near-uniform, yet it matters
    assert result.loss_recovered == pytest.approx(1.0, abs=1e-6)


def test_zero_decoder_recovers_nothing(llama):
    result = ce_loss_recovered(mirror_sae(D, decoder=False), llama, POINT, SENTENCES)
    assert result.spliced_loss == pytest.approx(result.zero_ablation_loss, abs=1e-9)
    assert result.loss_recovered == pytest.approx(0.0, abs=1e-6)


def test_batch_size_does_not_change_the_losses(llama, rows):
    t = float(np.median(np.abs(rows)))
    one = ce_loss_recovered(mirror_sae(D, threshold=t), llama, POINT, SENTENCES, batch_size=2)
    all_ = ce_loss_recovered(mirror_sae(D, threshold=t), llama, POINT, SENTENCES, batch_size=8)
    assert one.n_tokens == all_.n_tokens
    for key in ("clean_loss", "spliced_loss", "zero_ablation_loss", "loss_recovered"):
        assert getattr(one, key) == pytest.approx(getattr(all_, key), abs=1e-5)
    # the lossy splice changes the loss (on this random model it lowers it: loss recovered may pass 1)
    assert abs(one.spliced_loss - one.clean_loss) > 1e-3


def test_ce_errors(llama):
    with pytest.raises(NeurometryError, match="lm_head"):
        ce_loss_recovered(mirror_sae(D), tiny_bert(), POINT, SENTENCES)
    with pytest.raises(NeurometryError, match="attention"):
        ce_loss_recovered(mirror_sae(D), llama, "attn_pattern.0", SENTENCES)
    with pytest.raises(NeurometryError, match=r"width 32.*d_in=16"):
        ce_loss_recovered(mirror_sae(16), llama, POINT, SENTENCES)
    with pytest.raises(NeurometryError, match="non-empty list"):
        ce_loss_recovered(mirror_sae(D), llama, POINT, [])
