"""`import neurometry` exposes every stage lazily, as the README's Python example uses them."""

from __future__ import annotations

import numpy as np
import pytest

import neurometry


def test_stages_resolve_lazily_and_run():
    x = np.random.default_rng(0).normal(size=(50, 4))
    assert neurometry.compare.cka(x, x) == pytest.approx(1.0)
    assert neurometry.measures.effective_rank(x).value > 1
    assert callable(neurometry.probe.probe) and callable(neurometry.steer.apply)
    assert callable(neurometry.features.train_sae) and callable(neurometry.features.load_sae)
    assert callable(neurometry.record) and callable(neurometry.open_store)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        neurometry.nonsense  # noqa: B018
