"""The documented model-to-brain example (docs/compare.md): EfficientNet-Lite0 on the 92 Kriegeskorte
images against monkey and human IT, through the CLI, reproduces the table's values."""

from __future__ import annotations

import json

import pytest

from neurometry.cli import main
from tests.conftest import KRIEGESKORTE_MAT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not KRIEGESKORTE_MAT.exists(), reason="../shared/data is not beside this checkout"),
]


def run(capsys, *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_efficientnet_blocks_against_it_reproduce_the_documented_table(tmp_path, capsys):
    run(capsys, "dataset", "kriegeskorte92", "--out", str(tmp_path / "k92"))
    store = tmp_path / "k92.nmstore"
    run(
        capsys,
        "record",
        "efficientnet-lite0",
        str(tmp_path / "k92" / "stimuli.jsonl"),
        "--points",
        "block.0",
        "block.12",
        "--reduce",
        "mean",
        "--out",
        str(store),
    )
    out = run(
        capsys,
        "compare",
        str(store),
        str(KRIEGESKORTE_MAT),
        "--rdm-key",
        "RDMs_mIT_hIT_fig1",
        "--metric",
        "rsa",
        "--permutations",
        "99",
        "--json",
    )
    value = {(r["point_a"], r["point_b"][:3]): r for r in json.loads(out)["results"]}
    # docs/compare.md: block.0 0.161 / 0.130, block.12 0.463 / 0.413 (monkey / human IT)
    assert value["block.0", "mIT"]["value"] == pytest.approx(0.1609, abs=2e-3)
    assert value["block.0", "hIT"]["value"] == pytest.approx(0.1300, abs=2e-3)
    assert value["block.12", "mIT"]["value"] == pytest.approx(0.4630, abs=2e-3)
    assert value["block.12", "hIT"]["value"] == pytest.approx(0.4132, abs=2e-3)
    for r in value.values():
        assert r["p_value"] == pytest.approx(1 / 100)  # no shuffle of 92 stimuli reaches these correlations
