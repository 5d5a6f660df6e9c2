"""Data-parallel SAE training on Ray (``train_on_store(..., engine="ray")``, ``neurometry sae train --ray``).

Ray Train's ``TorchTrainer`` starts ``workers`` processes joined by ``torch.distributed`` (gloo on the CPU,
NCCL on GPUs). Every worker builds the single process's SAE (the same seed, so the same weights), opens the
store on the shared filesystem and reads the same seeded :class:`~neurometry.features.buffer.ShufflingBuffer`,
so every worker sees the single process's global batches in its order; it trains on its own contiguous share
of each one. After each backward pass the gradients are all-reduced, each worker's weighted by its share of
the rows, so the update is the one of the global batch's mean loss; the latents that fired are gathered from
every worker (the dead-latent counters stay equal everywhere), dead latents are resampled towards the whole
global batch, and BatchTopK's threshold estimate is averaged. The learning-rate schedule and the number of
steps are the single process's (:func:`~neurometry.features.train.plan_schedule`). Worker 0 saves the SAE
with :func:`~neurometry.features.io.save_sae` in the same layout; ``cfg.json`` adds ``"workers": N`` and
``"engine": "ray"``.

Not here: checkpoints and resuming (a run trains from the start; a single-process checkpoint in the
output folder is refused unless ``fresh``), a progress bar, and per-step training metrics over the global
batch (the history holds worker 0's share: its L0 and FVU on its rows).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from neurometry import clusters
from neurometry.errors import NeurometryError
from neurometry.features.buffer import ShufflingBuffer, held_out_start, row_mask
from neurometry.features.io import load_sae, save_sae
from neurometry.features.prefetch import Prefetcher, read_ahead_depth
from neurometry.features.sae import SAEConfig, SparseAutoencoder
from neurometry.features.train import (
    CHECKPOINT_DIR,
    TrainConfig,
    TrainResult,
    _Trainer,
    initial_scale_and_center,
    plan_schedule,
)
from neurometry.models.devices import device_name, resolve_device
from neurometry.store import open_store

RESULT_DIR = ".ray_train"  # in the output folder while training: Ray Train's storage and worker 0's summary


def import_ray() -> Any:
    """``ray`` with Ray Train, or one line naming the extra that brings it."""
    return clusters.import_ray("train.torch", without="train without --ray")


class DataParallelTrainer(_Trainer):
    """:class:`~neurometry.features.train._Trainer` for one worker of a ``torch.distributed`` group: it trains on
    its share of each global batch and keeps its SAE, Adam state and dead-latent counters equal to every
    other worker's."""

    def __init__(self, sae: SparseAutoencoder, train: TrainConfig, total_steps: int):
        super().__init__(sae, train, total_steps)
        self.share = 1.0  # this worker's rows / the global batch's rows
        self.whole_rows = 0

    def train_step(self, x: torch.Tensor, whole: torch.Tensor | None = None) -> dict[str, float]:
        whole = x if whole is None else whole
        self.share, self.whole_rows = len(x) / len(whole), len(whole)
        parts = super().train_step(x, whole)
        if self.sae.cfg.architecture == "batchtopk":
            import torch.distributed as dist

            threshold = self.sae.threshold
            with torch.no_grad():
                dist.all_reduce(threshold)
                threshold /= dist.get_world_size()
        return parts

    def reduce_gradients(self) -> None:
        """Sum every worker's gradients, each weighted by its share of the rows: the global batch's mean loss."""
        import torch.distributed as dist

        params = list(self.sae.parameters())
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]) * self.share
        dist.all_reduce(flat)
        at = 0
        for p, g in zip(params, grads, strict=True):
            p.grad = flat[at : at + g.numel()].view_as(g)
            at += g.numel()

    def mark_fired(self, fired: torch.Tensor, rows: int) -> None:
        """Restart the counters of the latents that fired on any worker; count the global batch's rows."""
        import torch.distributed as dist

        mask = torch.zeros(self.sae.cfg.d_sae, dtype=torch.int32, device=self.device)
        mask[fired] = 1  # indices (TopK) or a mask
        dist.all_reduce(mask, op=dist.ReduceOp.MAX)
        super().mark_fired(mask.bool(), self.whole_rows or rows)


def _worker(job: dict[str, Any]) -> None:
    """One Ray Train worker: the single-process setup, its share of every global batch, worker 0 saves."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(int(job["threads"]))
    target = ray.train.torch.get_device() if job["use_gpu"] else torch.device("cpu")
    train = TrainConfig(**job["train"])
    cfg = SAEConfig.from_dict(job["sae"])
    store = open_store(job["store"])
    point, run = job["point"], job["run"]
    stop = held_out_start(store, point, run, train.held_out)
    keep = row_mask(store, point, run, train.min_position)
    schedule = plan_schedule(train, stop if keep is None else int(keep[:stop].sum()))
    buffer = ShufflingBuffer(
        store, point, run, stop, schedule.batch_size, train.buffer_rows, train.seed, keep=keep, device=target
    )
    torch.manual_seed(train.seed)
    sae = SparseAutoencoder(cfg, seed=train.seed).to(target)
    trainer = DataParallelTrainer(sae, train, schedule.steps)
    trainer.input_scale = initial_scale_and_center(buffer, train, sae)
    end = schedule.steps if job["max_steps"] is None else min(schedule.steps, int(job["max_steps"]))
    started = time.perf_counter()
    batches = Prefetcher(iter(buffer), target, depth=read_ahead_depth(job["prefetch"], target))
    try:
        while trainer.step < end:
            whole = next(batches) * trainer.input_scale
            parts = trainer.train_step(whole.tensor_split(world)[rank], whole)
            if trainer.step % 10 == 0 or trainer.step == end:
                trainer.history.append({"step": trainer.step, "rows": trainer.rows_seen, **parts})
    finally:
        batches.close()
    seconds = time.perf_counter() - started
    if rank != 0:
        return
    folder = Path(job["out"])
    summary = {
        "input_scale": trainer.input_scale,
        "steps": trainer.step,
        "rows_seen": trainer.rows_seen,
        "held_out_start": stop,
        "run": run,
        "min_position": train.min_position,
        "epochs": trainer.rows_seen / max(1, buffer.batches_per_epoch() * schedule.batch_size),
        "train": dataclasses.asdict(train),
        "schedule": schedule.to_dict(),
        "workers": world,
        "engine": "ray",
    }
    final = SparseAutoencoder(dataclasses.replace(cfg, extra={**cfg.extra, **summary}), seed=train.seed)
    final.load_state_dict(sae.state_dict())
    final.fold_input_scale(trainer.input_scale)
    trainer.check_finite()
    trainer.check_finite(final)
    save_sae(folder, final, device=device_name(target))
    report = {"steps": trainer.step, "rows_seen": trainer.rows_seen, "seconds": seconds, "history": trainer.history}
    (folder / RESULT_DIR / "result.json").write_text(json.dumps(report))


def train_sae_ray(
    store: str | Path,
    point: str,
    out: str | Path,
    cfg: SAEConfig,
    train: TrainConfig,
    *,
    run: str | None = None,
    workers: int = 2,
    address: str | None = None,
    fresh: bool = False,
    max_steps: int | None = None,
    device: str | torch.device | None = None,
    prefetch: bool | None = None,
) -> TrainResult:
    """Train ``cfg`` on ``point`` with ``workers`` data-parallel Ray Train workers (the store and ``out`` on a
    filesystem every node sees at the same path) and save it into ``out`` as :func:`~neurometry.features.train
    .train_sae` does; the same rows, batches, learning rates and steps. Joins the Ray cluster at ``address``
    (or the one this process is connected to), else starts a local one for the call."""
    ray = import_ray()
    target = resolve_device(device)
    if target.type not in ("cpu", "cuda"):
        raise NeurometryError(f"--ray trains on the CPU or on CUDA GPUs, not {device_name(target)}")
    if workers < 1:
        raise NeurometryError(f"--workers must be at least 1, got {workers}")
    if max_steps is not None and max_steps < 1:
        raise NeurometryError(f"max_steps (--max-steps) must be at least 1, got {max_steps}")
    path = Path(store).resolve()
    opened = open_store(path)
    info = opened.point_info(point, run)
    d_in = int(torch.Size(info.shape).numel())
    if cfg.d_in != d_in:
        raise NeurometryError(f"the SAE takes {cfg.d_in} features but {point} rows have {d_in}")
    folder = Path(out).resolve()
    if folder.exists() and not folder.is_dir():
        raise NeurometryError(f"--out {folder} is a file; give a folder for the SAE")
    checkpoint = folder / CHECKPOINT_DIR
    if checkpoint.is_dir() and any(checkpoint.iterdir()):
        if not fresh:
            raise NeurometryError(
                f"{folder} holds a checkpoint and --ray does not resume; use a new --out or --fresh"
            )
        shutil.rmtree(checkpoint)
    stop = held_out_start(opened, point, info.run_id, train.held_out)
    keep = row_mask(opened, point, info.run_id, train.min_position)
    schedule = plan_schedule(train, stop if keep is None else int(keep[:stop].sum()))
    if schedule.batch_size < workers:
        raise NeurometryError(f"a batch of {schedule.batch_size} rows cannot be shared by {workers} workers")
    scratch = folder / RESULT_DIR
    with clusters.ray_session(ray, address):
        report = _fit(ray, workers, target, scratch, {
            "store": str(path), "point": point, "run": info.run_id, "out": str(folder),
            "sae": cfg.to_dict(), "train": dataclasses.asdict(train), "max_steps": max_steps,
            "use_gpu": target.type == "cuda", "prefetch": prefetch,
        })
    seconds = float(report["seconds"])
    return TrainResult(
        sae=load_sae(folder).eval(),
        folder=folder,
        steps=int(report["steps"]),
        rows_seen=int(report["rows_seen"]),
        held_out_start=stop,
        seconds=seconds,
        rows_per_second=report["rows_seen"] / seconds if seconds > 0 else 0.0,
        resumed_from=0,
        history=report["history"],
        schedule=schedule,
    )


def _fit(ray: Any, workers: int, target: torch.device, scratch: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Run the ``TorchTrainer`` of ``workers`` workers on ``job``; worker 0's report (steps, rows, seconds,
    history). Ray Train's storage lives in ``scratch``, removed afterwards."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    per_worker, threads = clusters.worker_share(ray, workers)
    use_gpu = target.type == "cuda"
    resources = {"CPU": per_worker, **({"GPU": 1} if use_gpu else {})}
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "result.json").unlink(missing_ok=True)
        trainer = TorchTrainer(
            _worker, train_loop_config={**job, "threads": threads},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(storage_path=str(scratch), name="sae"),
        )
        try:
            trainer.fit()
        except Exception as exc:  # a worker's error arrives wrapped; say it in one line
            cause = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, NeurometryError):
                raise NeurometryError(str(cause)) from None
            raise
        return json.loads((scratch / "result.json").read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
