"""Activation patching: which activations carry the information that decides an answer.

Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT") in the
clean/corrupted form: run a clean prompt ("The Eiffel Tower is in the city of" -> " Paris") and a
corrupted one of the same token length ("The Colosseum is in the city of" -> " Rome"), then rerun
the corrupted prompt with one activation (one hook point at one position) replaced by its value
in the clean run, and measure how far the answer moves back towards the clean one.

The metric is the normalised logit difference (Heimersheim & Nanda 2024, "How to use and
interpret activation patching"): with LD = logit(correct) - logit(wrong) at the last position,

    score = (LD_patched - LD_corrupted) / (LD_clean - LD_corrupted),

0 when the patch changes nothing, 1 when it restores the clean answer's margin. It is linear in
the logits, so it is not saturated the way probabilities are.

Exact properties a causal decoder gives (and the tests check): a position before the first token
where the prompts differ has identical activations in both runs at every layer, so patching it
scores 0; the last block's output at the last position determines the last logits by itself
(final norm and unembedding act per position), so patching it scores 1, and patching any other
position of the last block scores 0.

Per-head patching replaces one attention head's output, the head's slice of the input of the
attention output projection (``o_proj`` in Llama, ``c_proj`` in GPT-2, whose input is the heads'
outputs concatenated), at every position at once.

:func:`save_patching` keeps a result in a store's catalog as result kind ``patch``, one record per
patched point; :func:`patch_result` rebuilds the :class:`PatchResult` from those records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import (
    capture,
    decode_tokens,
    encode_prompt,
    hooked,
    require_causal,
    single_token_id,
)
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint
from neurometry.steer.precision import check_finite, ran
from neurometry.store.results import PATCH, Result

"""Catalog result kind of saved activation patching (:func:`save_patching`)."""
# what every record of one saved result repeats (the pair, its runs and the head scores); the reader
# checks that the records agree on them, so rows of two different patching runs are never mixed
_PAIR_KEYS = ("clean", "corrupted", "correct", "wrong", "clean_ld", "corrupted_ld", "tokens",
              "corrupted_tokens", "positions", "head_layers", "head_scores")


@dataclass
class PatchResult:
    """Normalised logit-difference scores of activation patching.

    Attributes:
        points: patched hook point names, in depth order (P).
        tokens: the clean prompt's tokens (decoded strings), one per position.
        corrupted_tokens: the corrupted prompt's tokens.
        positions: the patched positions (N).
        scores: (P, N) normalised metric per point and position (0 = corrupted, 1 = clean).
        clean_ld: logit(correct) - logit(wrong) at the last position of the clean run.
        corrupted_ld: the same for the corrupted run.
        head_scores: (layers, heads) metric of patching one head's output at every position, or None.
        head_layers: the ``attn_out`` point names the rows of ``head_scores`` belong to.
        clean, corrupted, correct, wrong: the inputs.
    """

    points: list[str]
    tokens: list[str]
    corrupted_tokens: list[str]
    positions: list[int]
    scores: np.ndarray
    clean_ld: float
    corrupted_ld: float
    head_scores: np.ndarray | None = None
    head_layers: list[str] = field(default_factory=list)
    clean: str = ""
    corrupted: str = ""
    correct: str = ""
    wrong: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of everything (arrays as nested lists)."""
        out: dict[str, Any] = {
            "clean": self.clean,
            "corrupted": self.corrupted,
            "correct": self.correct,
            "wrong": self.wrong,
            "clean_ld": float(self.clean_ld),
            "corrupted_ld": float(self.corrupted_ld),
            "tokens": list(self.tokens),
            "corrupted_tokens": list(self.corrupted_tokens),
            "positions": [int(p) for p in self.positions],
            "points": list(self.points),
            "scores": np.asarray(self.scores, dtype=float).tolist(),
        }
        if self.head_scores is not None:
            out["head_layers"] = list(self.head_layers)
            out["head_scores"] = np.asarray(self.head_scores, dtype=float).tolist()
        return out


def factual_pairs() -> list[dict[str, Any]]:
    """The shipped factual-recall pairs (``neurometry/data/patch_factual.jsonl``).

    Each record has ``clean``, ``corrupted`` (same token length with SmolLM2's tokenizer),
    ``correct``, ``wrong`` and the logit differences SmolLM2-135M-Instruct gave when the set was
    made (``scripts/make_patching_set.py`` keeps a pair only when the model's top-1 answer to the
    clean prompt is ``correct``, correct beats wrong on clean and wrong beats correct on corrupted).
    """
    text = (resources.files("neurometry.data") / "patch_factual.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def logit_difference(logits: Any, correct_id: int, wrong_id: int) -> np.ndarray | float:
    """logit(correct) - logit(wrong) at the last position, in float64.

    Args:
        logits: (..., T, vocab) tensor (any device and dtype) or array (e.g. a model's (B, T, V) output,
            or (T, V)).
        correct_id, wrong_id: token ids.

    Returns a float for (T, V) input, else an array of the leading shape.
    """
    x = logits.detach() if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    if x.ndim < 2:
        raise NeurometryError(f"logits must have shape (..., tokens, vocab), not {tuple(x.shape)}")
    # the two logits only leave the device, widened exactly on the CPU (float64 exists on every device there)
    last = x[..., -1, [correct_id, wrong_id]].cpu().double()
    diff = (last[..., 0] - last[..., 1]).numpy()
    return float(diff) if diff.ndim == 0 else diff


def head_points(model: LoadedModel) -> list[HookPoint]:
    """One point per layer on the input of the attention output projection (the heads concatenated)."""
    layers = sorted(
        (p for name, p in model.points.items() if name.startswith("attn_out.")),
        key=lambda p: int(p.name.split(".")[1]),
    )
    if not layers:
        raise NeurometryError(
            f"{model.name} has no attn_out.* points; per-head patching needs a known layout"
        )
    return [HookPoint(f"attn_heads.{p.name.split('.')[1]}", p.module_path, "tokens", "input") for p in layers]


def _num_heads(model: LoadedModel) -> int:
    heads = getattr(getattr(model.module, "config", None), "num_attention_heads", None)
    if not heads:
        raise NeurometryError(f"{model.name} has no config.num_attention_heads; pass heads=False")
    return int(heads)


def _patched_lds(
    model: LoadedModel,
    batch: dict[str, torch.Tensor],
    point: HookPoint,
    n_rows: int,
    edit: Callable[[torch.Tensor], torch.Tensor],
    ids: tuple[int, int],
) -> np.ndarray:
    """Logit differences (n_rows,) of the corrupted prompt repeated n_rows times, with ``edit`` at ``point``.

    ``edit`` gets the point's (n_rows, T, ...) tensor and returns the patched one (row r holds patch r).
    """
    repeated = {k: v.expand(n_rows, *v.shape[1:]).contiguous() for k, v in batch.items()}
    with hooked(model, point, edit), torch.no_grad():
        out = model.forward(repeated)
    logits = out.logits if hasattr(out, "logits") else out
    return np.atleast_1d(logit_difference(logits, *ids))


def patch_residual(
    model: LoadedModel,
    clean: str,
    corrupted: str,
    correct: str,
    wrong: str,
    points: list[str] | str | None = None,
    positions: Sequence[int] | None = None,
    heads: bool = True,
    batch_size: int = 32,
) -> PatchResult:
    """Patch each (point, position) activation from the clean run into the corrupted run.

    Args:
        model: a causal language model.
        clean, corrupted: prompts that tokenise to the same number of tokens.
        correct, wrong: single-token answers (``correct`` is the clean prompt's answer,
            ``wrong`` the corrupted prompt's); mind the leading space for BPE tokenizers.
        points: point names or globs (default every ``resid.*``); each must be a (batch,
            tokens, ...) point.
        positions: token positions to patch (default all; negative counts from the end).
        heads: also patch each attention head's output at all positions (``head_scores``).
        batch_size: corrupted-prompt copies run per forward pass (one patch per row).

    The runs happen on the model's device in its dtype; logit differences and scores are float64.

    Returns a ``PatchResult``; raises ``NeurometryError`` when the lengths differ, an answer is
    not one token, the clean and corrupted runs give the same logit difference, or a half-precision
    model overflows.
    """
    require_causal(model, "next-token logit difference to patch")
    ids = (single_token_id(model, correct, "correct answer"), single_token_id(model, wrong, "wrong answer"))
    if ids[0] == ids[1]:
        raise NeurometryError(f"correct {correct!r} and wrong {wrong!r} are the same token; give two answers")
    if batch_size < 1:
        raise NeurometryError(f"batch_size must be at least 1, not {batch_size}")
    clean_b, corr_b = encode_prompt(model, clean), encode_prompt(model, corrupted)
    tokens = decode_tokens(model, clean_b["input_ids"][0])
    corr_tokens = decode_tokens(model, corr_b["input_ids"][0])
    n_tok = len(tokens)
    if len(corr_tokens) != n_tok:
        raise NeurometryError(
            f"clean and corrupted prompts must have the same number of tokens, but they have {n_tok} "
            f"{tokens} and {len(corr_tokens)} {corr_tokens}; reword one of them"
        )
    if positions is None:
        pos = list(range(n_tok))
    else:
        bad = [p for p in positions if not -n_tok <= p < n_tok]
        if bad:
            raise NeurometryError(
                f"positions {bad} are outside the prompts' {n_tok} tokens; use -{n_tok}..{n_tok - 1}"
            )
        pos = [p % n_tok for p in positions]

    chosen = model.resolve(points if points is not None else "resid.*")
    if any(p.kind != "tokens" for p in chosen):
        bad_pts = [p.name for p in chosen if p.kind != "tokens"]
        raise NeurometryError(f"patching needs per-token points (resid.*, attn_out.*, ...), not {bad_pts}")
    hpoints = head_points(model) if heads else []
    device = model.device
    clean_b, corr_b = inputs_to(clean_b, device), inputs_to(corr_b, device)
    clean_out, cache = capture(model, clean_b, chosen + hpoints)
    corr_out, _ = capture(model, corr_b, [])
    check_finite(clean_out.logits[0, -1], model, "the clean run's last logits")
    check_finite(corr_out.logits[0, -1], model, "the corrupted run's last logits")
    clean_ld = float(logit_difference(clean_out.logits[0], *ids))
    corr_ld = float(logit_difference(corr_out.logits[0], *ids))
    denom = clean_ld - corr_ld
    # float32 logits carry ~1e-6 relative noise; a denominator near that would turn it into the score
    if abs(denom) < 1e-4 * max(1.0, abs(clean_ld), abs(corr_ld)):
        raise NeurometryError(
            f"the clean and corrupted runs give (almost) the same logit difference ({clean_ld:.6g} vs "
            f"{corr_ld:.6g}), so the normalised metric is undefined; pick prompts whose answers differ"
        )

    scores = np.empty((len(chosen), len(pos)))
    for i, p in enumerate(chosen):
        source = cache[p.name][0]  # (T, ...)
        for start in range(0, len(pos), batch_size):
            chunk = pos[start : start + batch_size]
            rows = torch.arange(len(chunk), device=device)
            cols = torch.tensor(chunk, device=device)

            def put(
                t: torch.Tensor, rows: torch.Tensor = rows, cols: torch.Tensor = cols, source=source
            ) -> torch.Tensor:
                t = t.clone()
                t[rows, cols] = source[cols].to(
                    t.dtype
                )  # row r gets the clean activation at position chunk[r]
                return t

            lds = _patched_lds(model, corr_b, p, len(chunk), put, ids)
            scores[i, start : start + len(chunk)] = (lds - corr_ld) / denom

    head_scores = None
    if hpoints:
        n_heads = _num_heads(model)
        head_scores = np.empty((len(hpoints), n_heads))
        for i, p in enumerate(hpoints):
            source = cache[p.name][0]  # (T, heads * head_dim)
            if source.shape[-1] % n_heads:
                raise NeurometryError(
                    f"{p.module_path} input width {source.shape[-1]} is not a multiple of {n_heads} heads; pass heads=False"
                )
            dh = source.shape[-1] // n_heads
            for start in range(0, n_heads, batch_size):
                hs = list(range(start, min(start + batch_size, n_heads)))

                def put_head(
                    t: torch.Tensor, hs: list[int] = hs, source=source, dh: int = dh
                ) -> torch.Tensor:
                    t = t.clone()
                    for r, h in enumerate(hs):  # row r gets head h's clean output at every position
                        t[r, :, h * dh : (h + 1) * dh] = source[:, h * dh : (h + 1) * dh].to(t.dtype)
                    return t

                lds = _patched_lds(model, corr_b, p, len(hs), put_head, ids)
                head_scores[i, start : start + len(hs)] = (lds - corr_ld) / denom

    return PatchResult(
        points=[p.name for p in chosen],
        tokens=tokens,
        corrupted_tokens=corr_tokens,
        positions=pos,
        scores=scores,
        clean_ld=clean_ld,
        corrupted_ld=corr_ld,
        head_scores=head_scores,
        head_layers=[f"attn_out.{p.name.split('.')[1]}" for p in hpoints],
        clean=clean,
        corrupted=corrupted,
        correct=correct,
        wrong=wrong,
    )




def pair_id(clean: str, corrupted: str, correct: str, wrong: str) -> str:
    """The catalog name of a prompt pair, e.g. ``"Paris vs Rome (1f0c9a2b)"``: the answers to read it by
    and 8 hex digits of a SHA-256 of all four strings, so one pair gets the same name wherever it is
    patched and pairs with the same answers (but other prompts) get different ones."""
    digest = hashlib.sha256(json.dumps([clean, corrupted, correct, wrong]).encode()).hexdigest()
    return f"{correct.strip()} vs {wrong.strip()} ({digest[:8]})"


def save_patching(
    store: Any, result: PatchResult, model: str, *, device: str | None = None, model_dtype: str | None = None
) -> list[dict[str, Any]]:
    """Save a patching result in ``store``'s catalog (kind ``patch``, one transaction); returns the records.

    One record per patched point: run_id = ``model`` (the name the user gave; it need not be a recorded
    run), point = the point, name = :func:`pair_id` of the prompts and answers, value = the point's best
    score (the maximum over positions), extra = the point's scores over positions (N,) and its index in
    ``result.points``, and, repeated in every record so each stands alone, the prompts, answers, both
    logit differences, both token lists, the positions and, when patched, ``head_layers`` and the
    (layers, heads) ``head_scores``; ``device`` and ``model_dtype`` (where and in what precision the model
    ran) when given. Saving the same pair again replaces the records of the same points.
    """
    shared: dict[str, Any] = {
        key: value for key, value in result.to_dict().items() if key in _PAIR_KEYS
    }  # JSON-ready: floats round-trip exactly through the catalog's JSON
    name = pair_id(result.clean, result.corrupted, result.correct, result.wrong)
    records = []
    scores_by_point = np.asarray(result.scores, dtype=float)
    for index, (point, scores) in enumerate(zip(result.points, scores_by_point, strict=True)):
        records.append(
            Result(point, name, float(scores.max()),
                   extra={"scores": scores.tolist(), "order": index, **shared, **ran(device, model_dtype)},
                   result_set=name)
        )
    PATCH.save(store, model, records)
    return records


def patch_result(results: Any) -> PatchResult:
    """Rebuild the :class:`PatchResult` of one pair saved by :func:`save_patching`. ``results`` holds its
    catalog rows with params and extra decoded (as :meth:`neurometry.store.results.ResultKind.load` gives them,
    filtered to one run and name); the points come back in the order they were patched."""
    pairs = sorted(set(zip(results["run_id"], results["name"], strict=True)))
    if len(pairs) != 1:
        raise NeurometryError(
            f"the patching rows hold {len(pairs)} (run, pair) combinations, not 1; select one run and name"
        )
    rows = sorted(results.itertuples(), key=lambda r: r.extra["order"])
    shared = {key: rows[0].extra.get(key) for key in _PAIR_KEYS}
    if any({key: r.extra.get(key) for key in _PAIR_KEYS} != shared for r in rows[1:]):
        raise NeurometryError(
            f"the saved rows of {pairs[0][1]!r} come from patching runs with different positions or heads; "
            "patch the pair again with one setting to replace them"
        )
    heads = shared["head_scores"]
    return PatchResult(
        points=[r.point for r in rows],
        tokens=list(shared["tokens"]),
        corrupted_tokens=list(shared["corrupted_tokens"]),
        positions=[int(p) for p in shared["positions"]],
        scores=np.array([r.extra["scores"] for r in rows], dtype=np.float64).reshape(len(rows), -1),
        clean_ld=float(shared["clean_ld"]),
        corrupted_ld=float(shared["corrupted_ld"]),
        head_scores=None if heads is None else np.array(heads, dtype=np.float64),
        head_layers=list(shared["head_layers"] or []),
        clean=shared["clean"],
        corrupted=shared["corrupted"],
        correct=shared["correct"],
        wrong=shared["wrong"],
    )
