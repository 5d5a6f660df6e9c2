"""`steer build|eval`, `patch` and `diff` as a library: contrastive pairs from files or the built-in sets,
vectors as safetensors + JSON, and with a store the results in its catalog (kinds
:data:`~neurometry.store.results.STEER_SWEEP`, :data:`~neurometry.store.results.PATCH` and
:data:`~neurometry.store.results.DIFF`) for the report and the dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.files import read_safetensors
from neurometry.models import LoadedModel, load_model
from neurometry.models.devices import dtype_name, resolve_device, resolve_model_dtype
from neurometry.steer import (
    DiffResult,
    build_from_store,
    build_vector,
    difference_lens,
    factual_pairs,
    load_vector,
    mean_activation_difference,
    neutral_texts,
    patch_residual,
    save_diff,
    save_patching,
    save_vector,
    steering_pairs,
    sweep,
)
from neurometry.steer.diffing import NEUTRAL, count_positions
from neurometry.steer.evaluate import STEERING_SETS, SweepRow, save_sweep
from neurometry.steer.patching import PatchResult
from neurometry.store import Store, open_store
from neurometry.store.store import check_store_path


def placement(
    device: str | torch.device | None, model_dtype: str | None
) -> tuple[torch.device | None, torch.dtype | None]:
    """``--device`` and ``--model-dtype`` resolved before any other work, so a missing GPU or an unknown name
    fails at once with nothing read or written; None stays None (a model loads float32 on the CPU)."""
    target = resolve_device(device) if device is not None else None
    return target, resolve_model_dtype(model_dtype) if model_dtype is not None else None


def ran_on(model: LoadedModel) -> dict[str, str]:
    """Where and in what precision ``model`` runs, as saved with results: ``{"device": "cuda:0",
    "model_dtype": "bfloat16"}``."""
    return {"device": model.placement, "model_dtype": dtype_name(model.dtype)}


def load_pairs(source: str) -> tuple[list[dict[str, str]], str]:
    """Contrastive pairs from a built-in set name or a JSONL file with positive / negative (and target /
    opposite for evaluation); returns (pairs, the name to record)."""

    if source in STEERING_SETS:
        return steering_pairs(source), source
    path = Path(source)
    if not path.is_file():
        raise NeurometryError(
            f"{source} is neither a built-in set ({', '.join(STEERING_SETS)}) nor a file; give a JSONL of pairs"
        )
    try:
        pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise NeurometryError(f"{path} is not JSONL ({exc}); one JSON object per line") from None
    if not pairs:
        raise NeurometryError(
            f"{path} holds no pairs; give one JSON object per line with 'positive' and 'negative' prompts "
            "(and 'target' and 'opposite' continuations for steer eval)"
        )
    missing = [i for i, p in enumerate(pairs) if not isinstance(p, dict) or not {"positive", "negative"} <= set(p)]
    if missing:
        raise NeurometryError(
            f"{len(missing)} rows of {path} lack 'positive' or 'negative' (first: row {missing[0]})"
        )
    return pairs, str(path.resolve())


def load_finetuned(
    base_spec: str, finetuned: str, device: str | torch.device | None = None, model_dtype: str | None = None
) -> LoadedModel:
    """A model spec, or a .safetensors state dict for the base model's architecture (loaded into a fresh
    copy of the base), e.g. the weights ``scripts/finetune_narrow.py`` caches; placed on ``device`` in
    ``model_dtype`` (give the base the same ones)."""
    path = Path(finetuned)
    if path.suffix != ".safetensors":
        return load_model(finetuned, device=device, dtype=model_dtype)
    if not path.is_file():
        raise NeurometryError(f"no file {path}; give a model or a .safetensors state dict of {base_spec}")
    # before the model loads: a broken file fails at once
    state = read_safetensors(path, "; give a state dict saved with safetensors.torch.save_file", as_torch=True)
    model = load_model(base_spec)
    missing, unexpected = model.module.load_state_dict(state, strict=False)
    if unexpected or len(missing) == len(model.module.state_dict()):
        raise NeurometryError(
            f"{path} does not hold weights of {base_spec} ({len(unexpected)} unexpected tensors); "
            "give a state dict saved from the same architecture"
        )
    model.module.eval()
    return model.place(device, model_dtype)  # placed after the state dict: its weights are cast once


def result_store(path: str | Path | None) -> Store | None:
    """The store to save into, created when missing; None without one. Call :func:`check_result_store`
    before the long work, so a bad path fails before it, not after."""
    return open_store(path, create=True) if path else None


def check_result_store(path: str | Path | None) -> None:
    """Fail before the computation: ``path`` must be a store or a new folder in an existing one."""
    if path:
        check_store_path(path, create=True)


def build_from_pairs(
    model_spec: str, pairs_source: str, point: str, out: str | Path, *, method: str = "mean_diff",
    position: int | str = -1, train: int | None = None, device: str | torch.device | None = None,
    model_dtype: str | None = None,
) -> tuple[Path, np.ndarray, dict[str, Any]]:
    """A steering vector from the first ``train`` pairs (default two thirds; the rest are held out for
    :func:`evaluate_vector`), saved to ``out`` (float32, with ``device`` and ``model_dtype`` in its JSON);
    returns (path, vector, {train_pairs, held_out_pairs}). The model runs on ``device`` in ``model_dtype``
    (default: the CPU, float32)."""
    run_device, run_dtype = placement(device, model_dtype)
    pairs, source = load_pairs(pairs_source)
    if len(pairs) < 2:
        raise NeurometryError(
            f"{pairs_source} holds {len(pairs)} pair; a steering vector needs at least 2 pairs, one JSON object "
            "per line with 'positive' and 'negative' prompts"
        )
    train = train if train is not None else max(2, (len(pairs) * 2) // 3)
    if not 2 <= train <= len(pairs):
        raise NeurometryError(f"--train must be between 2 and {len(pairs)} pairs, got {train}")
    model = load_model(model_spec, device=run_device, dtype=run_dtype)
    used = pairs[:train]
    vector = build_vector(model, [p["positive"] for p in used], [p["negative"] for p in used], point,
                          method=method, position=position)
    path = save_vector(out, vector, model=model_spec, point=point, method=method, position=position, pairs=source,
                       train_pairs=train, **ran_on(model))
    return path, vector, {"train_pairs": train, "held_out_pairs": len(pairs) - train}


def build_from_store_groups(
    model_spec: str, store_path: str | Path, point: str, label: str | None, positive: str | None,
    out: str | Path, *, run: str | None = None, method: str = "mean_diff",
) -> tuple[Path, np.ndarray, dict[str, Any]]:
    """Two labelled groups of a store: the mean of the ``positive`` rows of ``label`` minus the rest's,
    saved to ``out``; returns (path, vector, {run})."""
    if label is None or positive is None:
        raise NeurometryError("building from a store needs --label COLUMN and --positive VALUE")
    if method != "mean_diff":
        raise NeurometryError("a vector from store groups is a mean difference; use --method mean_diff")
    store = open_store(store_path)
    if run is None:
        runs = [r.run_id for r in store.runs()]
        if len(runs) != 1:
            raise NeurometryError(f"{store_path} holds runs {', '.join(runs)}; choose one with --run")
        run = runs[0]
    recorded = store.run_info(run).model
    if recorded != model_spec:
        raise NeurometryError(f"run {run!r} was recorded from {recorded}, not {model_spec}; give that model")
    meta = store.metadata(run)
    # the metadata value written as given (1 for an int column, True for a bool one); unmatched, the string
    # itself, and build_from_store then names the values there are
    values = meta[label].unique().tolist() if label in meta.columns else []
    chosen: Any = next((v for v in values if str(v) == positive), positive)
    vector = build_from_store(store, run, point, label, chosen)
    reduce = store.run_info(run).reduce
    path = save_vector(
        out, vector, model=model_spec, point=point, method="mean_diff",
        position=reduce if reduce != "tokens" else "all", store=str(Path(store_path).resolve()), run=run,
        label=label, positive=str(positive),
    )
    return path, vector, {"run": run}


def vector_for(model_spec: str, vector_path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A saved vector and its metadata, refused when it was built on another model."""
    vector, meta = load_vector(vector_path)
    if meta.get("model") and meta["model"] != model_spec:
        raise NeurometryError(f"{vector_path} was built on {meta['model']}, not {model_spec}; use that model")
    return vector, meta


def evaluate_vector(
    model_spec: str, vector_path: str | Path, alphas: list[float], *, pairs: str | None = None,
    max_pairs: int = 20, store: str | Path | None = None, device: str | torch.device | None = None,
    model_dtype: str | None = None,
) -> tuple[list[SweepRow], dict[str, Any], int]:
    """Sweep alpha on held-out pairs (the vector's own held-out pairs unless ``pairs`` is given): the
    target log-prob shift, KL and perplexity on neutral text, with the model on ``device`` in
    ``model_dtype``; saved in ``store`` when given (with the device and precision). Returns (rows, the
    vector's metadata, pairs used)."""
    run_device, run_dtype = placement(device, model_dtype)
    check_result_store(store)
    vector, meta = vector_for(model_spec, vector_path)
    source = pairs or meta.get("pairs")
    if not source:
        raise NeurometryError(f"{vector_path} records no pairs; give --pairs FILE or a built-in set name")
    loaded, pairs_name = load_pairs(source)
    held_out = loaded[int(meta.get("train_pairs", 0)) :] if pairs is None else loaded
    held_out = [p for p in held_out if "target" in p and "opposite" in p]
    if not held_out:
        raise NeurometryError("no held-out pairs with 'target' and 'opposite' continuations to evaluate on")
    used = held_out[:max_pairs]
    model = load_model(model_spec, device=run_device, dtype=run_dtype)
    rows = sweep(model, vector, meta["point"], alphas, used)
    if store:
        save_sweep(result_store(store), rows, model_spec, meta["point"], Path(vector_path).stem, pairs=pairs_name,
                   n_pairs=len(used), vector_metadata=meta, **ran_on(model))
    return rows, meta, len(used)


def patch_pair(
    model_spec: str, pair: dict[str, str] | None = None, *, example: int | None = None,
    points: list[str] | None = None, heads: bool = True, store: str | Path | None = None,
    device: str | torch.device | None = None, model_dtype: str | None = None,
) -> tuple[PatchResult, dict[str, str]]:
    """Activation patching of one prompt pair (``clean``, ``corrupted``, ``correct``, ``wrong``), or of shipped
    factual pair number ``example``, with the model on ``device`` in ``model_dtype``; saved in ``store`` when
    given (with the device and precision). Returns (result, the pair)."""
    run_device, run_dtype = placement(device, model_dtype)
    check_result_store(store)
    if example is not None:
        examples = factual_pairs()
        if not 0 <= example < len(examples):
            raise NeurometryError(f"--example must be 0..{len(examples) - 1} (the shipped factual pairs)")
        pair = examples[example]
    if pair is None or None in pair.values():
        raise NeurometryError("give --clean, --corrupted, --correct and --wrong, or --example N")
    model = load_model(model_spec, device=run_device, dtype=run_dtype)
    result = patch_residual(model, pair["clean"], pair["corrupted"], pair["correct"], pair["wrong"],
                            points=points, heads=heads)
    if store:
        save_patching(result_store(store), result, model_spec, **ran_on(model))
    return result, pair


def diff_models(
    base_spec: str, finetuned: str, *, texts: str | Path | None = None, points: list[str] | None = None,
    lens_points: list[str] | None = None, first_k: int = 5, skip_first: int = 0, top_k: int = 10,
    store: str | Path | None = None, device: str | torch.device | None = None, model_dtype: str | None = None,
) -> tuple[DiffResult, str]:
    """Model diffing: the mean activation difference of ``finetuned`` from the base over unrelated texts
    (a file with one per line, default the built-in neutral sentences) and its logit lens; saved in
    ``store`` when given. Returns the result and the finetuned model's name in the catalog (a weights file
    by its absolute path, so the name means the same file from any folder). Both models run on ``device``
    in ``model_dtype`` (default: the CPU, float32)."""
    run_device, run_dtype = placement(device, model_dtype)
    check_result_store(store)
    if texts:
        path = Path(texts)
        if not path.is_file():
            raise NeurometryError(f"no file {path}; give a text file with one text per line")
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        texts_name = str(path.resolve())
    else:
        lines, texts_name = neutral_texts(20), NEUTRAL
    # first: a broken weights file fails before the base loads
    tuned = load_finetuned(base_spec, finetuned, run_device, run_dtype)
    base = load_model(base_spec, device=run_device, dtype=run_dtype)
    differences = mean_activation_difference(base, tuned, lines, points=points, first_k=first_k, skip_first=skip_first)
    lens = {
        name: difference_lens(base, diff, name, top_k=top_k)
        for name, diff in differences.items()
        if diff.any() and (lens_points is None or name in lens_points)  # a zero difference has no lens
    }
    n_positions = count_positions(base, lines, first_k, skip_first)
    result = DiffResult(differences, first_k, n_positions, skip_first, lens)
    weights = Path(finetuned)
    name = str(weights.resolve()) if weights.suffix == ".safetensors" else finetuned
    if store:
        save_diff(result_store(store), result, base_spec, name, texts=texts_name, **ran_on(base))
    return result, name
