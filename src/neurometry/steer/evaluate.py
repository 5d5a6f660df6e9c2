"""Judge a steering vector without a human: sweep its strength and measure what it does.

For each alpha (with the vector added at every position of ``point``, :func:`~neurometry.steer.apply`):

- ``target_logprob_shift``: on held-out contrastive prompts (both sides of each pair), the change in
  log p(target) - log p(opposite) of the next token against the unsteered model (alpha = 0 gives 0);
  positive when the vector pushes towards the target continuation.
- ``kl``: KL(p_unsteered || p_steered) of the next-token distributions on neutral text, averaged over
  every position of every text: how much the vector disturbs the model where it should not matter.
- ``perplexity``: the steered model's perplexity on the same neutral text (teacher forcing).

``generations`` gives a side-by-side table of unsteered and steered greedy continuations.
:func:`save_sweep` keeps a sweep (and, optionally, its generations) in a store's catalog as result kind
``steer_sweep``; :func:`sweep_rows` reads it back. Comparable to the evaluations of Turner et al. 2023 (ActAdd) and Rimsky et al. 2024 (CAA).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import require_causal
from neurometry.models.loaded import LoadedModel
from neurometry.steer.interventions import apply
from neurometry.steer.precision import check_finite, ran, wide
from neurometry.store.results import STEER_SWEEP, Result, set_name

STEERING_SETS = ("sentiment", "formality", "english_french")
"""Catalog result kind of a saved sweep (:func:`save_sweep`)."""
# vector-file keys that say nothing about the vector itself (the model and point are the record's run and point)
_FILE_KEYS = ("format", "version", "tensor", "model", "point")


def steering_pairs(name: str) -> list[dict[str, str]]:
    """A contrastive set shipped in the package: rows with positive, negative, target, opposite."""
    if name not in STEERING_SETS:
        raise NeurometryError(f"no built-in steering set {name!r}; built-in: {', '.join(STEERING_SETS)}")
    path = Path(str(resources.files("neurometry.data") / f"steer_{name}.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def neutral_texts(count: int = 40) -> list[str]:
    """Plain declarative sentences without sentiment or register (the package's tense and number sets)."""
    texts = []
    for name in ("probe_tense.jsonl", "probe_number.jsonl"):
        path = Path(str(resources.files("neurometry.data") / name))
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines()[: count // 2]]
    return texts


@dataclass(frozen=True)
class SweepRow:
    alpha: float
    target_logprob_shift: float
    kl: float
    perplexity: float


def _token_id(model: LoadedModel, text: str) -> int:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise NeurometryError(f"continuation {text!r} is {len(ids)} tokens; give single-token continuations")
    return int(ids[0])


def _logits(model: LoadedModel, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, vocab) logits of one text in the model's dtype and its (T,) token ids, both on the model's device."""
    batch = inputs_to(dict(model.tokenizer(text, return_tensors="pt")), model.device)
    logits = model.module(**batch).logits[0]
    check_finite(logits, model, f"the logits of {text[:40]!r}")
    return logits, batch["input_ids"][0]


def _next_token_logprobs(model: LoadedModel, prompts: Sequence[str]) -> torch.Tensor:
    """(n, vocab) log-probabilities of the token after each prompt (prompts run one by one: no padding)."""
    with torch.inference_mode():
        return torch.stack([torch.log_softmax(wide(_logits(model, prompt)[0][-1]), dim=-1) for prompt in prompts])


def _text_logprobs(model: LoadedModel, texts: Sequence[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per text, (length - 1, vocab) log-probabilities of each next token and the (length - 1,) ids of those
    tokens."""
    out = []
    with torch.inference_mode():
        for text in texts:
            logits, ids = _logits(model, text)
            out.append((torch.log_softmax(wide(logits[:-1]), dim=-1), ids[1:]))
    return out


def sweep(
    model: LoadedModel,
    vector: Any,
    point: str,
    alphas: Sequence[float],
    pairs: Sequence[dict[str, str]],
    neutral: Sequence[str] | None = None,
) -> list[SweepRow]:
    """One :class:`SweepRow` per alpha. ``pairs``: held-out rows with positive, negative, target, opposite
    (not the ones the vector was built from); ``neutral``: texts for KL and perplexity (default
    :func:`neutral_texts`)."""
    require_causal(model, "steering sweep (next-token preferences)")
    if not pairs:
        raise NeurometryError("no held-out pairs to evaluate on; give pairs the vector was not built from")
    neutral = list(neutral) if neutral is not None else neutral_texts()
    prompts = [p[side] for p in pairs for side in ("positive", "negative")]
    device = model.device
    target = torch.tensor([_token_id(model, p["target"]) for p in pairs for _ in range(2)], device=device)
    opposite = torch.tensor([_token_id(model, p["opposite"]) for p in pairs for _ in range(2)], device=device)
    rows_index = torch.arange(len(prompts), device=device)

    def preference(logprobs: torch.Tensor) -> torch.Tensor:
        return logprobs[rows_index, target] - logprobs[rows_index, opposite]

    base_preference = preference(_next_token_logprobs(model, prompts))
    base_text = _text_logprobs(model, neutral)
    rows = []
    for alpha in alphas:
        with apply(model, vector, point, float(alpha)):
            shift = float((preference(_next_token_logprobs(model, prompts)) - base_preference).mean())
            steered_text = _text_logprobs(model, neutral)
        kl_terms, nll, count = [], 0.0, 0
        for (base, ids), (steered, _) in zip(base_text, steered_text, strict=True):
            kl_terms.append((base.exp() * (base - steered)).sum(-1))
            nll -= float(steered[torch.arange(len(ids), device=device), ids].sum())
            count += len(ids)
        kl = float(torch.cat(kl_terms).mean())
        rows.append(SweepRow(float(alpha), shift, max(kl, 0.0), float(np.exp(nll / count))))
    return rows


def generations(
    model: LoadedModel,
    vector: Any,
    point: str,
    alpha: float,
    prompts: Sequence[str],
    max_new_tokens: int = 20,
) -> list[dict[str, str]]:
    """Greedy continuations of each prompt, unsteered and steered: ``[{prompt, unsteered, steered}]``."""
    require_causal(model, "steered generations")
    table = []
    for prompt in prompts:
        batch = inputs_to(dict(model.tokenizer(prompt, return_tensors="pt")), model.device)
        batch.pop("token_type_ids", None)  # BERT-style tokenizers add them; causal LMs' generate refuses them
        kwargs = dict(
            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=model.tokenizer.eos_token_id
        )
        with torch.inference_mode():
            plain = model.module.generate(**batch, **kwargs)
            with apply(model, vector, point, alpha):
                steered = model.module.generate(**batch, **kwargs)
        n = batch["input_ids"].shape[1]
        decode = model.tokenizer.decode
        table.append(
            {
                "prompt": prompt,
                "unsteered": decode(plain[0, n:], skip_special_tokens=True),
                "steered": decode(steered[0, n:], skip_special_tokens=True),
            }
        )
    return table




def sweep_document(rows: Sequence[SweepRow]) -> dict[str, Any]:
    """``{"results": [{"alpha", "target_logprob_shift", "kl", "perplexity"}, ...]}``."""
    return {"results": [asdict(r) for r in rows]}


def save_sweep(
    store: Any,
    rows: Sequence[SweepRow],
    model: str,
    point: str,
    vector_name: str,
    *,
    pairs: str | None = None,
    n_pairs: int | None = None,
    vector_metadata: dict[str, Any] | None = None,
    generations: Sequence[dict[str, str]] | None = None,
    generation_alpha: float | None = None,
    device: str | None = None,
    model_dtype: str | None = None,
) -> list[dict[str, Any]]:
    """Save a sweep in ``store``'s catalog (kind ``steer_sweep``, one transaction); returns the records.

    One record per row: run_id = ``model`` (the name the user gave; it need not be a recorded run),
    point = the vector's point, name = ``vector_name`` (the vector file's stem), params = ``{"alpha",
    "pairs"}`` (``pairs``: the set or file evaluated on), value = ``target_logprob_shift``, extra = the
    other :class:`SweepRow` fields (``kl``, ``perplexity``), ``n_pairs`` and ``vector`` (the vector file's
    metadata: method, norm, train pairs, ...). ``generations`` (``[{prompt, unsteered, steered}]`` from
    :func:`generations`) go into the extra of the row whose alpha is ``generation_alpha``; ``device`` and
    ``model_dtype`` (where and in what precision the model ran) into every row's extra when given. Saving
    the same vector, point and pairs again replaces the rows of the same alphas.
    """
    if generations is not None and generation_alpha not in {r.alpha for r in rows}:
        alphas = ", ".join(f"{r.alpha:g}" for r in rows)
        raise NeurometryError(
            f"generation alpha {generation_alpha} is not one of the swept alphas ({alphas}); sweep it too"
        )
    vector = {k: v for k, v in (vector_metadata or {}).items() if k not in _FILE_KEYS}
    others = [f.name for f in fields(SweepRow) if f.name not in ("alpha", "target_logprob_shift")]
    records = []
    for row in rows:
        extra: dict[str, Any] = {name: getattr(row, name) for name in others}
        extra.update(n_pairs=n_pairs, vector=vector, **ran(device, model_dtype))
        if generations is not None and row.alpha == generation_alpha:
            extra["generations"] = [dict(g) for g in generations]
        records.append(
            Result(point, vector_name, row.target_logprob_shift, params={"alpha": row.alpha, "pairs": pairs},
                   extra=extra, result_set=set_name(vector=vector_name, pairs=pairs))
        )
    STEER_SWEEP.save(store, model, records)
    return records


def sweep_rows(results: Any) -> tuple[list[SweepRow], dict[str, Any] | None]:
    """Read back one sweep saved by :func:`save_sweep`: ``results`` holds its catalog rows with params and
    extra decoded (as :meth:`neurometry.store.results.ResultKind.load` gives them). Returns the rows in
    increasing alpha and ``{"alpha", "generations"}`` when generations were saved, else None."""
    others = [f.name for f in fields(SweepRow) if f.name not in ("alpha", "target_logprob_shift")]
    rows, generated = [], None
    for r in sorted(results.itertuples(), key=lambda r: r.params["alpha"]):
        rows.append(
            SweepRow(
                alpha=float(r.params["alpha"]),
                target_logprob_shift=float(r.value),
                **{name: float(r.extra[name]) for name in others},
            )
        )
        if r.extra.get("generations"):
            generated = {"alpha": float(r.params["alpha"]), "generations": r.extra["generations"]}
    return rows, generated
