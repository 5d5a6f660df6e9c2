"""Detect: out-of-distribution scores from a classifier's features and logits (:mod:`.ood`) and their
evaluation with bootstrap intervals (:mod:`.evaluation`); truth directions per layer and their controls (:mod:`.truth`),
their causal test (:mod:`.truth_steering`), output baselines (:mod:`.output_baselines`) and a hallucination set
from a model's own answers (:mod:`.hallucination`)."""

from neurometry.detect.collapse_tracking import OODOverCheckpoints, ood_over_checkpoints
from neurometry.detect.evaluation import OODEvaluation, aupr, auroc, evaluate, fpr_at_95_tpr, roc_curve
from neurometry.detect.ood import (
    OOD_SCORES,
    EnergyScore,
    KNNScore,
    MahalanobisScore,
    MaxSoftmaxScore,
    NECOScore,
    OODScore,
    ViMScore,
    get_ood_score,
    kth_neighbour_distances,
    ledoit_wolf_shrinkage,
    vim_principal_dim,
)
from neurometry.detect.truth import (
    TRUTH_METHODS,
    CategoryPrior,
    TruthProbe,
    TruthScore,
    held_out_detector,
    held_out_truth,
    transfer_matrix,
)

__all__ = [
    "CategoryPrior",
    "OOD_SCORES",
    "TRUTH_METHODS",
    "TruthProbe",
    "TruthScore",
    "held_out_detector",
    "held_out_truth",
    "transfer_matrix",
    "EnergyScore",
    "KNNScore",
    "MahalanobisScore",
    "MaxSoftmaxScore",
    "NECOScore",
    "OODEvaluation",
    "OODOverCheckpoints",
    "OODScore",
    "ViMScore",
    "aupr",
    "auroc",
    "evaluate",
    "fpr_at_95_tpr",
    "get_ood_score",
    "kth_neighbour_distances",
    "ood_over_checkpoints",
    "ledoit_wolf_shrinkage",
    "roc_curve",
    "vim_principal_dim",
]
