"""The dynamics tests' models are small: they run on one BLAS and torch thread, as `neurometry lab` runs them
(a second thread on a shared 2-core machine made a training step 30x slower)."""

from __future__ import annotations

import pytest

from neurometry.threads import blas_threads


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    with blas_threads(torch_threads=True):
        yield
