"""Intervene on language models: steering vectors (build, apply, evaluate), directional and component
ablation, activation patching and the logit lens, for any Hugging Face causal LM in the zoo's layouts."""

from neurometry.steer.diffing import (
    DiffResult,
    diff_document,
    difference_lens,
    mean_activation_difference,
    save_diff,
    steer_with_difference,
)
from neurometry.steer.evaluate import (
    SweepRow,
    generations,
    neutral_texts,
    save_sweep,
    steering_pairs,
    sweep,
    sweep_rows,
)
from neurometry.steer.interventions import ablate_direction, ablate_head, ablate_mlp, apply, clamp_unit
from neurometry.steer.lens import LensResult, logit_lens
from neurometry.steer.patching import (
    PatchResult,
    factual_pairs,
    patch_residual,
    patch_result,
    save_patching,
)
from neurometry.steer.vectors import activations_at, build_from_store, build_vector, load_vector, save_vector

__all__ = [
    "DiffResult",
    "diff_document",
    "difference_lens",
    "mean_activation_difference",
    "save_diff",
    "steer_with_difference",
    "LensResult",
    "PatchResult",
    "SweepRow",
    "ablate_direction",
    "ablate_head",
    "ablate_mlp",
    "activations_at",
    "apply",
    "build_from_store",
    "build_vector",
    "clamp_unit",
    "factual_pairs",
    "generations",
    "load_vector",
    "logit_lens",
    "neutral_texts",
    "patch_residual",
    "patch_result",
    "save_patching",
    "save_sweep",
    "save_vector",
    "steering_pairs",
    "sweep",
    "sweep_rows",
]
