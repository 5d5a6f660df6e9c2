"""Logit lens: read each layer's residual stream as if it were the last one.

nostalgebraist (2020), "interpreting GPT: the logit lens": the residual stream of a decoder at
layer i, passed through the model's final normalisation and unembedding, gives a next-token
distribution; watching it across depth shows when the model's answer appears. For a model whose
last block output is ``resid.{L-1}``, the lens at that point is exactly the model's own output
(HF applies ``final_norm`` then ``lm_head`` to it), which the tests check.

The final norm and the unembedding are found generically: the ``final_norm`` hook point of the
model's layout (``model.norm`` for Llama, ``transformer.ln_f`` for GPT-2) and the HF output
embeddings (``lm_head``), so any family in ``neurometry.models.layouts`` with an LM head works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import capture, decode_tokens, encode_prompt, single_token_id, unembedding
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint
from neurometry.steer.precision import check_finite, wide


@dataclass
class LensResult:
    """What the logit lens reads at one position of one prompt.

    Attributes:
        points: hook point names, in depth order (P of them).
        top_tokens: per point, the ``top_k`` most probable next tokens (decoded strings), best first.
        top_probs: (P, top_k) their probabilities.
        target_rank: (P,) rank of the target token at each point (0 = most probable), or None.
        target_prob: (P,) probability of the target token at each point, or None.
        target: the target string, or None.
        position: the (non-negative) token position read.
        tokens: the prompt's tokens (decoded strings, special tokens included).
    """

    points: list[str]
    top_tokens: list[list[str]]
    top_probs: np.ndarray
    target_rank: np.ndarray | None = None
    target_prob: np.ndarray | None = None
    target: str | None = None
    position: int = -1
    tokens: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: one record per point, plus the prompt's tokens and the position."""
        rows = []
        for i, name in enumerate(self.points):
            row: dict[str, Any] = {
                "point": name,
                "top_tokens": list(self.top_tokens[i]),
                "top_probs": [float(p) for p in self.top_probs[i]],
            }
            if self.target_rank is not None and self.target_prob is not None:
                row["target_rank"] = int(self.target_rank[i])
                row["target_prob"] = float(self.target_prob[i])
            rows.append(row)
        return {"tokens": list(self.tokens), "position": self.position, "target": self.target, "points": rows}


def _lens_points(model: LoadedModel, points: list[str] | str | None) -> list[HookPoint]:
    if points is None:
        points = ["embed", "resid.*"]
    chosen = model.resolve(points)
    bad = [p.name for p in chosen if p.kind != "tokens" or p.name == "logits"]
    if bad:
        raise NeurometryError(
            f"the logit lens reads residual-stream points (embed, resid.*), not {', '.join(bad)}; "
            "pick points whose width is the model's hidden size"
        )
    return chosen


def lens_logits(
    model: LoadedModel, prompt: str, points: list[str] | str | None = None, position: int = -1
) -> tuple[list[str], torch.Tensor, list[str], int]:
    """Lens logits of every point at one position.

    Returns ``(point names, logits (P, vocab), prompt tokens, position)``: row i is
    ``lm_head(final_norm(h_i))`` for the point's activation h_i (d,) at ``position`` (negative
    counts from the end); a ``final_norm`` point is unembedded without normalising it again. The
    logits are in the model's dtype, on its device.
    """
    chosen = _lens_points(model, points)
    batch = encode_prompt(model, prompt)
    n_tok = batch["input_ids"].shape[1]
    if not -n_tok <= position < n_tok:
        raise NeurometryError(
            f"position {position} is outside the prompt's {n_tok} tokens; use -{n_tok}..{n_tok - 1}"
        )
    pos = position % n_tok
    _, cached = capture(model, inputs_to(batch, model.device), chosen)
    norm, head = unembedding(model)
    width = head.weight.shape[-1] if hasattr(head, "weight") else None
    rows = []
    with torch.no_grad():
        for p in chosen:
            h = cached[p.name]
            if h.ndim != 3 or (width is not None and h.shape[-1] != width):
                raise NeurometryError(
                    f"point {p.name!r} has shape {tuple(h.shape)}, not (batch, tokens, {width}); "
                    "the logit lens reads residual-stream points (embed, resid.*)"
                )
            h = h[:, pos : pos + 1]  # keep (1, 1, d): the norm and head see the shape they see in the model
            if norm is not None and p.name != "final_norm":
                h = norm(h)
            rows.append(head(h)[0, 0])
    logits = torch.stack(rows)
    check_finite(logits, model, "the lens logits")
    return [p.name for p in chosen], logits, decode_tokens(model, batch["input_ids"][0]), pos


def logit_lens(
    model: LoadedModel,
    prompt: str,
    points: list[str] | str | None = None,
    position: int = -1,
    top_k: int = 5,
    target: str | None = None,
) -> LensResult:
    """The logit lens (nostalgebraist 2020) of one prompt at one position.

    Args:
        model: a causal language model (``LoadedModel`` with a tokenizer and an LM head).
        prompt: the text; tokenised as the tokenizer does by default (special tokens included).
        points: point names or globs; default ``embed`` and every ``resid.*``.
        position: token position to read (default the last, which predicts the next token).
        top_k: how many most probable tokens to report per point.
        target: a string that encodes to exactly one token; its rank (0 = top) and
            probability are reported per point.

    Returns a ``LensResult``; probabilities are a float64 softmax of the lens logits (widened from the
    model's dtype), ranks compare the logits as the model gave them.
    """
    if top_k < 1:
        raise NeurometryError(f"top_k must be at least 1, not {top_k}")
    target_id = single_token_id(model, target) if target is not None else None
    names, logits, tokens, pos = lens_logits(model, prompt, points, position)
    logp = torch.log_softmax(wide(logits), dim=-1)
    k = min(top_k, logp.shape[-1])
    top = torch.topk(logp, k, dim=-1)
    top_tokens = [decode_tokens(model, row) for row in top.indices]
    result = LensResult(
        points=names,
        top_tokens=top_tokens,
        top_probs=top.values.exp().cpu().numpy(),
        target=target,
        position=pos,
        tokens=tokens,
    )
    if target_id is not None:
        own = logits[:, target_id : target_id + 1]
        # rank = how many tokens score strictly higher (ties share the better rank)
        result.target_rank = (logits > own).sum(dim=-1).cpu().numpy().astype(np.int64)
        result.target_prob = logp[:, target_id].exp().cpu().numpy()
    return result
