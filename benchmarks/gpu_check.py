"""The GPU check of issue 16, on one CUDA device: recording and SAE training against the plain forward,
nnsight and SAELens on the same card, with the values checked against the CPU.

1. **Values**: SmolLM2-135M ``resid.*`` (30 points, one float32 row per real token) recorded on the GPU
   over ``--n`` sentences (default 2,000: the generator of ``record_overhead.py``), and the first
   ``--cpu-check`` sentences recorded on the CPU: the worst per-row relative error GPU vs CPU (target
   < 1e-3; float32 on both, TF32 off as torch leaves it).
2. **Recording time** on the GPU, interleaved repetitions, median per-repetition ratios:
   record / plain GPU forward (the same batches through the model, no hooks; target <= 1.10) and
   record / nnsight on the same GPU (``model.trace`` saving the same 30 outputs, gathered to the CPU as
   float32 numpy; target <= 1.0). nnsight is skipped, with the reason, when it does not import.
3. **SAE training**: ``benchmarks/sae_training.py`` with ``--device cuda`` on ``resid.15`` of the GPU
   store: our TopK trainer against SAELens' ``SAETrainer`` on the same batches, rows/s at equal FVU
   (target >= 1.5x).
4. **Peak GPU memory** of each stage (``torch.cuda.max_memory_allocated``).

The last lines are a table (the device tool returns the end of the output). Run on the device machine::

    python3 benchmarks/gpu_check.py [--model FOLDER] [--n 2000] [--cpu-check 200] [--repeats 3]

The device machine reaches no registry: neurometry's own dependencies that its image lacks (zarr and
its codecs, gguf, nnsight, sae-lens) travel as wheels, and SmolLM2's weights as a Hugging Face folder
(``--model``; about 540 MB in float32, so in parts over several calls, see docs/performance.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_overhead import read_texts, write_sentences  # noqa: E402

MAX_TOKENS = 128
BATCH_SIZE = 32


def gpu_batches(tokenizer, texts: list[str], device: torch.device):
    for start in range(0, len(texts), BATCH_SIZE):
        batch = tokenizer(texts[start : start + BATCH_SIZE], padding=True, truncation=True, max_length=MAX_TOKENS,
                          return_tensors="pt")
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def synced(fn, device: torch.device) -> float:
    """Wall seconds of ``fn()`` with the GPU's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def envoy(model, path: str):
    """nnsight's proxy of the submodule at ``path`` (``model.layers.3``)."""
    for part in path.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


class Recorders:
    """The three ways to get ``resid.*`` rows off the GPU, each ``fn(data, out)``."""

    def __init__(self, model_spec: str, device: torch.device):
        from neurometry.models import load_model

        self.device = device
        self.loaded = load_model(model_spec, device=device)
        self.layers = [p.module_path for p in self.loaded.resolve(["resid.*"])]
        self.fns = {"plain": self.plain, "ours": self.ours}
        self.skipped: dict[str, str] = {}
        try:
            import nnsight

            self.nnsight_mod = nnsight
            self.nn_model = nnsight.NNsight(self.loaded.module)
            self.fns["nnsight"] = self.nnsight
        except Exception as exc:  # noqa: BLE001 - missing or broken: skip and say why
            self.skipped["nnsight"] = f"{type(exc).__name__}: {exc}"

    def ours(self, data: Path, out: Path) -> None:
        from neurometry import record

        record(self.loaded, data, ["resid.*"], out / "store", reduce="tokens", batch_size=BATCH_SIZE,
               max_tokens=MAX_TOKENS, progress=False)

    def plain(self, data: Path, out: Path) -> None:
        with torch.inference_mode():
            for batch in gpu_batches(self.loaded.tokenizer, read_texts(data), self.device):
                self.loaded.forward(batch)

    def nnsight(self, data: Path, out: Path) -> None:
        model = self.nn_model
        rows: list[list[np.ndarray]] = [[] for _ in self.layers]
        with torch.inference_mode():
            for batch in gpu_batches(self.loaded.tokenizer, read_texts(data), self.device):
                with model.trace(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]):
                    saved = self.nnsight_mod.save([envoy(model, path).output for path in self.layers])
                mask = batch["attention_mask"].bool()
                for i, value in enumerate(saved):
                    value = value[0] if isinstance(value, tuple) else value
                    rows[i].append(value[mask].float().cpu().numpy())
        for i, blocks in enumerate(rows):
            np.save(out / f"resid.{i}.npy", np.concatenate(blocks))


def check_values(model_spec: str, gpu_store: Path, data: Path, n_check: int, tmp: Path) -> float:
    """Worst per-row relative error of the GPU rows against a CPU recording of the first ``n_check`` texts."""
    from neurometry import open_store, record

    subset = tmp / "check.jsonl"
    subset.write_text("".join(data.read_text().splitlines(keepends=True)[:n_check]))
    record(model_spec, subset, ["resid.*"], tmp / "cpu", reduce="tokens", batch_size=BATCH_SIZE,
           max_tokens=MAX_TOKENS, device="cpu", progress=False)
    cpu, gpu = open_store(tmp / "cpu"), open_store(gpu_store)
    worst = 0.0
    for info in cpu.points():
        a = cpu.activations(info.point)
        b = gpu.activations(info.point)[: len(a)]
        worst = max(worst, float((np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)).max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="zoo name or Hugging Face folder of SmolLM2-135M")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--cpu-check", type=int, default=200, help="sentences recorded on the CPU too")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sae-rows", type=int, default=409600, help="rows each SAE trainer sees")
    parser.add_argument("--sae-point", default="resid.15")
    parser.add_argument("--sae-latents", type=int, default=4096)
    parser.add_argument("--sae-batch-size", type=int, default=4096)
    parser.add_argument("--skip-sae", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script where there is no GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run this on a GPU machine (or --device cpu for a smoke run)", file=sys.stderr)
        return 2
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    cuda = device.type == "cuda"
    card = torch.cuda.get_device_name(device) if cuda else "CPU (smoke run)"
    print(f"# gpu_check on {card}, torch {torch.__version__}, n={args.n}, repeats={args.repeats}", flush=True)
    rows: list[tuple[str, str, str, str]] = []

    with tempfile.TemporaryDirectory(prefix="nm-gpu-") as name:
        tmp = Path(name)
        data = write_sentences(args.n, tmp / "sentences.jsonl")
        warm = write_sentences(64, tmp / "warm.jsonl", seed=1)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        recorders = Recorders(args.model, device)
        for why in recorders.skipped.items():
            print(f"# skipped {why[0]}: {why[1]}")
        names = list(recorders.fns)
        for method in names:  # first-call costs (cuBLAS handles, allocator) out of the timings
            out = Path(tempfile.mkdtemp(dir=tmp))
            recorders.fns[method](warm, out)
        times: dict[str, list[float]] = {m: [] for m in names}
        kept = tmp / "kept"
        for rep in range(args.repeats):
            for method in names[rep % len(names):] + names[: rep % len(names)]:
                out = Path(tempfile.mkdtemp(dir=tmp))
                times[method].append(synced(functools.partial(recorders.fns[method], data, out), device))
                if method == "ours" and not kept.exists():
                    (out / "store").rename(kept)
            print(f"# rep {rep + 1}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in names), flush=True)
        record_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        for ref, target in (("plain", 1.10), ("nnsight", 1.0)):
            if ref in times:
                ratio = statistics.median(o / r for o, r in zip(times["ours"], times[ref], strict=True))
                rows.append((f"record / {ref} (GPU)", f"{ratio:.3f}", f"<= {target:.2f}",
                             "PASS" if ratio <= target else "FAIL"))
        worst = check_values(args.model, kept, data, args.cpu_check, tmp)
        rows.append(("GPU vs CPU rows, worst rel. error", f"{worst:.2e}", "< 1e-3", "PASS" if worst < 1e-3 else "FAIL"))
        rows.append(("peak GPU memory, recording", f"{record_peak:.2f} GiB", "", "info"))

        if not args.skip_sae:
            script = Path(__file__).resolve().parent / "sae_training.py"
            cmd = [sys.executable, str(script), str(kept), "--point", args.sae_point, "--device", args.device,
                   "--rows", str(args.sae_rows), "--latents", str(args.sae_latents),
                   "--batch-size", str(args.sae_batch_size), "--json"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                rows.append(("SAE training", "failed", "", tail[:120]))
            else:
                sae = json.loads(lines[-1])
                speed = sae["ours_rows_per_s"] / sae["saelens_rows_per_s"]
                rows.append(("SAE rows/s, ours / SAELens (GPU)", f"{speed:.2f}x", ">= 1.5x",
                             "PASS" if speed >= 1.5 else "FAIL"))
                rows.append(("SAE held-out FVU, ours | SAELens", f"{sae['ours_fvu']:.3f} | {sae['saelens_fvu']:.3f}",
                             "equal", "info"))
                rows.append(("peak GPU memory, SAE training", f"{sae.get('peak_gpu_gib', float('nan')):.2f} GiB",
                             "", "info"))

    print("\nmedian seconds: " + ", ".join(f"{m} {statistics.median(v):.2f}" for m, v in times.items()))
    header = ("check", "value", "target", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(f"\n{card}")
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
