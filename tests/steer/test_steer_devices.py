"""`--device` and `--model-dtype` on `steer build|eval|generate`, `lens`, `patch` and `diff`: a missing GPU fails
at once in one line with nothing written; the tiny seeded Llama in bfloat16 and float16 agrees with float32 to
measured tolerances; explicit `cpu`/`float32` is the default exactly; the settings are saved with the results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.errors import NeurometryError
from neurometry.models import load_model
from neurometry.steer import build_vector, load_vector, logit_lens, patch_residual, save_vector
from neurometry.steer.lens import lens_logits

TINY = "neurometry.models.tiny:tiny_llama"
WORDS = ["cat", "dog", "house", "tree", "car", "bird", "river", "book"]
POSITIVES = [f"the {w} is good" for w in WORDS]
NEGATIVES = [f"the {w} is bad" for w in WORDS]
CLEAN, CORRUPTED = "the cat sat on the mat", "the dog sat on the mat"

# Measured on the tiny Llama (bfloat16 / float16 against float32): mean_diff vector cosine 0.99989 / 0.999999
# and norm ratio 0.9990 / 1.0002; lens logits max |difference| 0.0024 / 0.00034 (the top-1 token at every
# point is the same: its lead over the second is at least 0.0085); patched logit differences max |difference|
# 0.0021 / 0.00015. The tolerances leave a margin of about 5x.
COSINE = {"bfloat16": 0.999, "float16": 0.99999}
LOGITS = {"bfloat16": 0.01, "float16": 0.002}
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def models():
    return {dtype: load_model(TINY, dtype=dtype) for dtype in ("float32", "bfloat16", "float16")}


@pytest.fixture
def pairs(tmp_path):
    rows = [
        {"positive": p, "negative": n, "target": " good", "opposite": " bad"}
        for p, n in zip(POSITIVES, NEGATIVES, strict=True)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "args",
    [
        ["steer", "build", TINY, "{pairs}", "--point", "resid.1", "--out", "{tmp}/v.safetensors"],
        ["steer", "eval", TINY, "{tmp}/given.safetensors", "--store", "{tmp}/s.nmstore", "--plot", "{tmp}/p.png"],
        ["steer", "generate", TINY, "{tmp}/given.safetensors", "--alpha", "1", "--prompt", "the cat"],
        ["lens", TINY, "--prompt", "the cat sat on"],
        ["patch", TINY, "--example", "0", "--store", "{tmp}/s.nmstore", "--plot", "{tmp}/p.png"],
        ["diff", TINY, TINY, "--store", "{tmp}/s.nmstore"],
    ],
    ids=["build", "eval", "generate", "lens", "patch", "diff"],
)
def test_cuda_on_a_machine_without_it_exits_2_in_one_line_and_writes_nothing(pairs, tmp_path, capsys, args):
    save_vector(tmp_path / "given.safetensors", np.ones(32), model=TINY, point="resid.1", method="mean_diff",
                position=-1)
    before = files_under(tmp_path)
    code, out, err = run(capsys, *[a.format(tmp=tmp_path, pairs=pairs) for a in args], "--device", "cuda")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "CUDA is not available" in err
    assert files_under(tmp_path) == before


def test_steering_vector_in_half_precision_agrees_with_float32(models):
    reference = build_vector(models["float32"], POSITIVES, NEGATIVES, "resid.1")
    for dtype, minimum in COSINE.items():
        vector = build_vector(models[dtype], POSITIVES, NEGATIVES, "resid.1")
        assert vector.dtype == np.float64  # read in float64 on the CPU, whatever the model's precision
        cosine = vector @ reference / (np.linalg.norm(vector) * np.linalg.norm(reference))
        assert cosine > minimum, dtype
        assert np.linalg.norm(vector) == pytest.approx(np.linalg.norm(reference), rel=0.01)


def test_lens_and_patching_in_half_precision_agree_with_float32(models):
    names, reference, _, _ = lens_logits(models["float32"], "the cat sat on the")
    top1 = [tokens[0] for tokens in logit_lens(models["float32"], "the cat sat on the", top_k=1).top_tokens]
    patched = patch_residual(models["float32"], CLEAN, CORRUPTED, "cat", "dog", heads=False)

    def patched_lds(result) -> np.ndarray:  # the raw logit differences behind the normalised scores
        return result.corrupted_ld + result.scores * (result.clean_ld - result.corrupted_ld)

    for dtype, tolerance in LOGITS.items():
        model = models[dtype]
        _, logits, _, _ = lens_logits(model, "the cat sat on the")
        assert logits.dtype == model.dtype and (logits.double() - reference.double()).abs().max() < tolerance
        lens = logit_lens(model, "the cat sat on the", top_k=1, target=" mat")
        assert [tokens[0] for tokens in lens.top_tokens] == top1 and lens.top_probs.dtype == np.float64
        result = patch_residual(model, CLEAN, CORRUPTED, "cat", "dog", heads=False)
        assert np.abs(patched_lds(result) - patched_lds(patched)).max() < tolerance
        assert abs(result.clean_ld - patched.clean_ld) < tolerance
        # exact in any precision: the last block at the last position is the clean run; the first position
        # (before the prompts differ) is the corrupted one
        assert result.scores[-1, -1] == pytest.approx(1.0) and np.all(result.scores[:, 0] == 0)


def test_float16_overflow_is_refused_naming_float32():
    model = load_model(TINY, dtype="float16")
    layer = model.module.model.layers[0]
    with torch.no_grad():  # every MLP unit gives silu(32) * 32 = 1024; 64 of them summed pass float16's 65504
        model.module.model.embed_tokens.weight.fill_(1.0)
        layer.self_attn.o_proj.weight.zero_()
        for weight in (layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight):
            weight.fill_(1.0)
    with pytest.raises(NeurometryError, match="overflowed in float16; run it with --model-dtype float32") as exc:
        logit_lens(model, "the cat sat on")
    assert "\n" not in str(exc.value)
    with pytest.raises(NeurometryError, match="--model-dtype float32"):
        build_vector(model, POSITIVES[:2], NEGATIVES[:2], "resid.0")


def test_explicit_cpu_float32_is_the_default_and_the_settings_are_saved(pairs, tmp_path, capsys):
    from neurometry import open_store
    from neurometry.store.results import PATCH
    from neurometry.workflows.steer import build_from_pairs, patch_pair

    _, default, _ = build_from_pairs(TINY, str(pairs), "resid.1", tmp_path / "default.safetensors", train=5)
    _, explicit, _ = build_from_pairs(TINY, str(pairs), "resid.1", tmp_path / "cpu.safetensors", train=5,
                                      device="cpu", model_dtype="float32")
    np.testing.assert_array_equal(explicit, default)
    _, meta = load_vector(tmp_path / "default.safetensors")
    assert (meta["device"], meta["model_dtype"]) == ("cpu", "float32")

    code, text, err = run(capsys, "steer", "build", TINY, str(pairs), "--point", "resid.1", "--train", "5",
                          "--out", str(tmp_path / "bf16.safetensors"), "--model-dtype", "bfloat16", "--json")
    assert code == 0, err
    vector, meta = load_vector(tmp_path / "bf16.safetensors")
    assert (meta["device"], meta["model_dtype"]) == ("cpu", "bfloat16") and vector.dtype == np.float32
    assert json.loads(text)["norm"] == pytest.approx(float(np.linalg.norm(default)), rel=0.01)

    given = {"clean": CLEAN, "corrupted": CORRUPTED, "correct": "cat", "wrong": "dog"}
    first, _ = patch_pair(TINY, given, heads=False)
    second, _ = patch_pair(TINY, given, heads=False, device="cpu", model_dtype="float32",
                           store=tmp_path / "s.nmstore")
    assert second.to_dict() == first.to_dict()
    saved = PATCH.load(open_store(tmp_path / "s.nmstore"))
    assert {(r["device"], r["model_dtype"]) for r in saved["extra"]} == {("cpu", "float32")}
