"""SAE maps, the input-scale fold, and the SAELens file format in both directions."""

from __future__ import annotations

import json

import pytest
import torch

from neurometry.errors import NeurometryError
from neurometry.features.io import load_sae, read_config, save_sae
from neurometry.features.sae import ARCHITECTURES, SAEConfig, SparseAutoencoder


def random_sae(arch: str, d_in: int = 8, d_sae: int = 16, seed: int = 1) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=3), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.3)
        sae.b_dec.copy_(torch.randn(d_in, generator=g))
        if arch == "batchtopk":
            sae.threshold.fill_(0.2)
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.full((d_sae,), 0.2).log())
    return sae.eval()


def test_topk_keeps_exactly_k_and_matches_definition():
    sae = random_sae("topk")
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    z = sae.encode(x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    assert ((z != 0).sum(1) <= 3).all()
    top = torch.topk(pre, 3, dim=1).indices
    expected = torch.zeros_like(pre).scatter_(1, top, pre.gather(1, top).relu())
    torch.testing.assert_close(z, expected, rtol=0, atol=0)
    torch.testing.assert_close(sae(x), z @ sae.W_dec + sae.b_dec)


def test_batchtopk_keeps_k_per_row_on_average_before_a_threshold_exists():
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=32, architecture="batchtopk", k=4))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)) * 5
    z = sae.encode(x)
    assert int((z > 0).sum()) == 4 * 64  # k x rows over the batch, not per row
    assert (z > 0).sum(1).min() != (z > 0).sum(1).max()


def test_fold_input_scale_gives_same_latents_on_raw_rows():
    sae = random_sae("jumprelu")
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(3))
    s = 7.5
    z_scaled, recon_scaled = sae.encode(s * x), sae(s * x)
    sae.fold_input_scale(s)
    torch.testing.assert_close(sae.encode(x), z_scaled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae(x), recon_scaled / s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_is_exact(tmp_path, arch):
    sae = random_sae(arch)
    save_sae(tmp_path / arch, sae)
    back = load_sae(tmp_path / arch)
    assert back.cfg.architecture == arch
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(back(x), sae(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saelens_loads_ours_with_equal_outputs(tmp_path, arch):
    SAE = pytest.importorskip("sae_lens").SAE  # in the test extra; skipped only where it cannot import

    sae = random_sae(arch)
    save_sae(tmp_path / arch, sae)
    theirs = SAE.load_from_disk(str(tmp_path / arch))
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), sae.encode(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(theirs(x), sae(x), rtol=0, atol=1e-6)
    expected = {"topk": "TopKSAE", "relu": "StandardSAE", "jumprelu": "JumpReLUSAE", "batchtopk": "JumpReLUSAE"}
    assert type(theirs).__name__ == expected[arch]


@pytest.mark.parametrize(
    "kind,arch", [("topk", "topk"), ("standard", "relu"), ("jumprelu", "jumprelu")]
)
def test_we_load_saelens_saved_saes_with_equal_outputs(tmp_path, kind, arch):
    pytest.importorskip("sae_lens")
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    make = {
        "topk": lambda: TopKSAE(TopKSAEConfig(d_in=8, d_sae=16, k=3)),
        "standard": lambda: StandardSAE(StandardSAEConfig(d_in=8, d_sae=16)),
        "jumprelu": lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=8, d_sae=16)),
    }
    theirs = make[kind]()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            param.copy_(torch.randn(param.shape, generator=g) * (0.1 if name == "threshold" else 1.0))
        if kind == "jumprelu":
            theirs.threshold.copy_(theirs.threshold.abs())
    theirs.save_model(str(tmp_path / kind))
    ours = load_sae(tmp_path / kind)
    assert ours.cfg.architecture == arch
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_unsupported_saelens_settings_are_refused(tmp_path):
    sae = random_sae("topk")
    save_sae(tmp_path / "s", sae)
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    del cfg["neurometry"]
    cfg["normalize_activations"] = "layer_norm"
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(NeurometryError, match="normalize_activations"):
        read_config(tmp_path / "s")
    cfg["normalize_activations"] = "none"
    cfg["architecture"] = "gated"
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(NeurometryError, match="gated"):
        read_config(tmp_path / "s")


def test_missing_folder_and_weights_are_clear_errors(tmp_path):
    with pytest.raises(NeurometryError, match="does not exist"):
        load_sae(tmp_path / "nope")
    save_sae(tmp_path / "s", random_sae("relu"))
    (tmp_path / "s" / "sae_weights.safetensors").unlink()
    with pytest.raises(NeurometryError, match="sae_weights"):
        load_sae(tmp_path / "s")
    with pytest.raises(NeurometryError, match="architecture"):
        SAEConfig(d_in=4, d_sae=8, architecture="gated")
    with pytest.raises(NeurometryError, match="k must be"):
        SAEConfig(d_in=4, d_sae=8, k=9)
