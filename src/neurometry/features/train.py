"""Train an SAE on a stored point: streamed, shuffled, seeded, checkpointed and resumable.

Recipe (one per architecture, from the papers named in :mod:`neurometry.features.sae`):

- Inputs are scaled by one factor s so that E||s x|| = sqrt(d_in) (estimated on the first buffer;
  SAELens' ``expected_average_only_in``), and s is folded into the saved weights, so the saved SAE
  acts on raw activations.
- b_dec starts at the geometric median (Weiszfeld) or the mean of the first rows.
- Loss: mean over rows of ||x - x_hat||^2, plus
  ``relu``: l1_coefficient * sum_i z_i ||W_dec,i||; ``jumprelu``: l0_coefficient * L0 through the
  straight-through step; ``topk`` / ``batchtopk``: aux_coefficient * AuxK, the residual
  reconstructed by the aux_k largest pre-activations of latents dead for ``dead_after_rows`` rows
  (Gao et al. 2024). ``relu`` and ``jumprelu`` instead resample dead latents towards badly
  reconstructed rows every ``resample_every`` steps in the first half of training (Bricken et al. 2023).
- Decoder rows are kept at unit norm (the gradient along each row is removed) except for ``relu``,
  whose weighted penalty makes the norm irrelevant.
- Adam, learning rate warmed up over the first 1% of steps and decayed linearly to 0 over the last 20%
  (SAELens' tutorials decay over the last 20% and warm the L1 penalty up over the first 5%, as here).

How long (:func:`plan_schedule`): an explicit ``steps``, ``epochs`` (passes) or ``train_rows`` is
obeyed exactly. Otherwise training runs for one pass or ``min_steps`` (3,000) steps, whichever is
more: an SAE needs thousands of Adam steps whatever the store's size, and one pass over a
60,000-row point at batch 4,096 is only 13 steps (planted data in ``tests/features/test_train.py``:
held-out FVU 0.66 after one pass, 0.03 after the default 3,000 steps). Without an explicit
``batch_size`` the batch is 4,096 rows, capped at a power of two no larger than 1/32 of the training
rows (at least 32), so the minimum costs small points fewer rows (60,000 rows: batch 1,024). Warm-ups and decay are fractions of the chosen step count. The
plan and the reason for it are saved under ``schedule`` in ``cfg.json`` and returned.

A checkpoint (``checkpoint/state.safetensors`` + ``checkpoint/state.json`` in the output folder) is
written every ``checkpoint_every`` steps and at the end, each time with the SAE as trained so far
(``cfg.json`` + ``sae_weights.safetensors``, see :mod:`neurometry.features.io`), so an interrupted
run leaves a usable SAE. Training again into the same folder
with the same settings resumes from the checkpoint: the batch order is replayed and the batches
already seen are skipped, so the result equals an uninterrupted run.

Devices (``device``: ``cpu|cuda|cuda:N|mps|auto``): the SAE's parameters and Adam's state live on the
device; the scale and b_dec are estimated on the CPU, and checkpoints and saved weights are CPU float32
copies, so a run checkpointed on a GPU resumes on the CPU and the other way round (the same row
order; the arithmetic, and so the weights, differ in the last bits between devices). ``cfg.json``
records the device as ``device``. On CUDA batches are read ahead in a background thread
(:class:`~neurometry.features.prefetch.Prefetcher`; ``prefetch=True`` asks for it on any device), which
gives the same batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.features.buffer import ShufflingBuffer, held_out_start, row_mask
from neurometry.features.io import save_sae
from neurometry.features.prefetch import Prefetcher, read_ahead_depth
from neurometry.features.sae import SAEConfig, SparseAutoencoder
from neurometry.models.devices import device_name, resolve_device
from neurometry.store import open_store

CHECKPOINT_DIR = "checkpoint"
DEFAULT_BATCH_SIZE = 4096
MIN_STEPS = 3000
BATCH_FRACTION = 32  # without an explicit batch size, a batch is at most 1/32 of the training rows
MIN_AUTO_BATCH = 32


@dataclass
class TrainConfig:
    """How to train (saved in the checkpoint; a resume must use the same values).

    Attributes:
        batch_size: rows per step; None: 4,096, capped at 1/32 of the training rows (a power of
            two, at least 32) so that small points get many steps (:func:`plan_schedule`).
        lr: Adam learning rate.
        train_rows: rows to train on in total (several epochs if more than the training rows).
        steps: optimisation steps in total.
        epochs: passes over the training rows (may be fractional).
        min_steps: when none of ``train_rows``, ``steps`` and ``epochs`` is given, train for one
            pass or this many steps, whichever is more. At most one of the three may be given, and
            it is obeyed exactly.
        buffer_rows: rows in the shuffling buffer.
        held_out: fraction of inputs (the last ones) kept out of training for evaluation.
        seed: weights and row order.
        checkpoint_every: steps between checkpoints.
        dead_after_rows: a latent silent for this many rows counts as dead.
        resample_every: steps between dead-latent resamplings (``relu``, ``jumprelu``).
        init_b_dec: ``"geometric_median"`` or ``"mean"``.
        normalise_input: scale inputs to E||x|| = sqrt(d_in) while training (folded in at save).
        min_position: leave out token rows at positions below this (1: the first token of each
            text, often an attention sink with a huge norm); evaluation uses the same rows.
    """

    batch_size: int | None = None
    lr: float = 4e-4
    train_rows: int | None = None
    steps: int | None = None
    epochs: float | None = None
    min_steps: int = MIN_STEPS
    buffer_rows: int = 65536
    held_out: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200
    dead_after_rows: int = 200_000
    resample_every: int = 1000
    init_b_dec: str = "geometric_median"
    normalise_input: bool = True
    min_position: int = 0

    def __post_init__(self) -> None:
        if self.init_b_dec not in ("geometric_median", "mean"):
            raise NeurometryError(f"init_b_dec must be 'geometric_median' or 'mean', got {self.init_b_dec!r}")
        # `not x > 0` rather than `x <= 0`: NaN fails every comparison and must be refused too
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise NeurometryError(f"the learning rate (--lr) must be a finite number above 0, got {self.lr}")
        if self.batch_size is not None and not self.batch_size >= 1:
            raise NeurometryError(f"batch_size (--batch-size) must be at least 1, got {self.batch_size}")
        given = [name for name in ("train_rows", "steps", "epochs") if getattr(self, name) is not None]
        if len(given) > 1:
            raise NeurometryError(f"give at most one of train_rows, steps and epochs, got {' and '.join(given)}")
        for name in given:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise NeurometryError(f"{name} (--{name.replace('_', '-')}) must be a finite number above 0, got {value}")
        if self.min_steps < 1:
            raise NeurometryError(f"min_steps must be positive, got {self.min_steps}")
        if self.min_position < 0:
            raise NeurometryError(f"min_position (--min-position) must be 0 or more, got {self.min_position}")


@dataclass(frozen=True)
class Schedule:
    """How long a run trains and why (:func:`plan_schedule`; saved under ``schedule`` in ``cfg.json``)."""

    steps: int
    batch_size: int
    rows: int  # training rows (one pass)
    steps_per_epoch: int
    epochs: float  # passes the steps make
    rule: str  # "steps", "epochs", "train_rows", "one pass" or "minimum"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def auto_batch_size(rows: int) -> int:
    """4,096, or the largest power of two at most rows / 32 when that is smaller (at least 32, at most rows)."""
    cap = max(1, rows // BATCH_FRACTION)
    power = 1 << (cap.bit_length() - 1)
    return max(1, min(DEFAULT_BATCH_SIZE, rows, max(MIN_AUTO_BATCH, power)))


def plan_schedule(train: TrainConfig, rows: int) -> Schedule:
    """The batch size and number of steps for ``rows`` training rows, and a sentence saying why.

    An explicit ``steps``, ``epochs`` or ``train_rows`` is obeyed; otherwise max(one pass, ``min_steps``).
    """
    batch = train.batch_size if train.batch_size is not None else auto_batch_size(rows)
    if batch > rows:
        raise NeurometryError(
            f"{rows} training rows are fewer than one batch of {batch}; lower --batch-size or record more"
        )
    per_epoch = rows // batch
    capped = train.batch_size is None and batch < DEFAULT_BATCH_SIZE
    how = f"{rows:,} rows at batch {batch:,}" + (f" ({DEFAULT_BATCH_SIZE:,} capped at rows/{BATCH_FRACTION})" if capped else "")
    if train.steps is not None:
        steps, rule = int(train.steps), "steps"
        reason = f"{steps:,} steps (as asked; one pass over {how} is {per_epoch:,} steps)"
    elif train.epochs is not None:
        steps, rule = max(1, int(train.epochs * rows) // batch), "epochs"
        passes = f"{train.epochs:g} pass" + ("" if train.epochs == 1 else "es")
        reason = f"{steps:,} steps ({passes} as asked over {how}, {per_epoch:,} steps/pass)"
    elif train.train_rows is not None:
        steps, rule = max(1, int(train.train_rows) // batch), "train_rows"
        reason = f"{steps:,} steps ({train.train_rows:,} training rows as asked, {how})"
    elif per_epoch >= train.min_steps:
        steps, rule = per_epoch, "one pass"
        reason = f"{steps:,} steps (one pass over {how}; more than the {train.min_steps:,}-step minimum)"
    else:
        steps, rule = train.min_steps, "minimum"
        reason = (f"{steps:,} steps (the minimum; one pass over {how} is {per_epoch:,} steps, "
                  f"so {steps * batch / rows:.1f} passes)")
    return Schedule(steps=steps, batch_size=batch, rows=rows, steps_per_epoch=per_epoch,
                    epochs=steps * batch / rows, rule=rule, reason=reason)


@dataclass
class TrainResult:
    """What :func:`train_sae` produced."""

    sae: SparseAutoencoder
    folder: Path
    steps: int
    rows_seen: int
    held_out_start: int  # rows [held_out_start, n) of the point were not trained on
    seconds: float  # wall time of this call's training steps
    rows_per_second: float
    resumed_from: int  # step the run resumed at (0 when fresh)
    history: list[dict[str, float]] = field(default_factory=list)
    schedule: Schedule | None = None  # the steps and batch size, and why


def geometric_median(x: torch.Tensor, iterations: int = 100, tol: float = 1e-7) -> torch.Tensor:
    """Geometric median of the rows of x (n, d) by Weiszfeld's algorithm (float64 inside)."""
    x64 = x.double()
    y = x64.mean(0)
    for _ in range(iterations):
        dist = (x64 - y).norm(dim=1).clamp_min(1e-12)
        w = 1 / dist
        new = (w[:, None] * x64).sum(0) / w.sum()
        converged = (new - y).norm() <= tol * max(1.0, float(y.norm()))
        y = new
        if converged:
            break
    return y.to(x.dtype)


def initial_scale_and_center(buffer: ShufflingBuffer, train: TrainConfig, sae: SparseAutoencoder) -> float:
    """The input scale (1 unless ``train.normalise_input``), set from the first shuffled batches of epoch 0
    (rows of many inputs) on the CPU, and ``sae.b_dec`` set to their (scaled) geometric median or mean."""
    sample = torch.cat(list(itertools.islice(buffer.epoch(0), max(1, 16384 // buffer.batch_size)))).cpu()
    scale = 1.0
    if train.normalise_input:
        scale = math.sqrt(sample.shape[1]) / float(sample.norm(dim=1).mean().clamp_min(1e-12))
    with torch.no_grad():
        scaled = sample * scale
        center = geometric_median(scaled) if train.init_b_dec == "geometric_median" else scaled.mean(0)
        sae.b_dec.copy_(center)
    return scale


class _Trainer:
    def __init__(self, sae: SparseAutoencoder, train: TrainConfig, total_steps: int):
        self.sae, self.train, self.total_steps = sae, train, total_steps
        self.opt = torch.optim.Adam(sae.parameters(), lr=train.lr, betas=(0.9, 0.999))
        self.device = sae.W_dec.device
        self.rows_since_fired = torch.zeros(sae.cfg.d_sae, dtype=self.counter_dtype, device=self.device)
        self.step = 0
        self.rows_seen = 0
        self.input_scale = 1.0
        self.history: list[dict[str, float]] = []

    @property
    def counter_dtype(self) -> torch.dtype:
        """float64 for the rows-since-fired counters, float32 on MPS (which has no float64)."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def lr_at(self, step: int) -> float:
        warm = max(1, self.total_steps // 100)
        decay_start = int(self.total_steps * 0.8)
        factor = min(1.0, (step + 1) / warm)
        if step >= decay_start:
            factor *= max(0.0, (self.total_steps - step) / max(1, self.total_steps - decay_start))
        return self.train.lr * factor

    def dead_mask(self) -> torch.Tensor:
        return self.rows_since_fired >= self.train.dead_after_rows

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        sae, cfg = self.sae, self.sae.cfg
        pre = sae.pre_activations(x)
        if cfg.architecture == "topk":
            # sparse decode: only the k kept latents' decoder rows are read (about d_sae / k times
            # less work than z @ W_dec, forward and backward)
            values, index = torch.topk(pre, cfg.k, dim=1, sorted=False)
            values = values.relu()
            x_hat = torch.nn.functional.embedding_bag(
                index, sae.W_dec, per_sample_weights=values, mode="sum"
            ) + sae.b_dec
            z = None
        elif cfg.architecture == "batchtopk":
            z = sae.batch_topk(pre)
            kept = z[z > 0]
            if len(kept):  # running estimate of the smallest kept activation: the inference threshold
                low = float(kept.detach().min())
                t = sae.threshold
                t.fill_(low if float(t.max()) < 0 else 0.99 * float(t[0]) + 0.01 * low)
        else:
            z = sae.activate(pre)
        if z is not None:
            x_hat = sae.decode(z)
        err = x - x_hat
        mse = (err * err).sum(1).mean()
        total = mse
        parts = {"mse": float(mse.detach())}
        if cfg.architecture == "relu":
            l1 = (z * sae.W_dec.norm(dim=1)).sum(1).mean()
            ramp = min(1.0, (self.step + 1) / max(1, self.total_steps // 20))  # penalty warm-up: 5% of steps
            total = total + cfg.l1_coefficient * ramp * l1
            parts["l1"] = float(l1.detach())
        elif cfg.architecture == "jumprelu":
            from neurometry.features.sae import _Step

            l0 = _Step.apply(pre, sae.log_threshold.exp(), cfg.jumprelu_bandwidth).sum(1).mean()
            total = total + cfg.l0_coefficient * l0
            parts["l0_penalty"] = float(l0.detach())
        elif cfg.aux_k:
            dead = self.dead_mask()
            if bool(dead.any()):
                k_aux = min(int(cfg.aux_k), int(dead.sum()))
                masked = pre.masked_fill(~dead, float("-inf"))
                aux_values, aux_index = torch.topk(masked, k_aux, dim=1, sorted=False)
                z_aux = torch.zeros_like(pre).scatter_(1, aux_index, aux_values.relu())
                target = err.detach()
                err_aux = target - z_aux @ sae.W_dec
                aux = (err_aux * err_aux).sum(1).mean() / (target * target).sum(1).mean().clamp_min(1e-12)
                total = total + cfg.aux_coefficient * aux
                parts["aux"] = float(aux.detach())
        with torch.no_grad():
            if z is None:
                fired = index[values > 0].unique()
                l0 = float((values > 0).sum(1).double().mean())
            else:
                fired = (z > 0).any(0)
                l0 = float((z > 0).sum(1).double().mean())
            self.mark_fired(fired, len(x))
            var = ((x - x.mean(0)) ** 2).sum()
            parts["l0"] = l0
            parts["fvu"] = float((err * err).sum() / var.clamp_min(1e-12))
        return total, parts

    def mark_fired(self, fired: torch.Tensor, rows: int) -> None:
        """Count ``rows`` more rows for every latent and restart the count of those that ``fired`` (indices or a
        mask); a data-parallel trainer (:mod:`neurometry.features.distributed`) first gathers every worker's."""
        self.rows_since_fired += rows
        self.rows_since_fired[fired] = 0

    def reduce_gradients(self) -> None:
        """Between backward and the update: nothing here; a data-parallel trainer averages the gradients."""

    @torch.no_grad()
    def resample(self, x: torch.Tensor) -> int:
        """Point dead latents at rows the SAE reconstructs worst (Bricken et al. 2023)."""
        sae = self.sae
        dead = torch.nonzero(self.dead_mask()).flatten()
        if not len(dead):
            return 0
        err = x - sae(x)
        weights = (err * err).sum(1)
        gen = torch.Generator().manual_seed(self.train.seed + self.step)
        # drawn on the CPU (the seeded generator's device) on every device
        pick = torch.multinomial((weights + 1e-12).cpu(), len(dead), replacement=True, generator=gen).to(err.device)
        directions = err[pick] / err[pick].norm(dim=1, keepdim=True).clamp_min(1e-12)
        alive = ~self.dead_mask()
        enc_norm = float(sae.W_enc[:, alive].norm(dim=0).mean()) if bool(alive.any()) else 1.0
        sae.W_dec[dead] = directions
        sae.W_enc[:, dead] = directions.T * 0.2 * enc_norm
        sae.b_enc[dead] = 0
        for param in (sae.W_dec, sae.W_enc, sae.b_enc):
            state = self.opt.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    moment = state[key]
                    if param is sae.W_enc:
                        moment[:, dead] = 0
                    else:
                        moment[dead] = 0
        self.rows_since_fired[dead] = 0
        return len(dead)

    def train_step(self, x: torch.Tensor, whole: torch.Tensor | None = None) -> dict[str, float]:
        """One update on rows ``x``; ``whole``: the global batch ``x`` is a worker's share of (data-parallel
        training; it counts as the rows seen and is what dead latents are resampled towards)."""
        whole = x if whole is None else whole
        sae, arch = self.sae, self.sae.cfg.architecture
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        loss, parts = self.loss(x)
        if not math.isfinite(float(loss.detach())):
            raise NeurometryError(f"SAE training diverged at step {self.step}; lower --lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.reduce_gradients()
        if arch != "relu":
            sae.remove_parallel_gradient()
        try:
            self.opt.step()
        except RuntimeError as exc:  # the step size lr / bias correction overflows float32
            if "overflow" not in str(exc):
                raise
            raise NeurometryError(f"SAE training diverged at step {self.step}: the update overflowed; lower --lr") from None
        if arch != "relu":
            sae.normalise_decoder()
        self.step += 1
        self.rows_seen += len(whole)
        if arch in ("relu", "jumprelu") and self.step % self.train.resample_every == 0:
            if self.step <= self.total_steps // 2:
                parts["resampled"] = self.resample(whole)
        parts["loss"] = float(loss.detach())
        parts["dead_fraction"] = float(self.dead_mask().double().mean())
        return parts

    def check_finite(self, sae: SparseAutoencoder | None = None) -> None:
        """Refuse weights holding NaN or Inf (an update overflowed: the loss of the step that made them was
        still finite), in the trained SAE or ``sae`` (the one to save), before anything is saved."""
        module = self.sae if sae is None else sae
        bad = [name for name, param in module.named_parameters() if not bool(torch.isfinite(param).all())]
        if bad:
            raise NeurometryError(
                f"SAE training diverged by step {self.step}: {', '.join(bad)} "
                f"{'holds' if len(bad) == 1 else 'hold'} NaN or Inf, so nothing was saved; lower --lr"
            )

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, folder: Path, signature: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        self.check_finite()
        ck = folder / CHECKPOINT_DIR
        ck.mkdir(parents=True, exist_ok=True)

        def cpu(value: torch.Tensor) -> torch.Tensor:  # a copy on the CPU: the checkpoint resumes on any device
            return value.detach().to("cpu", copy=True)

        tensors = {f"param.{k}": cpu(v) for k, v in self.sae.state_dict().items()}
        names = {id(p): n for n, p in self.sae.named_parameters()}
        for param, state in self.opt.state.items():
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in state:
                    value = state[key]
                    value = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
                    tensors[f"adam.{names[id(param)]}.{key}"] = cpu(value).reshape(value.shape)
        tensors["rows_since_fired"] = cpu(self.rows_since_fired).double()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(ck / "state.safetensors.tmp"))
        (ck / "state.safetensors.tmp").replace(ck / "state.safetensors")
        document = {
            "signature": signature,
            "step": self.step,
            "rows_seen": self.rows_seen,
            "input_scale": self.input_scale,
            "history": self.history,
        }
        (ck / "state.json.tmp").write_text(json.dumps(document))
        (ck / "state.json.tmp").replace(ck / "state.json")

    def load_checkpoint(self, folder: Path, signature: dict[str, Any]) -> bool:
        from safetensors.torch import load_file

        ck = folder / CHECKPOINT_DIR
        if not (ck / "state.json").is_file() or not (ck / "state.safetensors").is_file():
            return False
        document = json.loads((ck / "state.json").read_text())
        if document.get("signature") != signature:
            raise NeurometryError(
                f"{folder} holds a checkpoint of a different training setup; use a new --out or --fresh"
            )
        tensors = load_file(str(ck / "state.safetensors"))
        self.sae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("param.")})
        params = dict(self.sae.named_parameters())
        # one optimiser step on zero gradients creates the state tensors, then they are overwritten
        for name, param in params.items():
            if f"adam.{name}.exp_avg" in tensors:
                state = self.opt.state[param]
                state["exp_avg"] = tensors[f"adam.{name}.exp_avg"].to(param.device, copy=True)
                state["exp_avg_sq"] = tensors[f"adam.{name}.exp_avg_sq"].to(param.device, copy=True)
                state["step"] = tensors[f"adam.{name}.step"].clone().reshape(())  # Adam keeps it on the CPU
        self.rows_since_fired = tensors["rows_since_fired"].to(self.device, self.counter_dtype, copy=True)
        self.step = int(document["step"])
        self.rows_seen = int(document["rows_seen"])
        self.input_scale = float(document["input_scale"])
        self.history = list(document["history"])
        return True


def train_sae(
    store: Any,
    point: str,
    out: str | Path,
    cfg: SAEConfig | None = None,
    train: TrainConfig | None = None,
    *,
    run: str | None = None,
    fresh: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    prefetch: bool | None = None,
    **sae_settings: Any,
) -> TrainResult:
    """Train an SAE on rows of ``point`` of a store and save it (SAELens layout) into ``out``.

    Args:
        store: a store path or an opened store.
        point: the stored point (rows (n, d_in)).
        out: output folder: ``cfg.json``, ``sae_weights.safetensors`` and ``checkpoint/``.
        cfg: the SAE; when None it is built from ``sae_settings`` (``d_sae``, ``architecture``,
            ``k``, ...) with ``d_in`` from the point.
        train: training settings (:class:`TrainConfig`); how many steps: :func:`plan_schedule`.
        fresh: ignore and overwrite an existing checkpoint in ``out`` instead of resuming.
        max_steps: stop after this many steps in total (a later call resumes); for tests and
            time-boxed runs.
        device: where the SAE trains (``cpu|cuda|cuda:N|mps|auto`` or a ``torch.device``; None: the
            CPU); resolved before any work, so a missing GPU fails at once.
        prefetch: read the batches in a background thread (:mod:`neurometry.features.prefetch`);
            False reads them in this one; None (default) does so on CUDA only. Either gives the same
            batches, so the same weights.
    """
    target = resolve_device(device)
    train = train or TrainConfig()
    if max_steps is not None and max_steps < 1:
        raise NeurometryError(f"max_steps (--max-steps) must be at least 1, got {max_steps}")
    store = open_store(store) if isinstance(store, (str, Path)) else store
    info = store.point_info(point, run)
    d_in = int(math.prod(info.shape))
    if cfg is None:
        cfg = SAEConfig(d_in=d_in, model=store.run_info(info.run_id).model, point=point, **sae_settings)
    elif sae_settings:
        raise NeurometryError("give either cfg or SAE settings, not both")
    if cfg.d_in != d_in:
        raise NeurometryError(f"the SAE takes {cfg.d_in} features but {point} rows have {d_in}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise NeurometryError(f"--out {folder} is a file; give a folder for the SAE")
    stop = held_out_start(store, point, info.run_id, train.held_out)
    keep = row_mask(store, point, info.run_id, train.min_position)
    n_train = stop if keep is None else int(keep[:stop].sum())
    n_held = info.n_rows - stop if keep is None else int(keep[stop:].sum())
    # an SAE fitted to one row reconstructs it exactly (FVU 0, L0 0), and FVU needs two rows' variance
    if n_train < 2:
        raise NeurometryError(f"--held-out {train.held_out} leaves {n_train} training row(s) of {point} "
                              f"(of {info.n_rows}); lower --held-out (or --min-position) or record more inputs")
    if 0 < n_held < 2:
        raise NeurometryError(f"--held-out {train.held_out} keeps {n_held} row of {point} for sae eval, which needs "
                              "at least 2; raise --held-out, give --held-out 0, or record more inputs")
    schedule = plan_schedule(train, n_train)
    batch_size = schedule.batch_size
    buffer = ShufflingBuffer(
        store, point, info.run_id, stop, batch_size, train.buffer_rows, train.seed, keep=keep, device=target
    )
    per_epoch = buffer.batches_per_epoch()
    total_steps = schedule.steps
    torch.manual_seed(train.seed)
    sae = SparseAutoencoder(cfg, seed=train.seed).to(target)  # initialised on the CPU: the same on every device
    trainer = _Trainer(sae, train, total_steps)
    signature = {
        "sae": cfg.to_dict(),
        "train": dataclasses.asdict(train),
        "schedule": {"steps": total_steps, "batch_size": batch_size},
        "run": info.run_id,
        "point": point,
        "rows": stop,
    }
    resumed = 0
    if fresh and (folder / CHECKPOINT_DIR).exists():
        for f in (folder / CHECKPOINT_DIR).iterdir():
            f.unlink()
    if not fresh and trainer.load_checkpoint(folder, signature):
        resumed = trainer.step
    source = iter(buffer)
    if resumed:
        for _ in range(resumed):  # replay the row order; no SAE work
            next(source)
    else:
        trainer.input_scale = initial_scale_and_center(buffer, train, sae)
    def save_current() -> SparseAutoencoder:
        """The checkpoint, and the SAE as trained so far, input scale folded in, saved in SAELens' layout into
        ``folder``; weights holding NaN or Inf are refused before either is written."""
        summary = {
            "input_scale": trainer.input_scale,
            "steps": trainer.step,
            "rows_seen": trainer.rows_seen,
            "held_out_start": stop,
            "run": info.run_id,
            "min_position": train.min_position,
            "epochs": trainer.rows_seen / max(1, per_epoch * batch_size),
            "train": dataclasses.asdict(train),
            "schedule": schedule.to_dict(),
        }
        current = SparseAutoencoder(dataclasses.replace(cfg, extra={**cfg.extra, **summary}), seed=train.seed)
        current.load_state_dict(sae.state_dict())
        current.fold_input_scale(trainer.input_scale)
        trainer.check_finite()
        trainer.check_finite(current)  # folding the scale in can overflow too
        trainer.save_checkpoint(folder, signature)
        save_sae(folder, current, device=device_name(target))
        return current

    end = total_steps if max_steps is None else min(total_steps, max_steps)
    bar = tqdm(
        total=total_steps, initial=trainer.step, desc=f"sae {cfg.architecture} {point}", unit="step",
        disable=not progress, leave=False,
    )
    started = time.perf_counter()
    rows_before = trainer.rows_seen
    batches = Prefetcher(source, target, depth=read_ahead_depth(prefetch, target))
    try:
        while trainer.step < end:
            x = next(batches) * trainer.input_scale
            parts = trainer.train_step(x)
            if trainer.step % 10 == 0 or trainer.step == end:
                record = {"step": trainer.step, "rows": trainer.rows_seen, **parts}
                trainer.history.append(record)
                bar.set_postfix(
                    loss=f"{parts['loss']:.3g}", l0=f"{parts['l0']:.1f}", fvu=f"{parts['fvu']:.3f}",
                    dead=f"{parts['dead_fraction']:.2f}",
                )
            bar.update(1)
            if trainer.step % train.checkpoint_every == 0 and trainer.step < end:
                save_current()  # an interrupted run leaves a usable SAE too
    finally:
        batches.close()
        bar.close()
    seconds = time.perf_counter() - started
    final = save_current()
    trained = trainer.rows_seen - rows_before
    return TrainResult(
        sae=final.eval(),
        folder=folder,
        steps=trainer.step,
        rows_seen=trainer.rows_seen,
        held_out_start=stop,
        seconds=seconds,
        rows_per_second=trained / seconds if seconds > 0 else 0.0,
        resumed_from=resumed,
        history=trainer.history,
        schedule=schedule,
    )
