"""Decompose activations into features: sparse autoencoders trained from a store (SAELens' file
format), their evaluation, and baselines on the same rows."""

from neurometry.features.io import load_sae, save_sae
from neurometry.features.metrics import ReconstructionMetrics, reconstruction_metrics
from neurometry.features.sae import ARCHITECTURES, SAEConfig, SparseAutoencoder
from neurometry.features.train import TrainConfig, TrainResult, train_sae

__all__ = [
    "ARCHITECTURES",
    "ReconstructionMetrics",
    "SAEConfig",
    "SparseAutoencoder",
    "TrainConfig",
    "TrainResult",
    "load_sae",
    "reconstruction_metrics",
    "save_sae",
    "train_sae",
]
