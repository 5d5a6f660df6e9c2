"""Compare representations of the same stimuli: CKA, RSA, shape metrics, CCA, neighbours, predictivity.

Each metric is a plain function of two arrays (``cka(x, y)``, ``rsa(x, y)``, ...) and is registered by
its public name in :data:`METRICS`; :func:`compare` and :func:`compare_matrix` run any of them between
one or many representations, with permutation tests and bootstrap intervals over stimuli.
"""

from neurometry.compare.canonical import canonical_correlations, cca, pwcca, svcca
from neurometry.compare.kernel_alignment import LinearCKAAccumulator, cka
from neurometry.compare.matrix import CompareResult, compare, compare_matrix
from neurometry.compare.neighbours import cknna, cycle_knn, mutual_knn
from neurometry.compare.predictivity import linear_predictivity, predictivity_both
from neurometry.compare.rdm import RDM, compute_rdm, load_rdms
from neurometry.compare.rdm_comparison import compare_rdms, noise_ceiling, rsa
from neurometry.compare.registry import METRICS, Metric, get_metric
from neurometry.compare.shape import permutation_distance, procrustes
from neurometry.compare.stats import bootstrap_interval, permutation_test
from neurometry.ridge import DEFAULT_ALPHAS  # linear_predictivity's penalties, shared with encoding

__all__ = [
    "DEFAULT_ALPHAS",
    "METRICS",
    "RDM",
    "CompareResult",
    "LinearCKAAccumulator",
    "Metric",
    "bootstrap_interval",
    "canonical_correlations",
    "cca",
    "cka",
    "cknna",
    "compare",
    "compare_matrix",
    "compare_rdms",
    "compute_rdm",
    "cycle_knn",
    "get_metric",
    "linear_predictivity",
    "load_rdms",
    "mutual_knn",
    "noise_ceiling",
    "permutation_distance",
    "permutation_test",
    "predictivity_both",
    "procrustes",
    "pwcca",
    "rsa",
    "svcca",
]
