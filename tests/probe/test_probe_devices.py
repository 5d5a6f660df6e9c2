"""``device=`` on the probe stage: LDA's linear algebra on a device (a CPU device here, which takes the
torch path) gives the CPU path's direction, the methods without a torch path ignore it, and
``probe --device cuda`` on a machine without CUDA stops in one line with nothing saved or written.

Measured on the data below: the LDA directions and the Ledoit-Wolf shrinkage agree exactly (0 difference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.probe.directions import direction, ledoit_wolf_shrinkage
from tests.cli.test_bad_inputs import saved_results, snapshot

CPU = torch.device("cpu")
TOL = 1e-12


@pytest.fixture(scope="module")
def planted() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two classes apart along unit 0 with correlated noise: more rows than features, and fewer."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (n, d) in {"tall": (200, 30), "wide": (60, 150)}.items():
        labels = rng.integers(0, 2, size=n)
        x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
        x[:, 0] += 2.0 * labels
        out[name] = (x, labels)
    return out


# no shrinkage needs more rows than features; the others run on both shapes (wide: the n x n Woodbury solve)
@pytest.mark.parametrize(
    ("shape", "shrinkage"),
    [("tall", "auto"), ("tall", 0.0), ("tall", 0.4), ("tall", 1.0),
     ("wide", "auto"), ("wide", 0.4), ("wide", 1.0)],
)
def test_lda_direction_on_the_device_equals_the_cpu_path(planted, shape, shrinkage):
    x, labels = planted[shape]
    expected = direction(x, labels, "lda", shrinkage=shrinkage)
    got = direction(x, labels, "lda", shrinkage=shrinkage, device=CPU)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    assert expected @ (x[labels == 1].mean(0) - x[labels == 0].mean(0)) > 0


def test_ledoit_wolf_shrinkage_on_the_device(planted):
    for x, _ in planted.values():
        centred = x - x.mean(axis=0)
        assert ledoit_wolf_shrinkage(centred, CPU) == pytest.approx(ledoit_wolf_shrinkage(centred), abs=TOL)


@pytest.mark.parametrize("method", ["mean_difference", "probe"])
def test_methods_without_a_torch_path_ignore_the_device(planted, method):
    x, labels = planted["tall"]
    np.testing.assert_array_equal(direction(x, labels, method, device=CPU), direction(x, labels, method))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_probe_on_missing_cuda_stops_in_one_line_and_saves_nothing(small_store, capsys):
    store = small_store / "store"
    before, saved = snapshot(small_store), saved_results(store)
    capsys.readouterr()
    argv = ["probe", str(store), "--label", "label", "--save-directions", str(small_store / "directions"),
            "--direction-method", "lda", "--device", "cuda"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "CUDA is not available" in err
    assert snapshot(small_store) == before and saved_results(store) == saved
    assert not (small_store / "directions").exists()
