"""Explain SAE latents by the tokens they fire on, and by the tokens their decoder directions promote.

- :func:`feature_examples`: one streaming pass over a stored ``reduce=tokens`` point gives, per latent,
  its activation frequency, mean and max activation, its top-activating token rows and a seeded sample
  from the quantiles of its other non-zero activations, each shown as a token in its context (the
  "feature dashboards" of Bricken et al. 2023, "Towards Monosemanticity", whose interval-sampled
  examples show what a feature does below its maximum).
- :func:`save_feature_examples` / :func:`load_feature_examples`: one catalog record per latent (kind
  ``"sae_features"``) for the report and the web page.
- :func:`feature_logit_tokens`: the tokens a latent's decoder direction promotes and suppresses through
  the unembedding (the logit-weight view of the same dashboards; the logit lens of
  :mod:`neurometry.steer.lens` applied to a direction).
- :func:`export_feature_direction`: a latent's decoder row in the steering vector format.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.features.buffer import StoredRows, row_mask
from neurometry.features.evaluate import PROGRESS_MIN_CHUNKS, check_point_width
from neurometry.features.prefetch import Prefetcher, read_ahead_depth
from neurometry.features.sae import SparseAutoencoder
from neurometry.models.hooks import decode_tokens, require_text, unembedding
from neurometry.models.loaded import LoadedModel
from neurometry.store.results import SAE_FEATURES, Result

RESERVOIR_FACTOR = 4
"""Candidates kept per quantile bin and example (the reservoir holds this many times the examples shown)."""


@dataclass(frozen=True)
class TokenContext:
    """One stored token row shown in its input: up to ``window`` tokens each side, same input only."""

    row: int
    input_row: int
    position: int
    activation: float
    left: list[str]
    token: str
    right: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "input_row": self.input_row,
            "position": self.position,
            "activation": self.activation,
            "left": list(self.left),
            "token": self.token,
            "right": list(self.right),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TokenContext:
        return cls(
            int(values["row"]), int(values["input_row"]), int(values["position"]), float(values["activation"]),
            list(values["left"]), str(values["token"]), list(values["right"]),
        )


@dataclass(frozen=True)
class QuantileSample:
    """Examples from quantiles [lower, upper) of a latent's non-zero activations outside its top rows."""

    lower: float
    upper: float
    examples: list[TokenContext]

    def as_dict(self) -> dict[str, Any]:
        return {"quantile": [self.lower, self.upper], "examples": [e.as_dict() for e in self.examples]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantileSample:
        lower, upper = values["quantile"]
        return cls(float(lower), float(upper), [TokenContext.from_dict(e) for e in values["examples"]])


@dataclass
class FeatureExamples:
    """What :func:`feature_examples` found, per latent (d_sae of them).

    Attributes:
        point, run: the stored point and run the rows came from.
        n_rows: rows streamed.
        window: context tokens kept on each side of an example.
        frequency: (d_sae,) fraction of rows where the latent is > 0.
        mean_activation: (d_sae,) mean activation over the rows where it is > 0 (0 for a dead latent).
        max_activation: (d_sae,) largest activation (0 for a dead latent).
        top: per latent, its top rows by activation, largest first (only rows where it is > 0).
        quantiles: per latent, ``quantile_bins`` samples of its other non-zero activations, lowest first.
        logit_tokens: optional per-latent ``{"promoted": [[token, logit], ...], "suppressed": [...]}``.
    """

    point: str
    run: str
    n_rows: int
    window: int
    frequency: np.ndarray
    mean_activation: np.ndarray
    max_activation: np.ndarray
    top: list[list[TokenContext]]
    quantiles: list[list[QuantileSample]]
    logit_tokens: list[dict[str, Any]] | None = field(default=None)

    @property
    def d_sae(self) -> int:
        return len(self.frequency)

    def latent(self, index: int) -> dict[str, Any]:
        """Everything about one latent as a JSON-ready dict (the ``extra`` of its catalog record)."""
        if not 0 <= index < self.d_sae:
            raise NeurometryError(f"latent {index} is outside 0..{self.d_sae - 1}")
        document: dict[str, Any] = {
            "latent": index,
            "n_latents": self.d_sae,
            "n_rows": self.n_rows,
            "window": self.window,
            "frequency": float(self.frequency[index]),
            "mean_activation": float(self.mean_activation[index]),
            "max_activation": float(self.max_activation[index]),
            "top": [e.as_dict() for e in self.top[index]],
            "quantiles": [q.as_dict() for q in self.quantiles[index]],
        }
        if self.logit_tokens is not None:
            document.update(self.logit_tokens[index])
        return document


KEY_BITS = 40
"""Bits of the within-latent ordering key; the latent index takes the bits above (up to 2**24 latents)."""


class _KeepBest:
    """Per latent, the ``size`` entries with the smallest key seen so far (ties: the lower row first).

    Memory O(d_sae * size). Entries arrive as flat arrays (latent, key, row, value) with integer keys
    below 2**KEY_BITS, rows in increasing order within each latent and later than every kept row; each
    merge sorts the kept entries with the new ones by (latent, key) in one stable sort, so equal keys
    stay in row order.
    """

    def __init__(self, d_sae: int, size: int):
        if d_sae >= 2 ** (64 - KEY_BITS):
            raise NeurometryError(f"at most {2 ** (64 - KEY_BITS) - 1} latents are supported, got {d_sae}")
        self.size = size
        self.key = np.zeros((d_sae, size), dtype=np.uint64)
        self.row = np.full((d_sae, size), -1, dtype=np.int64)
        self.value = np.zeros((d_sae, size), dtype=np.float32)

    def merge(self, latent: np.ndarray, key: np.ndarray, row: np.ndarray, value: np.ndarray) -> None:
        # an entry whose key is not below its latent's worst kept key (when full) cannot get in: dropping
        # it first keeps each merge small once the tables have filled, with the same result
        full = self.row[:, -1] >= 0
        bound = np.where(full, self.key[:, -1], np.uint64(2**64 - 1))
        fits = key < bound[latent]
        latent, key, row, value = latent[fits], key[fits], row[fits], value[fits]
        kept = self.row >= 0
        latent = np.concatenate([np.nonzero(kept)[0], latent])
        key = np.concatenate([self.key[kept], key])
        row = np.concatenate([self.row[kept], row])
        value = np.concatenate([self.value[kept], value])
        order = np.argsort((latent.astype(np.uint64) << np.uint64(KEY_BITS)) | key, kind="stable")
        latent = latent[order]
        n = len(latent)
        starts = np.flatnonzero(np.r_[True, latent[1:] != latent[:-1]])
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        keep = rank < self.size
        chosen, latent, rank = order[keep], latent[keep], rank[keep]
        self.key.fill(0)
        self.row.fill(-1)
        self.value.fill(0)
        self.key[latent, rank] = key[chosen]
        self.row[latent, rank] = row[chosen]
        self.value[latent, rank] = value[chosen]


def _descending_keys(value: np.ndarray) -> np.ndarray:
    """Keys that sort positive float32 values largest first (their bit patterns increase with them)."""
    return np.uint64(0xFFFFFFFF) - value.astype(np.float32).view(np.uint32).astype(np.uint64)


def _uniform_keys(seed: int, row: np.ndarray, latent: np.ndarray, d_sae: int) -> np.ndarray:
    """A uniform KEY_BITS-bit integer per (row, latent), a hash of (seed, row, latent) only (splitmix64).

    A function of the entry rather than of a generator's state, so the sample does not depend on how
    the rows are chunked.
    """
    with np.errstate(over="ignore"):
        z = (row.astype(np.uint64) * np.uint64(d_sae) + latent.astype(np.uint64)) ^ np.uint64(
            (seed * 0x9E3779B97F4A7C15) % 2**64
        )
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z >> np.uint64(64 - KEY_BITS)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NeurometryError(f"{name} must be a positive integer, got {value!r}")


def _token_run(store: Any, point: str, run: str | None) -> Any:
    info = store.point_info(point, run)
    reduce = store.run_info(info.run_id).reduce
    if reduce != "tokens":
        raise NeurometryError(
            f"run {info.run_id!r} stores one row per input (reduce={reduce}); feature examples need one row "
            f"per token: record {point} with --reduce tokens"
        )
    return info


class TokenContexts:
    """Token contexts of stored rows from the run's token rows (rows of one input are consecutive)."""

    def __init__(self, store: Any, run: str, n_rows: int, window: int):
        meta = store.row_index(run)
        if len(meta) < n_rows:
            raise NeurometryError(
                f"run {run!r} has metadata for {len(meta)} rows but {n_rows} stored rows; record it again"
            )
        self.input_row = meta["input_row"].to_numpy()
        self.position = meta["position"].to_numpy()
        self.token = meta["token"].astype(str).to_numpy()
        self.window = window

    def __call__(self, row: int, activation: float) -> TokenContext:
        n, w, same = len(self.token), self.window, self.input_row[row]
        before = [j for j in range(max(0, row - w), row) if self.input_row[j] == same]
        after = [j for j in range(row + 1, min(n, row + w + 1)) if self.input_row[j] == same]
        return TokenContext(
            int(row), int(same), int(self.position[row]), float(activation),
            [str(self.token[j]) for j in before], str(self.token[row]), [str(self.token[j]) for j in after],
        )


def feature_examples(
    sae: SparseAutoencoder,
    store: Any,
    point: str,
    run: str | None = None,
    top: int = 20,
    window: int = 8,
    quantile_bins: int = 4,
    per_bin: int = 3,
    chunk_rows: int = 8192,
    seed: int = 0,
    progress: bool = True,
    min_position: int | None = None,
    prefetch: bool | None = None,
) -> FeatureExamples:
    """Per-latent statistics and example token contexts from one streaming pass over a stored point.

    The run must be recorded with ``reduce=tokens`` (one row per token, so each row has a token and an
    input to show it in). For every latent, over the rows where its activation is > 0: frequency
    (their fraction of all rows), mean and max activation, and the ``top`` rows of largest activation
    (a running top-k merged chunk by chunk: memory O(d_sae * top), never the (rows, d_sae) codes).

    Quantile sample (lower-activation examples): each latent keeps a uniform random sample without
    replacement of its non-zero activations, of size ``RESERVOIR_FACTOR * quantile_bins * per_bin + top``
    (bottom-k sampling on a seeded hash of (seed, row, latent), so it depends on ``seed`` and not on
    ``chunk_rows``; a latent with fewer activations keeps all of them). At the end its top rows are
    dropped from the sample, the rest sorted by activation and split into ``quantile_bins`` groups of
    equal count, so group b estimates quantiles [b / bins, (b + 1) / bins) of the latent's non-zero
    activations below its top examples; from each group ``per_bin`` members are drawn at random (the
    smallest hash keys) and listed largest activation first.

    Each example is a :class:`TokenContext`: the row's token and up to ``window`` tokens on each side
    from the same input.

    Args:
        sae: an SAE whose ``d_in`` is the point's feature size.
        store: an open ``Store``; point, run: a stored ``tokens`` point (run may be omitted when one run
            holds it).
        top, window, quantile_bins, per_bin: how many examples and how much context (see above).
        chunk_rows: rows per block streamed through the SAE.
        seed: the quantile sample's seed.
        progress: a progress bar on stderr for more than a few blocks.
        min_position: rows at token positions below this are skipped (they count in no statistic);
            default: the SAE's training setting ``cfg.extra["min_position"]``, else 0.
        prefetch: read the blocks in a background thread (the same blocks; False: in this one;
            None, the default: on CUDA only).

    The SAE runs where its weights are (``sae.to(device)``); the blocks are sent there.
    """
    _check_positive(top=top, quantile_bins=quantile_bins, per_bin=per_bin, chunk_rows=chunk_rows)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise NeurometryError(f"window must be a non-negative integer, got {window!r}")
    info = _token_run(store, point, run)
    check_point_width(sae, info.shape, point)
    if info.n_rows == 0:
        raise NeurometryError(f"point {point!r} of run {info.run_id!r} has no stored rows yet")
    if min_position is None:
        min_position = int(sae.cfg.extra.get("min_position", 0))
    keep = row_mask(store, point, info.run_id, min_position)
    d_sae = sae.cfg.d_sae
    device = sae.W_dec.device
    best = _KeepBest(d_sae, top)
    reservoir = _KeepBest(d_sae, RESERVOIR_FACTOR * quantile_bins * per_bin + top)
    active = np.zeros(d_sae, dtype=np.int64)
    total = np.zeros(d_sae, dtype=np.float64)
    n_chunks = -(-info.n_rows // chunk_rows)
    bar = tqdm(
        total=info.n_rows, unit="row", desc=f"feature examples of {point}", file=sys.stderr,
        disable=not progress or n_chunks < PROGRESS_MIN_CHUNKS, dynamic_ncols=True,
    )
    begin = 0
    blocks = StoredRows(store, point, info.run_id, chunk_rows)
    try:
        with Prefetcher(blocks(), device, read_ahead_depth(prefetch, device)) as read, torch.no_grad():
            for x in read:
                z = sae.encode(x)
                if keep is not None:
                    z[torch.from_numpy(~keep[begin : begin + len(x)]).to(device)] = 0
                # the codes are sparse: work on their non-zero entries, in row-major order
                rows_t, latents_t = torch.nonzero(z > 0, as_tuple=True)
                values = z[rows_t, latents_t].cpu().numpy()
                rows, latents = rows_t.cpu().numpy() + begin, latents_t.cpu().numpy()
                active += np.bincount(latents, minlength=d_sae)
                total += np.bincount(latents, weights=values, minlength=d_sae)
                best.merge(latents, _descending_keys(values), rows, values)
                reservoir.merge(latents, _uniform_keys(seed, rows, latents, d_sae), rows, values)
                begin += len(x)
                bar.update(len(x))
    finally:
        bar.close()
    contexts = TokenContexts(store, info.run_id, begin, window)
    top_examples, quantiles = [], []
    for j in range(d_sae):
        mine = best.row[j] >= 0
        top_rows = best.row[j][mine]
        top_examples.append([contexts(r, v) for r, v in zip(top_rows, best.value[j][mine], strict=True)])
        sampled = (reservoir.row[j] >= 0) & ~np.isin(reservoir.row[j], top_rows)
        order = np.lexsort((reservoir.row[j][sampled], reservoir.value[j][sampled]))
        rows_j = reservoir.row[j][sampled][order]
        values_j = reservoir.value[j][sampled][order]
        keys_j = reservoir.key[j][sampled][order]
        bins = []
        for b, group in enumerate(np.array_split(np.arange(len(rows_j)), quantile_bins)):
            chosen = group[np.argsort(keys_j[group], kind="stable")[:per_bin]]
            chosen = chosen[np.lexsort((rows_j[chosen], -values_j[chosen]))]
            bins.append(
                QuantileSample(
                    b / quantile_bins, (b + 1) / quantile_bins,
                    [contexts(rows_j[i], values_j[i]) for i in chosen],
                )
            )
        quantiles.append(bins)
    frequency = active / (begin if keep is None else max(1, int(keep[:begin].sum())))
    mean_activation = np.divide(total, active, out=np.zeros(d_sae), where=active > 0)
    largest = np.where(best.row[:, 0] >= 0, best.value[:, 0], 0).astype(np.float64)
    return FeatureExamples(
        point, info.run_id, begin, int(window), frequency, mean_activation, largest, top_examples, quantiles
    )


def save_feature_examples(store: Any, examples: FeatureExamples, run: str | None, name: str) -> int:
    """Write one catalog record per latent (kind ``"sae_features"``); returns how many.

    Record: ``point`` = the examples' point, ``name`` = ``f"{name}/{latent}"``, ``value`` = frequency,
    ``extra`` = :meth:`FeatureExamples.latent` (mean and max activation, ``top`` and ``quantiles`` as
    lists of ``{row, input_row, position, activation, left, token, right}``, and the logit tokens when
    present). ``run`` defaults to the run the rows came from. Saving under the same name again replaces
    the records (an SAE with fewer latents leaves the extra ones behind; :func:`load_feature_examples`
    reads only the latents of the latest save).
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise NeurometryError(f"name must be a non-empty string without surrounding spaces, got {name!r}")
    run = run or examples.run
    store.run_info(run)
    records = [
        Result(examples.point, f"{name}/{j}", float(examples.frequency[j]), extra=examples.latent(j),
               result_set=name)
        for j in range(examples.d_sae)
    ]
    return SAE_FEATURES.save(store, run, records)


def load_feature_examples(store: Any, name: str, run: str | None = None) -> FeatureExamples:
    """Read back what :func:`save_feature_examples` wrote under ``name`` (in ``run``, or the one run holding it)."""
    table = SAE_FEATURES.load(store, run, result_set=name)
    prefix = f"{name}/"
    table = table[table["name"].str.startswith(prefix)]
    table = table[table["name"].str[len(prefix) :].str.fullmatch(r"\d+")]
    if table.empty:
        where = f" in run {run!r}" if run else ""
        raise NeurometryError(
            f"no SAE feature examples named {name!r}{where}; write them with `neurometry sae features` first"
        )
    runs = sorted(table["run_id"].unique())
    if len(runs) > 1:
        raise NeurometryError(f"feature examples {name!r} are in several runs ({', '.join(runs)}); name one with run=")
    extras = {int(n[len(prefix) :]): e for n, e in zip(table["name"], table["extra"], strict=True)}
    if 0 not in extras:
        raise NeurometryError(f"feature examples {name!r} lack latent 0; save them again")
    n_latents = int(extras[0]["n_latents"])
    missing = [j for j in range(n_latents) if j not in extras]
    if missing:
        raise NeurometryError(f"feature examples {name!r} lack {len(missing)} of {n_latents} latents; save them again")
    docs = [extras[j] for j in range(n_latents)]
    logit_tokens = None
    if all("promoted" in d for d in docs):
        logit_tokens = [{"promoted": d["promoted"], "suppressed": d["suppressed"]} for d in docs]
    point = table.loc[table["name"] == f"{prefix}0", "point"].iloc[0]
    return FeatureExamples(
        point=str(point),
        run=runs[0],
        n_rows=int(docs[0]["n_rows"]),
        window=int(docs[0]["window"]),
        frequency=np.array([d["frequency"] for d in docs], dtype=np.float64),
        mean_activation=np.array([d["mean_activation"] for d in docs], dtype=np.float64),
        max_activation=np.array([d["max_activation"] for d in docs], dtype=np.float64),
        top=[[TokenContext.from_dict(e) for e in d["top"]] for d in docs],
        quantiles=[[QuantileSample.from_dict(q) for q in d["quantiles"]] for d in docs],
        logit_tokens=logit_tokens,
    )


@dataclass(frozen=True)
class LogitTokens:
    """Per latent, the tokens its decoder direction promotes and suppresses most (d_sae rows, ``top`` each).

    ``promoted_ids`` / ``promoted_logits``: (d_sae, top) largest entries of the latent's row of
    W_dec diag(gamma) W_U^T, largest first; ``suppressed_*`` the smallest, smallest first; the tokens are
    the ids decoded one by one.
    """

    promoted_ids: np.ndarray
    promoted_logits: np.ndarray
    promoted: list[list[str]]
    suppressed_ids: np.ndarray
    suppressed_logits: np.ndarray
    suppressed: list[list[str]]

    def as_records(self) -> list[dict[str, Any]]:
        """Per latent ``{"promoted": [[token, logit], ...], "suppressed": [...]}`` (for FeatureExamples)."""
        return [
            {
                "promoted": [[t, float(v)] for t, v in zip(self.promoted[j], self.promoted_logits[j], strict=True)],
                "suppressed": [
                    [t, float(v)] for t, v in zip(self.suppressed[j], self.suppressed_logits[j], strict=True)
                ],
            }
            for j in range(len(self.promoted))
        ]


def feature_logit_tokens(
    sae: SparseAutoencoder, model: LoadedModel, top: int = 10, through_norm: bool = True, latents_per_block: int = 256
) -> LogitTokens:
    """The tokens each latent's decoder direction promotes and suppresses through the unembedding.

    Logit effects W_dec diag(gamma) W_U^T (d_sae, vocab): W_dec (d_sae, d_in) the decoder rows, W_U
    (vocab, d_in) the model's unembedding (``lm_head``) and gamma the final norm's weight (the layout's
    ``final_norm``, found as the logit lens finds it, :func:`neurometry.models.hooks.unembedding`). The
    norm's division by the residual's scale is the same for every token, so it does not change the
    ranking and is left out, as are biases (they do not depend on the latent). ``through_norm=False``,
    or an SAE trained on ``final_norm`` itself, leaves gamma out. Meaningful for residual-stream points,
    whose width is the unembedding's.
    """
    require_text(model)
    _check_positive(top=top, latents_per_block=latents_per_block)
    norm, head = unembedding(model)
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise NeurometryError(f"{model.name}'s unembedding has no (vocab, d) weight; pick a causal LM")
    if weight.shape[1] != sae.cfg.d_in:
        raise NeurometryError(
            f"the SAE's d_in={sae.cfg.d_in} is not the width {weight.shape[1]} of {model.name}'s unembedding; "
            "logit tokens need an SAE on a residual-stream point (resid.i)"
        )
    with torch.no_grad():
        directions = sae.W_dec.detach().to(device=weight.device, dtype=torch.float32)
        gamma = getattr(norm, "weight", None) if through_norm and sae.cfg.point != "final_norm" else None
        if isinstance(gamma, torch.Tensor) and gamma.shape == (sae.cfg.d_in,):
            directions = directions * gamma.detach().float()
        k = min(top, weight.shape[0])
        out: dict[str, list[np.ndarray]] = {"pi": [], "pv": [], "si": [], "sv": []}
        for lo in range(0, len(directions), latents_per_block):
            logits = directions[lo : lo + latents_per_block] @ weight.detach().float().T
            high = torch.topk(logits, k, dim=-1)
            low = torch.topk(logits, k, dim=-1, largest=False)
            out["pi"].append(high.indices.cpu().numpy())
            out["pv"].append(high.values.double().cpu().numpy())
            out["si"].append(low.indices.cpu().numpy())
            out["sv"].append(low.values.double().cpu().numpy())
    ids = {key: np.concatenate(parts) for key, parts in out.items()}
    return LogitTokens(
        ids["pi"], ids["pv"], [decode_tokens(model, row) for row in ids["pi"]],
        ids["si"], ids["sv"], [decode_tokens(model, row) for row in ids["si"]],
    )


def readable(tokens: list[str] | str) -> str:
    """Stored tokenizer tokens as display text: the space and newline marks of byte-level BPE (GPT-2,
    Llama 3, SmolLM2) and SentencePiece become spaces."""
    text = "".join(tokens) if isinstance(tokens, list) else tokens
    return text.replace("\u0120", " ").replace("\u010a", " ").replace("\u2581", " ").replace("\n", " ")


def display_token(token: str) -> str:
    """One stored token as a bare word for lists and search: space marks and WordPiece's ``##`` removed."""
    return readable(token).strip().removeprefix("##")


def readable_context(left: list[str], token: str, right: list[str]) -> tuple[str, str, str]:
    """A token context as three display strings (before, the token, after) that read as text when put
    side by side. Byte-level BPE and SentencePiece tokens carry their own space marks (:func:`readable`);
    WordPiece tokens (BERT, MiniLM) do not: words are separated by spaces and a ``##`` piece continues
    the word before it. A context with no space mark at all is taken as WordPiece (a byte-level BPE
    context of several tokens without one would have to lie inside a single word)."""
    pieces = [*left, token, *right]
    if len(pieces) == 1 or any(mark in p for p in pieces for mark in ("\u0120", "\u2581", "\u010a")):
        return readable(left), readable(token), readable(right)
    spaced = [p[2:] if p.startswith("##") else (" " + p if i else p) for i, p in enumerate(pieces)]
    n = len(left)
    return "".join(spaced[:n]), spaced[n], "".join(spaced[n + 1 :])


def export_feature_direction(
    sae: SparseAutoencoder, latent: int, path: str | Path, model: str | None = None, point: str | None = None
) -> Path:
    """Write latent ``latent``'s decoder row W_dec[latent] (d_in,) as a steering vector file.

    The format is :func:`neurometry.steer.vectors.save_vector`'s (safetensors ``direction`` + JSON with
    ``kind="steering_vector"``), so ``neurometry steer`` and :func:`neurometry.steer.vectors.load_vector`
    read it; the JSON also has ``position="all"`` (an SAE is trained on every token position),
    ``method=f"sae_{architecture}"`` and ``latent``. Adding ``alpha * W_dec[latent]`` at the point is
    what raising the latent's activation by alpha does to the SAE's reconstruction. ``model`` and
    ``point`` default to the SAE's config. Returns the safetensors path.
    """
    from neurometry.steer.vectors import save_vector

    if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)) or not 0 <= latent < sae.cfg.d_sae:
        raise NeurometryError(f"latent must be an integer in 0..{sae.cfg.d_sae - 1}, got {latent!r}")
    model = model if model is not None else sae.cfg.model
    point = point if point is not None else sae.cfg.point
    if not point:
        raise NeurometryError("the SAE's config names no point; give point= (the hook point it was trained on)")
    vector = sae.W_dec[int(latent)].detach().cpu().to(torch.float64).numpy()
    return save_vector(
        path,
        vector,
        model=model,
        point=point,
        method=f"sae_{sae.cfg.architecture}",
        position="all",
        latent=int(latent),
        d_sae=int(sae.cfg.d_sae),
    )
