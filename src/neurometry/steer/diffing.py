"""Model diffing: read what a narrow finetune did from activation differences on unrelated text.

Minder et al. (2025), "Narrow Finetuning Leaves Clearly Readable Traces in Activation Differences":
for a base model and its finetuned copy (same architecture and tokenizer), the mean difference
``finetuned - base`` of the residual stream over the first few tokens of text that has nothing to do
with the finetuning topic already points at the topic. Read through the base model's logit lens it
surfaces the topic's tokens; added to the base model's residual stream it steers generations toward
the topic.

- :func:`mean_activation_difference`: per point, the mean of (finetuned - base) over texts and their
  first ``first_k`` token positions.
- :func:`difference_lens`: one difference vector through the base model's final norm and unembedding.
- :func:`steer_with_difference`: greedy generations of the base model with and without the difference
  added at one point (:func:`neurometry.steer.apply`).
- :func:`save_diff` keeps a :class:`DiffResult` (norms and lens tokens per point, and optionally steered
  generations) in a store's catalog as result kind ``diff``; :func:`diff_document` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import capture, decode_tokens, require_text, unembedding
from neurometry.models.loaded import LoadedModel
from neurometry.steer.evaluate import generations
from neurometry.steer.precision import check_finite, ran, wide
from neurometry.store.results import DIFF, Result, set_name

"""Catalog result kind of saved model diffing (:func:`save_diff`)."""
NEUTRAL = "neutral"
"""The ``texts`` name of the built-in neutral sentences (``neutral_texts(20)``) in saved diffing results."""


@dataclass
class DiffResult:
    """Mean activation differences of a finetuned model against its base.

    Attributes:
        differences: point name -> (d,) float64 mean of (finetuned - base) activation.
        first_k: positions below this index were averaged.
        skip_first: positions below this index were left out.
        n_positions: how many (text, position) pairs entered each mean.
        lens: point name -> ``difference_lens`` top tokens ``[(token, probability), ...]``, if read.
    """

    differences: dict[str, np.ndarray]
    first_k: int
    n_positions: int
    skip_first: int = 0
    lens: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: per point the difference's norm and, when read, its lens tokens."""
        rows = []
        for name, diff in self.differences.items():
            row: dict[str, Any] = {"point": name, "norm": float(np.linalg.norm(diff))}
            if name in self.lens:
                row["lens"] = [{"token": t, "prob": float(p)} for t, p in self.lens[name]]
            rows.append(row)
        return {
            "first_k": self.first_k,
            "skip_first": self.skip_first,
            "n_positions": self.n_positions,
            "points": rows,
        }


def _describe(model: LoadedModel) -> dict[str, Any]:
    cfg = getattr(model.module, "config", None)
    _, head = unembedding(model)
    vocab, hidden = tuple(head.weight.shape) if hasattr(head, "weight") else (None, None)
    return {
        "tokenizer vocabulary size": len(model.tokenizer),
        "vocabulary size": vocab,
        "hidden size": hidden,
        "number of layers": getattr(cfg, "num_hidden_layers", None),
        "hook points": sorted(model.points),
    }


def check_same_architecture(base: LoadedModel, finetuned: LoadedModel) -> None:
    """Raise ``NeurometryError`` unless the two models share tokenizer, vocabulary, width and depth."""
    require_text(base)
    require_text(finetuned)
    a, b = _describe(base), _describe(finetuned)
    for key in a:
        if a[key] != b[key]:
            shown = (a[key], b[key]) if key != "hook points" else (len(a[key]), len(b[key]))
            raise NeurometryError(
                f"base and finetuned models differ in {key} ({shown[0]} vs {shown[1]}); model diffing "
                "needs a finetuned copy of the same base model"
            )
    if base.tokenizer.get_vocab() != finetuned.tokenizer.get_vocab():
        raise NeurometryError(
            "base and finetuned models have different tokenizers; model diffing needs one shared tokenizer"
        )


def _positions(n_tokens_kept: int, skip_first: int) -> int:
    """Positions a text of ``n_tokens_kept`` tokens (already cut at first_k) adds to the mean."""
    return max(0, n_tokens_kept - skip_first)


def count_positions(model: LoadedModel, texts: Sequence[str], first_k: int = 5, skip_first: int = 0) -> int:
    """How many (text, position) pairs :func:`mean_activation_difference` averages over these texts."""
    return sum(_positions(min(first_k, len(model.tokenizer(t)["input_ids"])), skip_first) for t in texts)


def mean_activation_difference(
    base: LoadedModel,
    finetuned: LoadedModel,
    texts: Sequence[str],
    points: list[str] | str | None = None,
    first_k: int = 5,
    skip_first: int = 0,
) -> dict[str, np.ndarray]:
    """Mean of (finetuned - base) activations over texts and their first ``first_k`` tokens.

    Minder et al. (2025). Each text is tokenised once with the (shared) tokenizer, special tokens as
    the tokenizer adds them, and run alone through both models (no padding). Positions
    ``skip_first .. min(first_k, n_tokens) - 1`` of every text are pooled, each (text, position) pair
    weighted equally; a text shorter than ``first_k`` tokens contributes the positions it has.

    ``skip_first=1`` drops the first position: in many LMs (SmolLM2 included, from its middle layers
    on) the first token is an attention sink with residual norms ten times the others', and its
    difference then dominates the mean (see ``scripts/finetune_narrow.py``).

    Args:
        base, finetuned: two causal LMs of one architecture and tokenizer (checked: vocabulary,
            hidden size, number of layers, hook points, tokenizer vocabulary).
        texts: unrelated text (not about the finetuning topic), at least one.
        points: point names or globs with (batch, tokens, d) tensors; default every ``resid.*``.
        first_k: positions below this index are averaged (at least 1).
        skip_first: positions below this index are left out (0 <= skip_first < first_k).

    Both models run where they are, each on its own device in its own dtype (give them the same ones);
    the differences are taken and averaged in float64 (float32 on MPS).

    Returns ``{point name: (d,) float64 mean difference}`` in the models' point order.
    """
    check_same_architecture(base, finetuned)
    if first_k < 1:
        raise NeurometryError(f"first_k must be at least 1, not {first_k}")
    if not 0 <= skip_first < first_k:
        raise NeurometryError(f"skip_first must be in 0..{first_k - 1} (below first_k), not {skip_first}")
    texts = list(texts)
    if not texts:
        raise NeurometryError("texts is empty; give at least one unrelated text")
    chosen = base.resolve(points if points is not None else "resid.*")
    bad = [p.name for p in chosen if p.kind != "tokens"]
    if bad:
        raise NeurometryError(
            f"points {', '.join(bad)} are not (batch, tokens, d) points; pick resid.*, attn_out.* or mlp_act.*"
        )
    names = [p.name for p in chosen]
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for text in texts:
        batch = dict(base.tokenizer([text], return_tensors="pt"))
        n = min(first_k, batch["input_ids"].shape[1])
        if n == 0:
            raise NeurometryError(f"text {text!r} encodes to no tokens; drop empty texts")
        _, got_base = capture(base, inputs_to(batch, base.device), chosen)
        _, got_fine = capture(finetuned, inputs_to(batch, finetuned.device), finetuned.resolve(names))
        for name in names:
            # widened before subtracting: the difference of two nearby activations; on the base's device
            fine = got_fine[name][0, skip_first:n].to(base.device)
            diff = wide(fine) - wide(got_base[name][0, skip_first:n])
            sums[name] = sums.get(name, 0) + diff.sum(dim=0)
        count += _positions(n, skip_first)
    if count == 0:
        raise NeurometryError(
            f"no text has more than skip_first={skip_first} tokens; give longer texts or lower skip_first"
        )
    means = {name: (sums[name] / count).cpu().double() for name in names}
    for name, mean in means.items():
        check_finite(mean, base, f"the activation difference at {name}")
    return {name: mean.numpy() for name, mean in means.items()}


def difference_lens(
    base: LoadedModel, difference: Any, point: str, top_k: int = 20, norm: float | None = None
) -> list[tuple[str, float]]:
    """The logit lens of a difference vector: top tokens of ``lm_head(final_norm(c * difference))``.

    The difference is rescaled to Euclidean norm ``norm`` before the final norm; by default
    ``sqrt(d)``, i.e. unit root-mean-square, the scale RMSNorm normalises to. RMSNorm and LayerNorm
    are invariant to the scale of their input apart from their small epsilon, so the ranking hardly
    depends on ``norm`` as long as it is far above sqrt(eps * d); give the typical residual norm at
    ``point`` to read it exactly as a residual of that size. ``point`` is only checked to exist and
    to have the vector's width (the lens reads every residual point the same way).

    Returns ``[(token, probability), ...]``, the ``top_k`` most probable tokens (float64 softmax), best first.
    """
    require_text(base)
    if top_k < 1:
        raise NeurometryError(f"top_k must be at least 1, not {top_k}")
    found = base.resolve(point)
    if len(found) != 1:
        raise NeurometryError(f"{point!r} names {len(found)} points; give one point (no glob)")
    vec = np.asarray(difference, dtype=np.float64)
    final_norm, head = unembedding(base)
    width = head.weight.shape[-1]
    if vec.ndim != 1 or vec.shape[0] != width:
        raise NeurometryError(
            f"the difference has shape {vec.shape}, not ({width},); take it at a residual point of this model"
        )
    if not np.isfinite(vec).all():
        raise NeurometryError(f"the difference contains {int((~np.isfinite(vec)).sum())} NaN or Inf values")
    length = float(np.linalg.norm(vec))
    if length == 0.0:
        raise NeurometryError(f"the difference at {point} is all zeros; the models do not differ there")
    scale = float(np.sqrt(width)) if norm is None else float(norm)
    if not np.isfinite(scale) or scale <= 0:
        raise NeurometryError(f"norm must be a positive number, not {norm!r}")
    h = torch.as_tensor(vec * (scale / length), dtype=head.weight.dtype, device=head.weight.device).reshape(1, 1, -1)
    with torch.no_grad():
        if final_norm is not None:
            h = final_norm(h)
        logp = torch.log_softmax(wide(head(h)[0, 0]), dim=-1)
    top = torch.topk(logp, min(top_k, logp.shape[0]))
    tokens = decode_tokens(base, top.indices)
    return [(t, float(p)) for t, p in zip(tokens, top.values.exp().tolist(), strict=True)]


def steer_with_difference(
    base: LoadedModel,
    difference: Any,
    point: str,
    alpha: float,
    prompts: Sequence[str],
    max_new_tokens: int = 20,
) -> list[dict[str, str]]:
    """Greedy generations of ``base`` without and with ``alpha * difference`` added at ``point``.

    The difference is used at its own scale (a mean activation difference is already in residual
    units); returns ``[{prompt, unsteered, steered}]`` as :func:`neurometry.steer.generations`.
    """
    return generations(base, np.asarray(difference, dtype=np.float64), point, alpha, prompts, max_new_tokens)


def lens_text(lens: Sequence[dict[str, Any]], top: int | None = None) -> str:
    """``"' z' 0.99, 'or' 0.00, ..."``: the first ``top`` (default all) entries of a lens as
    :meth:`DiffResult.to_dict` lists them (``[{"token", "prob"}, ...]``), the way commands print it."""
    return ", ".join(f"{t['token']!r} {t['prob']:.2f}" for t in list(lens)[:top])


def save_diff(
    store: Any,
    result: DiffResult,
    base: str,
    finetuned: str,
    *,
    texts: str = NEUTRAL,
    generations: Sequence[dict[str, str]] | None = None,
    generation_point: str | None = None,
    generation_alpha: float | None = None,
    device: str | None = None,
    model_dtype: str | None = None,
) -> list[dict[str, Any]]:
    """Save a diffing result in ``store``'s catalog (kind ``diff``, one transaction); returns the records.

    One record per point of ``result.differences``: run_id = ``base`` (the name the user gave), point =
    the point, name = ``finetuned`` (the finetuned model as given, a weights file by its absolute path),
    params = ``{"first_k", "skip_first", "texts"}`` (``texts``: :data:`NEUTRAL` or the texts file), value =
    the difference's Euclidean norm, extra = ``n_positions``, the point's index in ``result.differences``
    and, when it was read, its ``lens`` (``[{"token", "prob"}, ...]``). ``generations`` (``[{prompt,
    unsteered, steered}]`` from :func:`steer_with_difference`) go into the extra of ``generation_point``'s
    record with ``generation_alpha``. ``device`` and ``model_dtype`` (where and in what precision the models
    ran, e.g. ``"cuda:0"``, ``"bfloat16"``) go into every record's extra when given; they are not settings
    of the result set, so a rerun on another device replaces the records. The difference vectors
    themselves are not saved. Saving the same models, settings and texts again replaces the records of the
    same points.
    """
    if generations is not None and (generation_point not in result.differences or generation_alpha is None):
        raise NeurometryError(
            f"steered generations need generation_point (one of {', '.join(result.differences)}) and "
            "generation_alpha; give the point and alpha they were steered at"
        )
    document = result.to_dict()
    params = {"first_k": result.first_k, "skip_first": result.skip_first, "texts": texts}
    records = []
    for index, row in enumerate(document["points"]):
        extra: dict[str, Any] = {"n_positions": result.n_positions, "order": index, **ran(device, model_dtype)}
        if "lens" in row:
            extra["lens"] = row["lens"]
        if generations is not None and row["point"] == generation_point:
            extra.update(alpha=float(generation_alpha), generations=[dict(g) for g in generations])
        records.append(
            Result(row["point"], finetuned, row["norm"], params=params, extra=extra,
                   result_set=set_name(finetuned=finetuned, **params))
        )
    DIFF.save(store, base, records)
    return records


def diff_document(results: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read back one diffing result saved by :func:`save_diff`: ``results`` holds its catalog rows with
    params and extra decoded (as :meth:`neurometry.store.results.ResultKind.load` gives them, filtered to one
    run, name and params). Returns the document :meth:`DiffResult.to_dict` gave (points in their saved
    order) and ``{"point", "alpha", "generations"}`` when generations were saved, else None."""
    groups = {(r.run_id, r.name, json.dumps(r.params, sort_keys=True)) for r in results.itertuples()}
    if len(groups) != 1:
        raise NeurometryError(
            f"the diffing rows hold {len(groups)} (run, finetuned, settings) combinations, not 1; select one"
        )
    rows = sorted(results.itertuples(), key=lambda r: r.extra["order"])
    points, generated = [], None
    for r in rows:
        point: dict[str, Any] = {"point": r.point, "norm": float(r.value)}
        if "lens" in r.extra:
            point["lens"] = r.extra["lens"]
        points.append(point)
        if "generations" in r.extra:
            generated = {
                "point": r.point, "alpha": float(r.extra["alpha"]), "generations": r.extra["generations"]
            }
    params = rows[0].params
    document = {
        "first_k": params["first_k"],
        "skip_first": params["skip_first"],
        "n_positions": rows[0].extra["n_positions"],
        "points": points,
    }
    return document, generated
