"""Shared by the SAE tests: an SAE whose latents and reconstruction have a closed form."""

from __future__ import annotations

import numpy as np
import torch

from neurometry.features.sae import SAEConfig, SparseAutoencoder


def mirror_sae(
    d: int, threshold: float = 0.0, decoder: bool = True, b_dec: np.ndarray | None = None, point: str = "resid.0"
) -> SparseAutoencoder:
    """ReLU SAE with d_sae = 2d: latents [relu(x - b - t), relu(-(x - b) - t)], decoder [I; -I] (or zeros).

    With t = 0 and b = 0 it reconstructs exactly (relu(x) - relu(-x) = x) and latent j is relu(x_j).
    """
    sae = SparseAutoencoder(SAEConfig(d_in=d, d_sae=2 * d, architecture="relu", point=point, model="tiny"))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0) if decoder else torch.zeros(2 * d, d))
        sae.b_enc.fill_(-threshold)
        sae.b_dec.copy_(torch.zeros(d) if b_dec is None else torch.as_tensor(b_dec, dtype=torch.float32))
    return sae
