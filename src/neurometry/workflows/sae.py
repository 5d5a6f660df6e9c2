"""`sae train|eval|features` as a library: train a sparse autoencoder on a stored point into a folder
SAELens can load, evaluate it on the held-out inputs (and, with a model, spliced back into it), and write
each latent's top examples into the store's catalog (kinds :data:`~neurometry.store.results.SAE_EVAL`
and :data:`~neurometry.store.results.SAE_FEATURES`).

Each takes ``device`` (``auto|cpu|cuda|cuda:N|mps``; default the CPU), resolved before any work so a missing
GPU fails at once with nothing written, and evaluation and explanation ``model_dtype``
(``float32|bfloat16|float16``) for the model they load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from neurometry import clusters
from neurometry.errors import NeurometryError
from neurometry.features.evaluate import ce_loss_recovered, evaluate_sae, save_sae_eval
from neurometry.features.examples import (
    FeatureExamples,
    feature_examples,
    feature_logit_tokens,
    save_feature_examples,
)
from neurometry.features.io import load_sae
from neurometry.features.sae import SAEConfig, SparseAutoencoder
from neurometry.features.train import TrainConfig, TrainResult, train_sae
from neurometry.models import load_model
from neurometry.models.devices import device_name, resolve_device, resolve_model_dtype
from neurometry.store import PointInfo, Store, open_store


def train_on_store(
    store_path: str | Path,
    point: str,
    out: str | Path,
    train: TrainConfig,
    *,
    run: str | None = None,
    architecture: str = "topk",
    latents: int = 4096,
    k: int = 32,
    l1: float = 5.0,
    l0: float = 1.0,
    fresh: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    device: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int = 2,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train an SAE of ``latents`` on ``point`` on ``device`` (resuming from a checkpoint in ``out`` unless
    ``fresh``); returns the result and its summary record (steps, schedule, last batch's L0/FVU, the
    device, the folder).

    ``engine="ray"``: data-parallel over ``workers`` Ray Train workers (:mod:`neurometry.features.distributed`;
    the Ray cluster at ``ray_address``, else a local one), the same batches, steps and saved layout, no
    checkpoint or resume."""
    if engine not in ("local", "ray"):
        raise NeurometryError(f"engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        from neurometry.features.distributed import import_ray

        import_ray()  # before any work: without the extra, one line and nothing written
        clusters.check_address(ray_address)
    target = resolve_device(device)
    store = open_store(store_path)
    info = store.point_info(point, run)
    cfg = SAEConfig(
        d_in=math.prod(info.shape), d_sae=latents, architecture=architecture, k=k, l1_coefficient=l1,
        l0_coefficient=l0, model=store.run_info(info.run_id).model, point=point,
    )
    if engine == "ray":
        from neurometry.features.distributed import train_sae_ray

        result = train_sae_ray(store_path, point, out, cfg, train, run=info.run_id, workers=workers,
                               address=ray_address, fresh=fresh, max_steps=max_steps, device=target)
    else:
        result = train_sae(store, point, out, cfg, train, run=info.run_id, fresh=fresh, max_steps=max_steps,
                           progress=progress, device=target)
    last = result.history[-1] if result.history else {}
    record = {
        "point": point,
        "architecture": cfg.architecture,
        "latents": cfg.d_sae,
        "steps": result.steps,
        "batch_size": result.schedule.batch_size,
        "schedule": result.schedule.reason,
        "rows_seen": result.rows_seen,
        "rows_per_second": result.rows_per_second,
        "train_l0": last.get("l0"),
        "train_fvu": last.get("fvu"),
        "dead_fraction": last.get("dead_fraction"),
        "held_out_start": result.held_out_start,
        "resumed_from": result.resumed_from,
        "device": device_name(target),
        "out": str(result.folder),
    }
    if engine == "ray":
        record["workers"] = workers
    return result, record


def sae_and_point(
    sae_path: str | Path, store_path: str | Path, point: str | None = None, run: str | None = None
) -> tuple[SparseAutoencoder, Store, str, PointInfo]:
    """(SAE, store, point, point info) to evaluate or explain an SAE on: ``point`` defaults to the SAE's own."""
    sae = load_sae(sae_path)
    store = open_store(store_path)
    point = point or sae.cfg.point
    if not point:
        raise NeurometryError("the SAE names no point; give --point")
    return sae, store, point, store.point_info(point, run)


def held_out_start(sae: SparseAutoencoder, run: str, point: str) -> int:
    """First held-out row when the SAE was trained on this run and point, else 0 (every row is new)."""
    extra = sae.cfg.extra
    trained_here = extra.get("run") == run and sae.cfg.point == point and "held_out_start" in extra
    return int(extra["held_out_start"]) if trained_here else 0


def evaluate_on_store(
    sae_path: str | Path,
    store_path: str | Path,
    *,
    point: str | None = None,
    run: str | None = None,
    model: str | None = None,
    max_texts: int = 64,
    max_length: int = 128,
    progress: bool = True,
    device: str | None = None,
    model_dtype: str | None = None,
) -> dict[str, Any]:
    """L0, FVU and dead/dense latents on the held-out rows (and with ``model``, loaded on ``device`` in
    ``model_dtype``, the CE loss recovered on the held-out texts), saved in the store; returns the saved
    record. The SAE runs on ``device`` in float32."""
    target, dtype = resolve_device(device), resolve_model_dtype(model_dtype)
    sae, store, point, info = sae_and_point(sae_path, store_path, point, run)
    sae.to(target)
    start = held_out_start(sae, info.run_id, point)
    if start >= info.n_rows:
        raise NeurometryError(
            f"the SAE was trained on every row of {point} (--held-out 0); evaluate it on another store"
        )
    metrics = evaluate_sae(sae, store, point, info.run_id, start=start, progress=progress)
    ce = None
    if model:
        inputs = store.inputs(store.run_info(info.run_id).dataset_id)
        if "text" not in inputs.columns:
            raise NeurometryError(f"run {info.run_id} has no text column; CE loss needs the recorded texts")
        first_input = int(store.row_index(info.run_id)["input_row"].iloc[start]) if start else 0
        texts = inputs["text"].iloc[first_input:].astype(str).tolist()[:max_texts]
        ce = ce_loss_recovered(sae, load_model(model, target, dtype), point, texts, max_length=max_length)
    return save_sae_eval(store, sae_path, point, info.run_id, metrics, ce, rows_from=start)


def explain_on_store(
    sae_path: str | Path,
    store_path: str | Path,
    *,
    point: str | None = None,
    run: str | None = None,
    top: int = 20,
    window: int = 8,
    model: str | None = None,
    name: str | None = None,
    progress: bool = True,
    device: str | None = None,
    model_dtype: str | None = None,
) -> tuple[FeatureExamples, str, Store]:
    """Each latent's frequency and top token contexts (and with ``model``, loaded on ``device`` in
    ``model_dtype``, the tokens it promotes), saved in the store under ``name`` (default: the SAE folder's
    name); returns the examples, the name and the store. The SAE runs on ``device`` in float32."""
    target, dtype = resolve_device(device), resolve_model_dtype(model_dtype)
    sae, store, point, info = sae_and_point(sae_path, store_path, point, run)
    sae.to(target)
    examples = feature_examples(sae, store, point, info.run_id, top=top, window=window, progress=progress)
    if model:
        examples.logit_tokens = feature_logit_tokens(sae, load_model(model, target, dtype)).as_records()
    name = name or Path(sae_path).resolve().name
    save_feature_examples(store, examples, info.run_id, name)
    return examples, name, store
