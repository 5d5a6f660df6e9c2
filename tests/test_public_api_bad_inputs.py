"""Bad input to the most used public functions is a NeurometryError of one line naming the fix, never a numpy,
torch or scikit-learn error or a NaN result (found by a sweep of the API: each row failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry import measures
from neurometry.compare import cknna, mutual_knn
from neurometry.detect import KNNScore, TruthProbe
from neurometry.errors import NeurometryError
from neurometry.probe import LinearProbe, probe

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 8))
LABELS = np.arange(40) % 2

CASES = {
    "effective_rank of no rows": (lambda: measures.effective_rank(np.zeros((0, 8))), "no rows to measure"),
    "twonn of no rows": (lambda: measures.twonn(np.zeros((0, 8))), "no rows to measure"),
    "probe C = 0": (lambda: probe(X, LABELS, C=0), "C of a logistic probe must be a finite number above 0, got 0"),
    "probe ridge alpha < 0": (lambda: probe(X, X[:, 0], kind="ridge", alpha=-1),
                              "alpha of a ridge probe must be a finite number >= 0, got -1"),
    "LinearProbe predict before fit": (lambda: LinearProbe().predict(X), "not fitted yet; call fit"),
    "TruthProbe of another width": (lambda: TruthProbe().fit(X, LABELS).score(X[:, :3]),
                                    "x has 3 features but the probe was fitted on 8"),
    "TruthProbe score before fit": (lambda: TruthProbe().score(X), "not fitted yet; call fit"),
    "KNNScore on an unknown device": (lambda: KNNScore(k=5, device="tpu").fit(X).score(X), "unknown --device 'tpu'"),
    "mutual_knn of a constant representation": (lambda: mutual_knn(np.ones((40, 4)), X),
                                                "the same row for every stimulus"),
    "cknna of a constant representation": (lambda: cknna(X, np.ones((40, 4))), "the same row for every stimulus"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(case):
    call, message = CASES[case]
    with pytest.raises(NeurometryError, match=message.replace("+", "\\+")) as caught:
        call()
    assert "\n" not in str(caught.value)
