"""Evaluate a sparse autoencoder: reconstruction of stored rows, and cross-entropy when spliced into the model.

- :func:`evaluate_sae`: L0, fraction of variance unexplained, dead and dense latent fractions on rows
  ``[start, stop)`` of a stored point (typically held-out rows), streamed from the store
  (:mod:`neurometry.features.metrics`).
- :func:`ce_loss_recovered`: next-token cross-entropy of a causal LM with the point's tensor replaced by
  the SAE's reconstruction ("spliced"), against the clean model and against replacing it by zeros;
  loss recovered = (L_zero - L_spliced) / (L_zero - L_clean), 1 for a perfect reconstruction and 0 for
  one no better than zero-ablation (Bricken et al. 2023, "Towards Monosemanticity"; Gao et al. 2024;
  SAELens' ``ce_loss_score``).

Both run where the SAE's weights are (``sae.to(device)``); the stored rows are read ahead in a background
thread and sent there (:class:`~neurometry.features.prefetch.Prefetcher`), and a model's token batches are
moved to the model's device.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.features.buffer import StoredRows, row_mask
from neurometry.features.metrics import ReconstructionAccumulator, ReconstructionMetrics
from neurometry.features.prefetch import Prefetcher, read_ahead_depth
from neurometry.features.sae import SparseAutoencoder
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import hooked, require_text, token_point, unembedding
from neurometry.models.loaded import LoadedModel
from neurometry.store.results import SAE_EVAL, Result

PROGRESS_MIN_CHUNKS = 4
"""Show a progress bar when streaming at least this many chunks."""


def _sae_device(sae: SparseAutoencoder) -> torch.device:
    return sae.W_dec.device


def check_point_width(sae: SparseAutoencoder, feature_shape: Sequence[int], point: str) -> int:
    """The flattened width of a stored point's rows; NeurometryError unless it is the SAE's ``d_in``."""
    width = int(math.prod(feature_shape))
    if width != sae.cfg.d_in:
        raise NeurometryError(
            f"point {point!r} has {width} features per row but the SAE expects d_in={sae.cfg.d_in} "
            f"(trained on {sae.cfg.point or 'another point'}); evaluate it on the point it was trained on"
        )
    return width


def _row_range(n_rows: int, start: int, stop: int | None, point: str) -> tuple[int, int]:
    stop = n_rows if stop is None else stop
    if not 0 <= start < stop <= n_rows:
        raise NeurometryError(
            f"rows [{start}, {stop}) are not inside the {n_rows} stored rows of {point!r}; "
            f"give 0 <= start < stop <= {n_rows}"
        )
    return start, stop


def evaluate_sae(
    sae: SparseAutoencoder,
    store: Any,
    point: str,
    run: str | None = None,
    start: int = 0,
    stop: int | None = None,
    chunk_rows: int = 8192,
    progress: bool = True,
    min_position: int | None = None,
    prefetch: bool | None = None,
) -> ReconstructionMetrics:
    """Reconstruction metrics of ``sae`` on rows ``[start, stop)`` of a stored point, computed on the SAE's device.

    Args:
        sae: an SAE whose ``d_in`` equals the point's (flattened) feature size.
        store: an open ``Store`` (``neurometry.open_store``).
        point, run: the stored point (``run`` may be omitted when one run holds it).
        start, stop: row range; give rows the SAE was not trained on for held-out scores.
        chunk_rows: rows per block streamed through the SAE (memory is one block of rows and latents).
        progress: a progress bar on stderr when there are at least ``PROGRESS_MIN_CHUNKS`` blocks.
        min_position: token rows at positions below this are left out (default: the SAE's training
            setting, ``cfg.extra["min_position"]``, else 0); see :func:`neurometry.features.buffer.row_mask`.
        prefetch: read the blocks in a background thread (the same blocks; False: in this one;
            None, the default: on CUDA only).

    Returns:
        :class:`~neurometry.features.metrics.ReconstructionMetrics` (float64 accumulation).
    """
    if chunk_rows < 1:
        raise NeurometryError(f"chunk_rows must be at least 1, got {chunk_rows}")
    info = store.point_info(point, run)
    check_point_width(sae, info.shape, point)
    start, stop = _row_range(info.n_rows, start, stop, point)
    if min_position is None:
        min_position = int(sae.cfg.extra.get("min_position", 0))
    keep = row_mask(store, point, info.run_id, min_position)
    device = _sae_device(sae)
    blocks = StoredRows(store, point, info.run_id, chunk_rows)
    accumulator = ReconstructionAccumulator()
    n_chunks = -(-(stop - start) // chunk_rows)
    bar = tqdm(
        total=stop - start, unit="row", desc=f"evaluate SAE on {point}", file=sys.stderr,
        disable=not progress or n_chunks < PROGRESS_MIN_CHUNKS, dynamic_ncols=True,
    )
    with bar, Prefetcher(blocks(start, stop), device, read_ahead_depth(prefetch, device)) as read, torch.no_grad():
        at = start
        for x in read:
            n = len(x)
            if keep is not None:
                x = x[torch.from_numpy(keep[at : at + n]).to(device)]
            at += n
            latents = sae.encode(x)
            accumulator.update(x, sae.decode(latents), latents)
            bar.update(n)
    return accumulator.result()


@dataclass(frozen=True)
class CELossResult:
    """Next-token cross-entropy (nats per token, mean over real next-token targets) of three runs.

    ``loss_recovered`` = (zero_ablation_loss - spliced_loss) / (zero_ablation_loss - clean_loss).
    """

    clean_loss: float
    spliced_loss: float
    zero_ablation_loss: float
    loss_recovered: float
    n_tokens: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        raise NeurometryError(
            "the model's output has no (batch, tokens, vocabulary) logits; cross-entropy needs a causal LM"
        )
    return logits


def _summed_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Sum of -log p(next token) over positions whose token and next token are both real (float64, on the
    logits' device; the CPU for MPS, which has no float64). ``mask``: (batch, tokens - 1)."""
    if logits.device.type == "mps":
        logits = logits.cpu()
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    picked = logp.gather(-1, input_ids[:, 1:, None].to(logits.device)).squeeze(-1)
    return float(-(picked * mask.to(logits.device)).sum())


def ce_loss_recovered(
    sae: SparseAutoencoder,
    model: LoadedModel,
    point: str,
    texts: Sequence[str],
    batch_size: int = 8,
    max_length: int = 128,
    skip_first: int | None = None,
) -> CELossResult:
    """Cross-entropy of ``model`` on ``texts``: clean, with ``point`` spliced through ``sae``, and zero-ablated.

    The first ``skip_first`` positions keep their clean activation in both the spliced and the
    zero-ablated runs (default: the SAE's ``cfg.extra["min_position"]``, else 0): an SAE trained without
    the first token (an attention sink with a huge norm) is not asked to reconstruct it.

    Every position of ``point``'s (batch, tokens, d) tensor is replaced, padding included (a causal
    model's real positions never see right padding, and the loss skips it); the loss averages
    -log p(token t+1 | tokens <= t) over every pair of consecutive real tokens of every text, in
    float64. Texts are tokenised as the model's tokenizer does (special tokens included), truncated to
    ``max_length`` tokens and padded per batch of ``batch_size``.

    Raises NeurometryError for a model without an LM head, a point that is not a ``tokens`` point,
    a point whose width is not the SAE's ``d_in``, no text with two tokens, or when zero-ablating the
    point does not change the loss (loss recovered is then undefined).
    """
    require_text(model)
    unembedding(model)  # a clear error for models without an LM head, before any forward pass
    hook_point = token_point(model, point)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise NeurometryError("texts must be a non-empty list of strings")
    if batch_size < 1 or max_length < 2:
        raise NeurometryError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size} and {max_length}")
    device = _sae_device(sae)
    if skip_first is None:
        skip_first = int(sae.cfg.extra.get("min_position", 0))

    def checked(tensor: torch.Tensor) -> None:
        if tensor.shape[-1] != sae.cfg.d_in:
            raise NeurometryError(
                f"point {hook_point.name!r} has width {tensor.shape[-1]} but the SAE expects d_in={sae.cfg.d_in}; "
                "splice the SAE at the point it was trained on"
            )

    def spliced(tensor: torch.Tensor) -> torch.Tensor:
        checked(tensor)
        reconstruction = sae(tensor.to(device=device, dtype=torch.float32))
        new = reconstruction.to(device=tensor.device, dtype=tensor.dtype)
        new[:, :skip_first] = tensor[:, :skip_first]
        return new

    def zeroed(tensor: torch.Tensor) -> torch.Tensor:
        checked(tensor)
        new = torch.zeros_like(tensor)
        new[:, :skip_first] = tensor[:, :skip_first]
        return new

    def run(batch: dict[str, torch.Tensor], replace: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        batch = inputs_to(batch, model.device)  # token ids and masks: no cast
        if replace is None:
            return _logits(model.forward(batch))
        with hooked(model, hook_point, replace):
            return _logits(model.forward(batch))

    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n_tokens = 0
    with torch.no_grad():
        for lo in range(0, len(texts), batch_size):
            batch = dict(
                model.tokenizer(
                    texts[lo : lo + batch_size], return_tensors="pt", padding=True,
                    truncation=True, max_length=max_length,
                )
            )
            real = batch["attention_mask"].bool()
            targets = (real[:, :-1] & real[:, 1:]).double()
            count = int(targets.sum())
            if count == 0:
                continue
            n_tokens += count
            for name, replace in (("clean", None), ("spliced", spliced), ("zero", zeroed)):
                totals[name] += _summed_nll(run(batch, replace), batch["input_ids"], targets)
    if n_tokens == 0:
        raise NeurometryError("no text has two or more tokens; give longer texts")
    clean, spliced_loss, zero = (totals[k] / n_tokens for k in ("clean", "spliced", "zero"))
    if not all(math.isfinite(v) for v in (clean, spliced_loss, zero)):
        raise NeurometryError(
            f"cross-entropy is not finite (clean {clean}, spliced {spliced_loss}, zero-ablated {zero}); "
            "check the SAE's weights and the model's dtype"
        )
    gap = zero - clean
    if abs(gap) <= 1e-12 * max(1.0, abs(clean)):
        raise NeurometryError(
            f"zero-ablating {hook_point.name} leaves the loss unchanged ({clean:.6g}), so loss recovered is "
            "undefined; evaluate at a point the model's output depends on"
        )
    return CELossResult(clean, spliced_loss, zero, (zero - spliced_loss) / gap, n_tokens)


def save_sae_eval(
    store: Any,
    sae_folder: str | Path,
    point: str,
    run: str,
    metrics: ReconstructionMetrics,
    ce: CELossResult | None = None,
    rows_from: int = 0,
) -> dict[str, Any]:
    """Store one SAE evaluation in the catalog (kind ``sae_eval``, value = FVU) and return its record:
    point, the metrics, ``rows_from``, ``ce_*`` fields and ``ce_loss_recovered`` (None without a model)."""
    record: dict[str, Any] = {"point": point, **metrics.as_dict(), "rows_from": rows_from}
    if ce is not None:
        record.update({f"ce_{k}": v for k, v in ce.as_dict().items()})
    record.setdefault("ce_loss_recovered", None)
    name = str(Path(sae_folder).resolve())
    SAE_EVAL.save(store, run, [Result(point, name, metrics.fvu, extra=record, result_set=name)])
    return record

