"""`neurometry surprisal` and `neurometry fit` end to end: the JSON contracts, a reading time planted as
300 ms + 12 ms per bit of the run's own surprisal (+ noise, sd 0.5 ms) recovered by the fit, the fit saved in the store,
and bad input refused in one line with exit 2 and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neurometry.store import open_store
from neurometry.store.results import READING_FIT

MODEL = "neurometry.models.tiny:tiny_llama"
PLANTED_SLOPE = 12.0  # ms per bit
# ms per bit. The random tiny model's word surprisal spreads only ~0.15 bits (sd) around 14.9, so the planted
# noise is small (sd 0.5 ms): the slope's standard error is then ~0.2 ms per bit
SLOPE_TOLERANCE = 1.0


def words_file(tmp_path):
    rng = np.random.default_rng(0)
    vocabulary = "the a cat dog sat ran on under mat tree quickly slowly red big small house".split()
    rows = [{"item": item, "zone": zone, "word": str(rng.choice(vocabulary))}
            for item in (1, 2, 3, 4) for zone in range(1, 76)]
    pd.DataFrame(rows).to_csv(tmp_path / "words.tsv", sep="\t", index=False)
    return tmp_path / "words.tsv"


@pytest.fixture()
def scored(tmp_path, run_cli):
    words = words_file(tmp_path)
    result = run_cli("surprisal", MODEL, words, "--out", tmp_path / "store", "--points", "resid.1", "--lens", "--json")
    assert result.returncode == 0, result.stderr
    return tmp_path, json.loads(result.stdout)


def test_surprisal_prints_one_record_per_word_and_stores_them(scored):
    tmp_path, document = scored
    results = document["results"]
    assert len(results) == 300 and set(results[0]) >= {"item", "zone", "word", "surprisal", "entropy",
                                                       "surprisal_resid.0", "surprisal_resid.1"}
    assert results[0]["surprisal"] is None  # no BOS token: the first word of each text has none
    assert sum(r["surprisal"] is None for r in results) == 4 and document["settings"]["correction"] == "none"
    store = open_store(tmp_path / "store")
    meta = store.metadata(document["run"])
    np.testing.assert_allclose(meta["surprisal"].to_numpy(dtype=float),
                               [np.nan if r["surprisal"] is None else r["surprisal"] for r in results])
    assert store.activations("resid.1", run=document["run"]).shape == (300, 32)


def test_fit_recovers_a_planted_slope_and_saves_it(scored, run_cli):
    tmp_path, document = scored
    rng = np.random.default_rng(1)
    surprisal = np.array([np.nan if r["surprisal"] is None else r["surprisal"] for r in document["results"]])
    behaviour = pd.DataFrame({
        "item": [r["item"] for r in document["results"]], "zone": [r["zone"] for r in document["results"]],
        "word": [r["word"] for r in document["results"]],
        "rt": 300 + PLANTED_SLOPE * np.nan_to_num(surprisal) + rng.normal(0, 0.5, len(surprisal)),
    })
    behaviour.to_csv(tmp_path / "rt.tsv", sep="\t", index=False)
    result = run_cli("fit", tmp_path / "store", tmp_path / "rt.tsv", "--target", "rt", "--spillover", 1,
                     "--permutations", 200, "--json")
    assert result.returncode == 0, result.stderr
    fits = {r["source"]: r for r in json.loads(result.stdout)["results"]}
    assert set(fits) == {"final", "resid.0", "resid.1"}
    final = fits["final"]
    assert abs(final["slope_ms_per_bit"] - PLANTED_SLOPE) < SLOPE_TOLERANCE
    assert final["slope_ci"][1] - final["slope_ci"][0] < 2 * SLOPE_TOLERANCE
    assert final["delta_loglik_per_word"] > 0.5 and final["p_value"] < 0.01
    assert abs(final["spillover_slope_ms_per_bit"]) < 3 * SLOPE_TOLERANCE  # none planted
    # the first word has no surprisal, the second no spillover: both missing; first and last excluded
    assert final["excluded"]["first_last"] == 8 and final["words"] == 300 - 8 - 4
    saved = READING_FIT.load(open_store(tmp_path / "store"))
    assert sorted(saved["point"]) == ["final", "resid.0", "resid.1"]
    table = run_cli("fit", tmp_path / "store", tmp_path / "rt.tsv", "--target", "rt", "--permutations", 0)
    assert table.returncode == 0 and "slope ms/bit" in table.stdout and "log_frequency: natural log" in table.stdout
    report = run_cli("report", tmp_path / "store", "-o", tmp_path / "report.html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    section = page[page.index('id="s-reading_fit"'):]
    assert "data:image/png;base64," in section and "words the fit explains worst" in section
    assert section.count("<tr>") >= 3 + 20  # a row per source and per residual word (and the headers)


def test_fit_encodes_a_reading_time_planted_in_the_word_states(scored, run_cli):
    """RT = 400 + 30 x (the word state at resid.1, projected on a fixed direction) + noise: the baseline cannot
    explain it, so its residuals are what the states encode, and the held-out encoding r is high."""
    tmp_path, document = scored
    states = open_store(tmp_path / "store").activations("resid.1", run=document["run"])
    direction = np.random.default_rng(2).normal(size=states.shape[1])
    signal = (states - states.mean(axis=0)) @ direction
    rt = 400 + 30 * signal / signal.std() + np.random.default_rng(3).normal(0, 5, len(signal))
    pd.DataFrame({"item": [r["item"] for r in document["results"]], "zone": [r["zone"] for r in document["results"]],
                  "rt": rt}).to_csv(tmp_path / "planted.tsv", sep="\t", index=False)
    result = run_cli("fit", tmp_path / "store", tmp_path / "planted.tsv", "--target", "rt", "--permutations", 0,
                     "--json")
    assert result.returncode == 0, result.stderr
    encoding = {e["point"]: e for e in json.loads(result.stdout)["encoding"]}
    assert set(encoding) == {"resid.1"} and encoding["resid.1"]["folds"] == 4
    assert encoding["resid.1"]["r"] > 0.9  # 30 ms of signal against 5 ms of noise
    worst = json.loads(result.stdout)["largest_residuals"]
    assert len(worst) == 20 and abs(worst[0]["residual"]) >= abs(worst[-1]["residual"])


def test_bad_input_is_one_line_and_exit_2(scored, run_cli):
    tmp_path, document = scored
    cases = [
        (("surprisal", MODEL, tmp_path / "missing.tsv", "--out", tmp_path / "new"), "does not exist"),
        (("surprisal", "neurometry.models.tiny:tiny_bert", tmp_path / "words.tsv", "--out", tmp_path / "new"),
         "not a causal language model"),
        (("surprisal", MODEL, tmp_path / "words.tsv", "--out", tmp_path / "store"), "--overwrite"),
        (("fit", tmp_path / "store", tmp_path / "missing.tsv"), "does not exist"),
    ]
    wrong = pd.read_csv(tmp_path / "words.tsv", sep="\t").assign(rt=300.0)
    wrong.loc[5, "word"] = "zebra"
    wrong.to_csv(tmp_path / "wrong.tsv", sep="\t", index=False)
    cases.append((("fit", tmp_path / "store", tmp_path / "wrong.tsv", "--target", "rt"), "not the same corpus"))
    wrong.loc[5, "word"] = "the"
    wrong.to_csv(tmp_path / "right.tsv", sep="\t", index=False)
    cases.append((("fit", tmp_path / "store", tmp_path / "right.tsv", "--target", "nope"), "nope"))
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "new").exists()
