"""Control tasks and selectivity (Hewitt & Liang 2019): planted known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.probe.control import control_task_labels, selectivity


def test_control_labels_are_one_seeded_draw_per_type_from_the_label_distribution() -> None:
    rng = np.random.default_rng(0)
    types = rng.integers(0, 4000, 20000)
    labels = np.where(rng.random(20000) < 0.7, "noun", "verb")
    control = control_task_labels(types, labels, seed=3)
    assert control.dtype == labels.dtype and len(control) == len(types)
    for t in np.unique(types)[:200]:
        assert len(np.unique(control[types == t])) == 1  # every row of a type carries its label
    per_type = np.array([control[types == t][0] for t in np.unique(types)])
    # ~3,990 independent draws with P(noun) = empirical share: SE ~ 0.007
    assert np.mean(per_type == "noun") == pytest.approx(np.mean(labels == "noun"), abs=0.03)
    np.testing.assert_array_equal(control, control_task_labels(types, labels, seed=3))
    assert not np.array_equal(control, control_task_labels(types, labels, seed=4))


def test_identity_only_representation_has_selectivity_zero() -> None:
    # one random vector per token type, label a deterministic function of the type, types repeated
    # across folds: the probe memorises type -> label equally well for the real and the control task
    rng = np.random.default_rng(1)
    n_types, per_type, d = 40, 20, 64
    types = rng.permutation(np.repeat(np.arange(n_types), per_type))
    y = types % 2
    x = rng.normal(size=(n_types, d))[types] + 0.1 * rng.normal(size=(len(types), d))
    result = selectivity(x, y, types, seed=1)
    assert result.task.score > 0.98 and result.control.score > 0.98
    assert abs(result.selectivity) < 0.02


def test_label_only_representation_has_the_selectivity_its_control_allows() -> None:
    # x encodes the real label in unit 0 and nothing about the type: the control labels (random per
    # type) can be read only through their overlap with the real label, so the best control accuracy
    # is the cross-tabulation's best guess from the real label, and selectivity is 1 minus that
    rng = np.random.default_rng(2)
    n_types, per_type, d = 200, 10, 16
    types = np.repeat(np.arange(n_types), per_type)
    y = rng.integers(0, 2, n_types)[types]
    x = rng.normal(size=(len(types), d))
    x[:, 0] = y + 0.05 * rng.normal(size=len(types))
    seed = 2
    control = control_task_labels(types, y, seed)
    best = sum(max(np.sum((y == a) & (control == c)) for c in (0, 1)) for a in (0, 1)) / len(y)
    result = selectivity(x, y, types, seed=seed)
    assert result.task.score == 1.0
    assert result.control.score <= best + 0.02
    assert result.control.score >= best - 0.05
    assert result.selectivity == pytest.approx(1.0 - best, abs=0.05)
    assert result.selectivity > 0.35
    assert result.task.params == result.control.params  # same folds, same probe
    assert json.loads(json.dumps(result.to_dict()))["selectivity"] == result.selectivity


def test_selectivity_errors() -> None:
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.tile([0, 1], 10)
    with pytest.raises(NeurometryError, match="token_types has 19"):
        selectivity(x, y, np.arange(19))
    with pytest.raises(NeurometryError, match="same label for every token type"):
        selectivity(x, y, np.zeros(20, dtype=int))  # one type: a single control label
    with pytest.raises(NeurometryError, match="labels has 3"):
        control_task_labels(np.arange(4), np.arange(3))
