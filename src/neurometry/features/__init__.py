"""Decompose activations into features: sparse autoencoders trained from a store (SAELens' file
format), their evaluation, and baselines on the same rows."""

from neurometry.features.decompositions import DECOMPOSITIONS, fit_decomposition
from neurometry.features.evaluate import CELossResult, ce_loss_recovered, evaluate_sae
from neurometry.features.examples import (
    FeatureExamples,
    export_feature_direction,
    feature_examples,
    feature_logit_tokens,
    load_feature_examples,
    save_feature_examples,
)
from neurometry.features.io import load_sae, save_sae
from neurometry.features.metrics import ReconstructionMetrics, reconstruction_metrics
from neurometry.features.sae import ARCHITECTURES, SAEConfig, SparseAutoencoder
from neurometry.features.train import TrainConfig, TrainResult, train_sae

__all__ = [
    "ARCHITECTURES",
    "CELossResult",
    "DECOMPOSITIONS",
    "FeatureExamples",
    "ce_loss_recovered",
    "evaluate_sae",
    "export_feature_direction",
    "feature_examples",
    "feature_logit_tokens",
    "fit_decomposition",
    "load_feature_examples",
    "save_feature_examples",
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
