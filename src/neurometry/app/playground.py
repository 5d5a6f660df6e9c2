"""The steering playground: one model and a few steering vectors, generating steered and unsteered text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError

MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 100
MAX_ABS_ALPHA = 1000.0


@dataclass(frozen=True)
class Vector:
    name: str
    direction: np.ndarray  # (d,)
    meta: dict[str, Any]


class Playground:
    """A loaded model and the steering vectors the server was started with (chosen by name in requests,
    so a request never names a file)."""

    def __init__(self, model: str, vector_paths: list[str | Path]):
        from neurometry.models import load_model
        from neurometry.steer import load_vector

        if not vector_paths:
            raise NeurometryError("the playground needs at least one --vector V.safetensors (from `steer build`)")
        vectors: dict[str, Vector] = {}
        for path in map(Path, vector_paths):
            if not path.is_file():
                raise NeurometryError(f"no vector file {path}; build one with `neurometry steer build`")
            direction, meta = load_vector(path)
            if meta.get("model") and meta["model"] != model:
                raise NeurometryError(f"{path} was built on {meta['model']}, not {model}; serve with --model {meta['model']}")
            if "point" not in meta:
                raise NeurometryError(f"{path} does not say which point it steers; rebuild it with `neurometry steer build`")
            vectors[path.stem] = Vector(path.stem, direction, meta)
        self.model_name = model
        self.model = load_model(model)
        self.vectors = vectors
        self.lock = Lock()  # one generation at a time: the hooks are installed on the shared model

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "vectors": [
                {"name": v.name, "point": v.meta["point"], "method": v.meta.get("method"),
                 "norm": float(np.linalg.norm(v.direction)), "pairs": v.meta.get("pairs")}
                for v in self.vectors.values()
            ],
        }

    def generate(self, vector: str, alpha: float, prompt: str, max_new_tokens: int = 30) -> dict[str, Any]:
        """Greedy continuations of ``prompt`` without and with ``alpha`` times the vector added at its point."""
        from neurometry.steer import generations

        if vector not in self.vectors:
            raise NeurometryError(f"no vector {vector!r}; this server has {', '.join(self.vectors)}")
        if not prompt.strip():
            raise NeurometryError("type a prompt to continue")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise NeurometryError(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
        if not math.isfinite(alpha) or abs(alpha) > MAX_ABS_ALPHA:
            raise NeurometryError(f"alpha must be a finite number within ±{MAX_ABS_ALPHA:g}")
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise NeurometryError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")
        chosen = self.vectors[vector]
        with self.lock:
            (row,) = generations(self.model, chosen.direction, chosen.meta["point"], alpha, [prompt], max_new_tokens)
        return {"vector": vector, "point": chosen.meta["point"], "alpha": alpha, **row}
