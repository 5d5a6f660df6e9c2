"""SAE training throughput and held-out FVU: neurometry's trainer against SAELens' SAETrainer, side by side.

Both train a TopK SAE of the same width and k, with the same batch size, learning rate and number
of rows, on the same stored activations: SAELens is fed the very batches our shuffling buffer yields
(its ``SAETrainer`` takes any iterator of activation batches, so it runs offline from a store), with
``normalize_activations="expected_average_only_in"`` as ours, and AuxK on in both. Both are then
scored on the same held-out rows by ``neurometry.features.evaluate.evaluate_sae`` (SAELens' SAE
is saved and loaded through the SAELens file format). Token rows before --min-position (default 1:
each text's first token, an attention sink) are left out of both. 2 threads; one process.

    .venv/bin/python benchmarks/sae_training.py STORE --point resid.15 [--rows 200000] [--latents 4096] [--k 32]
        [--device cuda] [--json]

STORE: any store with a point (e.g. the one ``benchmarks/sae_smollm2.py`` records).
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from neurometry.features.buffer import ShufflingBuffer, held_out_start, row_mask  # noqa: E402
from neurometry.features.evaluate import evaluate_sae  # noqa: E402
from neurometry.features.io import load_sae  # noqa: E402
from neurometry.features.train import TrainConfig, train_sae  # noqa: E402
from neurometry.store import open_store  # noqa: E402

torch.set_num_threads(THREADS)


def train_saelens(store, point: str, stop: int, args: argparse.Namespace, d_in: int, out: Path) -> float:
    """Train SAELens' TopK SAE on our buffer's batches; save it to ``out``; return wall seconds."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    steps = args.rows // args.batch_size
    cfg = TopKTrainingSAEConfig(
        d_in=d_in, d_sae=args.latents, k=args.k, normalize_activations="expected_average_only_in",
        device=args.device,
    )
    sae = TopKTrainingSAE(cfg)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * args.batch_size,
        train_batch_size_samples=args.batch_size,
        lr=args.lr,
        lr_end=0.0,
        lr_warm_up_steps=max(1, steps // 100),
        lr_decay_steps=steps // 5,
        lr_scheduler_name="constant",
        n_batches_for_norm_estimate=4,
        logger=LoggingConfig(log_to_wandb=False),
        device=args.device,
    )
    keep = row_mask(store, point, None, args.min_position)
    batches = (b.to(args.device) for b in ShufflingBuffer(store, point, None, stop, args.batch_size, seed=0, keep=keep))
    trainer = SAETrainer(trainer_cfg, sae, batches)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = trainer.fit()
    synchronize(args.device)
    seconds = time.perf_counter() - start
    trained.save_inference_model(str(out))  # the inference form SAE.load_from_disk reads
    return seconds


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float:
    """Peak GPU memory since the last reset (NaN off CUDA), then reset."""
    if not device.startswith("cuda"):
        return float("nan")
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--point", default="resid.15")
    ap.add_argument("--rows", type=int, default=200_000, help="training rows for each trainer")
    ap.add_argument("--latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--min-position", type=int, default=1, help="leave out token rows before this position")
    ap.add_argument("--device", default="cpu", help="cpu|cuda|cuda:N: both trainers and the evaluation run there")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line (gpu_check.py)")
    args = ap.parse_args()
    store = open_store(args.store)
    info = store.point_info(args.point)
    d_in = int(torch.tensor(info.shape).prod())
    stop = held_out_start(store, args.point, None, 0.05)
    print(
        f"{info.run_id}/{args.point}: {info.n_rows} rows x {d_in}; training rows [0, {stop}), held out "
        f"[{stop}, {info.n_rows}); TopK d_sae={args.latents} k={args.k} batch={args.batch_size} lr={args.lr}; "
        f"{args.rows} rows each; threads {THREADS}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ours = train_sae(
            store, args.point, Path(tmp) / "ours", architecture="topk", d_sae=args.latents, k=args.k,
            train=TrainConfig(
                batch_size=args.batch_size, lr=args.lr, train_rows=args.rows, min_position=args.min_position
            ),
            progress=False, device=args.device,
        )
        ours_peak = peak_gib(args.device)
        theirs_seconds = train_saelens(store, args.point, stop, args, d_in, Path(tmp) / "saelens")
        theirs_peak = peak_gib(args.device)
        theirs = load_sae(Path(tmp) / "saelens").to(args.device)
        rows = []
        for name, sae, seconds in (
            ("neurometry", ours.sae, ours.seconds),
            ("SAELens", theirs, theirs_seconds),
        ):
            m = evaluate_sae(sae, store, args.point, start=stop, progress=False, min_position=args.min_position)
            rows.append((name, args.rows / seconds, seconds, m.fvu, m.l0, m.dead_fraction))
    print(f"{'trainer':<11} {'rows/s':>9} {'seconds':>8} {'held-out FVU':>13} {'L0':>6} {'dead':>6}")
    for name, rate, seconds, fvu, l0, dead in rows:
        print(f"{name:<11} {rate:>9.0f} {seconds:>8.1f} {fvu:>13.4f} {l0:>6.1f} {dead:>6.3f}")
    print(f"throughput ratio (ours / SAELens): {rows[0][1] / rows[1][1]:.2f}x")
    if args.json:
        print(json.dumps({
            "device": args.device, "ours_rows_per_s": rows[0][1], "saelens_rows_per_s": rows[1][1],
            "ours_fvu": rows[0][3], "saelens_fvu": rows[1][3], "peak_gpu_gib": ours_peak,
            "saelens_peak_gpu_gib": theirs_peak,
        }))


if __name__ == "__main__":
    main()
