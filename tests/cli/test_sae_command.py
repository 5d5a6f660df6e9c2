"""`neurometry sae train|eval|features|export` on a tiny seeded Llama's token store: the JSON contract,
held-out rows, the catalog, a steering file, a resumed run, and user errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.features.io import load_sae
from neurometry.steer import load_vector
from neurometry.store import open_store
from neurometry.store.results import SAE_EVAL, SAE_FEATURES
from tests.cli.test_bad_inputs import saved_results, snapshot

TINY = "neurometry.models.tiny:tiny_llama"
CE_HALF_TOLERANCE = 2e-3
"""nats between a bfloat16 and a float32 model's CE losses here; measured: clean 5e-5, spliced 1.1e-3, zero 0."""


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def token_store(tmp_path_factory):
    from neurometry.record import record

    folder = tmp_path_factory.mktemp("sae")
    words = ["red", "blue", "green", "small", "large", "quiet", "bright", "old"]
    texts = [f"the {a} cat saw a {b} dog near the {c} house" for a in words for b in words[:5] for c in words[:2]]
    data = folder / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    record(TINY, data, ["resid.1"], out=folder / "s.nmstore", reduce="tokens", progress=False)
    return folder / "s.nmstore"


def test_train_eval_features_export(token_store, tmp_path, capsys):
    out = tmp_path / "sae"
    code, text, err = run(
        capsys, "sae", "train", str(token_store), "--point", "resid.1", "--latents", "64", "--k", "4",
        "--batch-size", "128", "--train-rows", "12800", "--lr", "3e-3", "--held-out", "0.1", "--out", str(out),
        "--json",
    )
    assert code == 0, err
    trained = json.loads(text)["results"][0]
    assert trained["steps"] == 100 and trained["train_l0"] == pytest.approx(4.0)
    store = open_store(token_store)
    meta = store.metadata()
    start = trained["held_out_start"]
    assert meta["input_row"].iloc[start] == 72 and meta["position"].iloc[start] == 0  # 10% of 80 texts

    code, text, err = run(capsys, "sae", "eval", str(out), str(token_store), "--model", TINY, "--json")
    assert code == 0, err
    document = json.loads(text)
    assert list(document) == ["results"] and len(document["results"]) == 1
    result = document["results"][0]
    for key in ("point", "l0", "fvu", "dead_fraction", "ce_loss_recovered"):
        assert key in result
    assert result["rows_from"] == start and result["n_rows"] == len(meta) - start
    assert result["l0"] <= 4.0 and 0 <= result["fvu"] < 0.5
    assert result["ce_spliced_loss"] != result["ce_clean_loss"]
    assert len(SAE_EVAL.load(store)) == 1

    code, text, err = run(capsys, "sae", "features", str(out), str(token_store), "--top", "5", "--json")
    assert code == 0, err
    shown = json.loads(text)["results"]
    frequencies = [r["frequency"] for r in shown]
    assert frequencies == sorted(frequencies, reverse=True)
    assert len(SAE_FEATURES.load(store)) == 64

    code, text, err = run(capsys, "sae", "export", str(out), "--latent", "3", "--out", str(tmp_path / "f3.safetensors"))
    assert code == 0, err
    vector, info = load_vector(tmp_path / "f3.safetensors")
    np.testing.assert_array_equal(vector, load_sae(out).W_dec[3].detach().numpy())
    assert info["point"] == "resid.1" and info["position"] == "all"


def test_train_states_its_schedule_and_obeys_explicit_steps(token_store, tmp_path, capsys):
    common = ("sae", "train", str(token_store), "--point", "resid.1", "--latents", "32", "--k", "2")
    # the default on a small point: 3,000 steps at an automatic batch, and the reason, printed and saved
    code, text, err = run(capsys, *common, "--max-steps", "4", "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "schedule: 3,000 steps (the minimum; one pass over" in text and "capped at rows/32" in text
    saved = load_sae(tmp_path / "a").cfg.extra
    assert saved["steps"] == 4 and saved["schedule"]["steps"] == 3000 and saved["schedule"]["batch_size"] == 32
    assert saved["train"]["batch_size"] is None
    code, text, err = run(capsys, *common, "--steps", "7", "--batch-size", "64", "--out", str(tmp_path / "b"), "--json")
    assert code == 0, err
    trained = json.loads(text)["results"][0]
    assert trained["steps"] == 7 and trained["batch_size"] == 64 and trained["schedule"].startswith("7 steps (as asked")
    code, text, err = run(capsys, *common, "--epochs", "1", "--out", str(tmp_path / "c"), "--json")
    assert code == 0, err
    trained = json.loads(text)["results"][0]
    assert trained["steps"] == trained["rows_seen"] // 32 < 3000 and "1 pass as asked" in trained["schedule"]


def test_user_errors_exit_2(token_store, tmp_path, capsys):
    cases = [
        ("sae", "train", str(tmp_path / "missing"), "--point", "resid.1", "--out", str(tmp_path / "o")),
        ("sae", "train", str(token_store), "--point", "resid.9", "--out", str(tmp_path / "o")),
        ("sae", "train", str(token_store), "--point", "resid.1", "--k", "99", "--latents", "16",
         "--out", str(tmp_path / "o")),
        ("sae", "train", str(token_store), "--point", "resid.1", "--steps", "10", "--epochs", "1",
         "--out", str(tmp_path / "o")),
        ("sae", "eval", str(tmp_path / "no-sae"), str(token_store)),
        ("sae", "export", str(tmp_path / "no-sae"), "--latent", "1", "--out", str(tmp_path / "v.safetensors")),
    ]
    for args in cases:
        code, _, err = run(capsys, *args)
        assert code == 2, args
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_stops_in_one_line_and_writes_nothing(token_store, tmp_path, capsys):
    sae = tmp_path / "sae"
    train = ("sae", "train", str(token_store), "--point", "resid.1", "--latents", "16", "--k", "2", "--steps", "3")
    code, text, err = run(capsys, *train, "--out", str(sae), "--device", "auto", "--json")
    assert code == 0, err
    assert err.count("device: cpu (no CUDA)") == 1  # auto says what it chose, once
    assert json.loads(text)["results"][0]["device"] == "cpu"
    assert json.loads((sae / "cfg.json").read_text())["device"] == "cpu"
    before, results = (snapshot(tmp_path), snapshot(token_store)), saved_results(token_store)
    cases = [
        (*train, "--out", str(tmp_path / "new"), "--device", "cuda"),
        (*train, "--out", str(sae), "--device", "cuda:0"),  # a resume: the checkpoint is left alone
        ("sae", "eval", str(sae), str(token_store), "--device", "cuda"),
        ("sae", "eval", str(sae), str(token_store), "--model", TINY, "--model-dtype", "bfloat16", "--device", "cuda"),
        ("sae", "features", str(sae), str(token_store), "--model", TINY, "--device", "cuda"),
    ]
    for args in cases:
        code, text, err = run(capsys, *args)
        assert code == 2, args
        assert text == "" and err.count("\n") == 1 and "CUDA is not available" in err, (args, err)
    assert (snapshot(tmp_path), snapshot(token_store)) == before and saved_results(token_store) == results


def test_eval_with_a_bfloat16_model_gives_the_float32_losses(token_store, tmp_path, capsys):
    out = tmp_path / "sae"
    code, _, err = run(
        capsys, "sae", "train", str(token_store), "--point", "resid.1", "--latents", "64", "--k", "4",
        "--batch-size", "128", "--train-rows", "12800", "--lr", "3e-3", "--held-out", "0.1", "--out", str(out),
    )
    assert code == 0, err
    results = {}
    for dtype in ("float32", "bfloat16"):
        code, text, err = run(capsys, "sae", "eval", str(out), str(token_store), "--model", TINY,
                              "--model-dtype", dtype, "--device", "cpu", "--json")
        assert code == 0, err
        results[dtype] = json.loads(text)["results"][0]
    full, half = results["float32"], results["bfloat16"]
    assert half["fvu"] == full["fvu"] and half["l0"] == full["l0"]  # the SAE and the stored rows stay float32
    assert half["ce_n_tokens"] == full["ce_n_tokens"]
    for key in ("ce_clean_loss", "ce_spliced_loss", "ce_zero_ablation_loss"):
        assert half[key] == pytest.approx(full[key], abs=CE_HALF_TOLERANCE), key
    # loss recovered divides by the zero-ablation gap, only ~0.006 nats on this random model (float32: 0.236,
    # bfloat16: 0.054 measured), so it can move by up to 2 x the loss tolerance / gap
    gap = full["ce_zero_ablation_loss"] - full["ce_clean_loss"]
    assert abs(half["ce_loss_recovered"] - full["ce_loss_recovered"]) <= 2 * CE_HALF_TOLERANCE / gap


def test_contexts_print_as_text():
    from neurometry.features.examples import readable

    assert readable(["Ġthe", "Ġcat", "Ċ", "sat"]) == " the cat sat"
    assert readable("\u2581word") == " word"
