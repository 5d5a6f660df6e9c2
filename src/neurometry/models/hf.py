"""Hugging Face models: load a local folder, or wrap an in-memory ``PreTrainedModel``."""

from __future__ import annotations

import json
import pickle
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.models.layouts import layout_for_model_type, layout_points
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Set a pad token when missing (eos, else unk) and pad on the right; returns the tokenizer."""
    if getattr(tokenizer, "pad_token", None) is None:
        for candidate in ("eos_token", "unk_token", "bos_token"):
            tok = getattr(tokenizer, candidate, None)
            if tok is not None:
                tokenizer.pad_token = tok
                break
        else:
            raise NeurometryError("the tokenizer has no pad, eos or unk token; set tokenizer.pad_token first")
    tokenizer.padding_side = "right"
    return tokenizer


def _generic_points(model: nn.Module) -> dict[str, HookPoint]:
    """Aliases for an HF model of an unknown family: ``resid.i`` on its layer list, ``logits``."""
    points: dict[str, HookPoint] = {}
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if n:
        for path, mod in model.named_modules():
            if isinstance(mod, nn.ModuleList) and len(mod) == n:
                for i in range(n):
                    points[f"resid.{i}"] = HookPoint(f"resid.{i}", f"{path}.{i}", "tokens", index=None)
                break
    if isinstance(getattr(model, "lm_head", None), nn.Module):
        points["logits"] = HookPoint("logits", "lm_head", "tokens")
    return points


def wrap_hf(
    model: nn.Module,
    tokenizer: Any,
    name: str,
    info: dict[str, Any] | None = None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """A ``LoadedModel`` around a text ``PreTrainedModel`` (set to eval, on ``device`` in ``dtype``:
    by default float32 on the CPU)."""
    if tokenizer is None:
        raise NeurometryError(
            f"no tokenizer for {name!r}; set `model.tokenizer = AutoTokenizer.from_pretrained(...)` "
            "or save the tokenizer in the model folder"
        )
    if getattr(model, "hf_device_map", None):  # spread by accelerate: it placed every part already
        model = model.eval()
    else:
        model = model.to(device=device or "cpu", dtype=dtype or torch.float32).eval()
    layout = layout_for_model_type(getattr(model.config, "model_type", None))
    points = layout_points(model, layout) if layout else _generic_points(model)
    return LoadedModel(
        name=name,
        module=model,
        modality="text",
        tokenizer=prepare_tokenizer(tokenizer),
        preprocess=None,
        points=points,
        family=layout.family if layout else None,
        info=dict(info or {}),
    )


def _auto_class(config: Any) -> Any:
    import transformers

    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def load_hf_folder(
    folder: str | Path,
    name: str | None = None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    offload_folder: str | Path | None = None,
) -> LoadedModel:
    """Load a local Hugging Face folder (``config.json``, weights, tokenizer) as a ``LoadedModel``.

    Causal-LM architectures load with their LM head (so ``logits`` is a point); others load
    as the bare ``AutoModel``. The weights load in ``dtype`` (default float32) and move to
    ``device`` (default the CPU).

    ``device_map`` (``"auto"`` or module path -> GPU number, ``"cpu"`` or ``"disk"``) instead spreads the
    model with accelerate, shard by shard, over the GPUs and the CPU (and ``offload_folder`` on disk), so a
    model larger than one GPU, or than memory, still runs; hook points resolve by name as on one device.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise NeurometryError(f"{str(folder)!r} has no config.json; give a Hugging Face model folder")
    import transformers

    t0 = time.perf_counter()
    placed: dict[str, Any] = {}
    if device_map is not None:
        placed = {"device_map": device_map}
        if offload_folder is not None:
            placed["offload_folder"] = str(offload_folder)
    try:
        config = transformers.AutoConfig.from_pretrained(folder)
        model = _auto_class(config).from_pretrained(folder, dtype=dtype or torch.float32, **placed)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    except pickle.UnpicklingError as exc:
        raise NeurometryError(refused_pickle_message(folder, exc)) from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NeurometryError(f"cannot load Hugging Face folder {str(folder)!r}: {first}") from exc
    info = {"source": str(folder), "load_seconds": round(time.perf_counter() - t0, 2)}
    if getattr(model, "hf_device_map", None):
        info["device_map"] = {k: str(v) for k, v in model.hf_device_map.items()}
    return wrap_hf(model, tokenizer, name or str(folder), info, device=device, dtype=dtype)


def is_sharded(folder: str | Path) -> bool:
    """Whether a Hugging Face folder holds its weights in several safetensors shards (with an index)."""
    return (Path(folder) / "model.safetensors.index.json").is_file()


def refused_pickle_message(folder: Path, exc: Exception) -> str:
    """One line for a pickled checkpoint (``pytorch_model.bin``) that torch's safe loader refused: which file,
    why (unpickling what it holds could run code), and how to convert it to safetensors."""
    weights = sorted(p.name for p in folder.glob("*.bin")) or ["pytorch_model.bin"]
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    held = (f"it refers to {found.group(1)}, which is not on torch's list of safe types" if found
            else "it holds more than plain tensors")
    return (
        f"cannot load Hugging Face folder {str(folder)!r}: torch's safe loader (weights_only=True) refused "
        f"{weights[0]}, a pickle, because {held}, and unpickling it could run code; only if you trust its source, "
        "convert it once to model.safetensors beside config.json (safetensors.torch.save_file of the tensors of "
        "torch.load(path, weights_only=False)); transformers then reads that instead"
    )


def tokenizer_for(model: nn.Module) -> Any | None:
    """The tokenizer of an in-memory HF model: its ``.tokenizer`` attribute, else its folder's."""
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        return tok
    folder = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if folder and Path(folder).is_dir():
        import transformers

        try:
            return transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError):
            return None
    return None
