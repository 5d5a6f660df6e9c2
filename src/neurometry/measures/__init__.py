"""Measures: pure functions of activation arrays (geometry, intrinsic dimension, neural collapse,
neurons, attention), each registered by its public name in :data:`MEASURES` and computable over a
stream of chunks with :func:`run_measures`."""

from neurometry.measures.attention import attention_entropy, sink_mass
from neurometry.measures.geometry import anisotropy, layer_cosine, mean_norm, rank_collapse
from neurometry.measures.intrinsic_dimension import knn, mle_id, twonn
from neurometry.measures.neural_collapse import cdnv, nc1, nc2_equiangular, nc2_equinorm, nc3, nc4
from neurometry.measures.neurons import dead_fraction, kurtosis, massive_activations, outlier_dims, sparsity
from neurometry.measures.registry import MEASURES, Measure, MeasureResult, get_measure
from neurometry.measures.spectrum import (
    alpha_req,
    coding_rate,
    effective_rank,
    n_components,
    participation_ratio,
    stable_rank,
)
from neurometry.measures.streaming import run_measures

__all__ = [
    "MEASURES",
    "Measure",
    "MeasureResult",
    "alpha_req",
    "anisotropy",
    "attention_entropy",
    "cdnv",
    "coding_rate",
    "dead_fraction",
    "effective_rank",
    "get_measure",
    "knn",
    "kurtosis",
    "layer_cosine",
    "massive_activations",
    "mean_norm",
    "mle_id",
    "n_components",
    "nc1",
    "nc2_equiangular",
    "nc2_equinorm",
    "nc3",
    "nc4",
    "outlier_dims",
    "participation_ratio",
    "rank_collapse",
    "run_measures",
    "sink_mass",
    "sparsity",
    "stable_rank",
    "twonn",
]
