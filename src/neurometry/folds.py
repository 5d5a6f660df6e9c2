"""Cross-validation folds shared by every stage that fits on some rows and scores on others
(probes, encoding models, linear predictivity): seeded, grouped and optionally stratified."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurometry.errors import NeurometryError


def check_folds(folds: Any, n: int) -> int:
    """``folds`` as an int >= 2 that leaves at least two rows per fold among ``n``."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise NeurometryError(f"folds must be a whole number >= 2, got {folds!r}")
    folds = int(folds)
    if n < 2 * folds:
        raise NeurometryError(
            f"{folds}-fold cross-validation needs at least {2 * folds} rows, got {n}; use fewer folds or more rows"
        )
    return folds


def fold_assignment(
    n: int, folds: int = 5, seed: int = 0, groups: Any = None, stratify: Any = None
) -> np.ndarray:
    """The fold (0 .. folds-1) of each of ``n`` rows.

    Rows sharing a ``groups`` label (n,) stay in one fold: with one row per token, the rows of one
    input never straddle training and test. The groups are shuffled (seeded) and dealt round-robin;
    with ``stratify`` (n,) class labels, the groups of each class (a group's class is that of its
    first row) are dealt in turn, continuing the count, so every fold gets each class in proportion.

    Raises NeurometryError when a fold would be empty or leave fewer than 2 training rows.
    """
    folds = check_folds(folds, n)
    group = (
        np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    )
    if len(group) != n:
        raise NeurometryError(f"groups has {len(group)} labels for {n} rows; give one label per row")
    n_groups = int(group.max()) + 1
    rng = np.random.default_rng(seed)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    if stratify is None:
        fold_of_group[rng.permutation(n_groups)] = np.arange(n_groups) % folds
    else:
        classes = np.asarray(stratify).reshape(-1)
        if len(classes) != n:
            raise NeurometryError(f"stratify has {len(classes)} labels for {n} rows; give one label per row")
        first_row = np.full(n_groups, n)
        np.minimum.at(first_row, group, np.arange(n))
        class_of_group = np.unique(classes[first_row], return_inverse=True)[1].reshape(-1)
        start = 0
        for c in range(int(class_of_group.max()) + 1):
            members = rng.permutation(np.flatnonzero(class_of_group == c))
            fold_of_group[members] = (start + np.arange(len(members))) % folds
            start += len(members)
    fold = fold_of_group[group]
    sizes = np.bincount(fold, minlength=folds)
    if sizes.min() == 0 or n - sizes.max() < 2:
        raise NeurometryError(
            f"{folds}-fold cross-validation needs more distinct groups than {n_groups} "
            "(rows of one group stay in one fold); use fewer folds or more inputs"
        )
    return fold
