"""Shared folds: groups never straddle folds, strata are dealt in proportion, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.folds import fold_assignment


def test_groups_stay_whole_and_classes_are_balanced():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), rng.integers(1, 6, size=60))  # inputs with 1-5 token rows each
    label_of_group = np.array([0] * 40 + [1] * 20)  # a 2:1 class ratio
    labels = label_of_group[groups]
    fold = fold_assignment(len(groups), 5, seed=3, groups=groups, stratify=labels)
    for g in range(60):
        assert len(set(fold[groups == g])) == 1
    # each fold gets 8 groups of class 0 and 4 of class 1 (40 and 20 dealt round-robin over 5 folds)
    for f in range(5):
        assert len(set(groups[(fold == f) & (labels == 0)])) == 8
        assert len(set(groups[(fold == f) & (labels == 1)])) == 4
    assert np.array_equal(fold, fold_assignment(len(groups), 5, seed=3, groups=groups, stratify=labels))
    assert not np.array_equal(fold, fold_assignment(len(groups), 5, seed=4, groups=groups, stratify=labels))


def test_too_few_groups_is_an_error():
    with pytest.raises(NeurometryError, match="distinct groups"):
        fold_assignment(20, 5, groups=np.repeat([0, 1, 2], [7, 7, 6]))
    with pytest.raises(NeurometryError, match="at least 10 rows"):
        fold_assignment(9, 5)
