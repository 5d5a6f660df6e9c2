"""Sparse autoencoders: configuration, the four architectures, and their encode/decode.

x (..., d_in) -> pre = (x - b_dec) W_enc + b_enc (..., d_sae) -> latents z = act(pre) -> x_hat = z W_dec + b_dec.
Parameter names and shapes are SAELens' (``W_enc`` (d_in, d_sae), ``W_dec`` (d_sae, d_in), ``b_enc``,
``b_dec``, ``threshold``), so a saved SAE loads in either library.

Architectures (``ARCHITECTURES``):

- ``topk``: keep the k largest pre-activations of each row, then ReLU (Gao et al. 2024, "Scaling and
  evaluating sparse autoencoders").
- ``batchtopk``: while training, keep the k x batch largest ReLU'd pre-activations of the whole batch
  (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"); at inference a per-latent-shared threshold
  learnt during training makes it a JumpReLU, and that is how it is saved for SAELens.
- ``relu``: ReLU with an L1 penalty weighted by decoder norms (Bricken et al. 2023; Anthropic's
  April 2024 update).
- ``jumprelu``: z = pre * [pre > threshold] with a learnt per-latent threshold and an L0 penalty
  through straight-through estimators (Rajamanoharan et al. 2024, "Jumping Ahead").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neurometry.errors import NeurometryError

ARCHITECTURES = ("topk", "batchtopk", "relu", "jumprelu")


@dataclass
class SAEConfig:
    """What defines an SAE and how it was trained (saved as ``cfg.json``, SAELens-compatible keys).

    Attributes:
        d_in: width of the activations (the point's feature size).
        d_sae: number of latents.
        architecture: one of ``ARCHITECTURES``.
        k: active latents per row for ``topk`` / ``batchtopk`` (mean per row for the latter).
        l1_coefficient: weight of the decoder-norm-weighted L1 penalty (``relu``).
        l0_coefficient: weight of the L0 penalty (``jumprelu``).
        jumprelu_bandwidth: width of the rectangle kernel of the straight-through estimator.
        jumprelu_init_threshold: initial threshold of every latent (``jumprelu``).
        aux_k: latents of the AuxK loss against dead latents (``topk``/``batchtopk``; Gao et al. use
            d_in / 2); 0 turns it off.
        aux_coefficient: weight of the AuxK loss (Gao et al.: 1/32).
        model, point: where the activations came from (``metadata`` in SAELens' cfg).
        extra: anything else worth keeping (training settings, input scale, ...).
    """

    d_in: int
    d_sae: int
    architecture: str = "topk"
    k: int = 32
    l1_coefficient: float = 5.0
    l0_coefficient: float = 1.0
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.05
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    model: str = ""
    point: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise NeurometryError(
                f"unknown SAE architecture {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
            )
        if self.d_in < 1:
            raise NeurometryError(f"d_in must be at least 1, got {self.d_in}")
        if self.d_sae < 1:
            raise NeurometryError(f"the number of latents d_sae (--latents) must be at least 1, got {self.d_sae}")
        if self.architecture in ("topk", "batchtopk") and not 1 <= self.k <= self.d_sae:
            raise NeurometryError(f"k must be between 1 and the number of latents ({self.d_sae}), got {self.k}")
        # `not x >= 0` rather than `x < 0`: NaN fails every comparison and must be refused too
        for name, flag in (("l1_coefficient", "--l1"), ("l0_coefficient", "--l0"), ("aux_coefficient", "")):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                how = f" ({flag})" if flag else ""
                raise NeurometryError(f"{name}{how} must be a finite number of at least 0, got {value}")
        for name in ("jumprelu_bandwidth", "jumprelu_init_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise NeurometryError(f"{name} must be a finite number above 0, got {value}")
        if self.aux_k is not None and self.aux_k < 0:
            raise NeurometryError(f"aux_k must be 0 (off) or more, got {self.aux_k}")
        if self.aux_k is None:
            self.aux_k = min(self.d_sae, max(1, self.d_in // 2))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class _JumpReLU(torch.autograd.Function):
    """pre * [pre > t]; the threshold's gradient through a rectangle kernel (Rajamanoharan et al. 2024)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        near = ((pre - threshold).abs() < bw / 2).to(pre.dtype)
        grad_pre = grad * (pre > threshold)
        grad_t = (-(threshold / bw) * near * grad).reshape(-1, threshold.shape[-1]).sum(0)
        return grad_pre, grad_t, None


class _Step(torch.autograd.Function):
    """[pre > t] with the same rectangle-kernel gradient for t (the L0 penalty of JumpReLU SAEs)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        near = ((pre - threshold).abs() < bw / 2).to(pre.dtype)
        grad_t = (-(1.0 / bw) * near * grad).reshape(-1, threshold.shape[-1]).sum(0)
        return torch.zeros_like(pre), grad_t, None


class SparseAutoencoder(nn.Module):
    """An SAE of any of ``ARCHITECTURES``; see the module docstring for the maps.

    ``threshold`` (d_sae,) is the JumpReLU threshold (``jumprelu``, and ``batchtopk`` at inference).
    While training, ``jumprelu`` learns ``log_threshold`` and ``batchtopk`` keeps a running estimate
    of the smallest kept activation (``threshold``, a buffer).
    """

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        d_in, d_sae = cfg.d_in, cfg.d_sae
        # Kaiming-uniform decoder with unit-norm rows, encoder its transpose (Gao et al. 2024)
        w_dec = torch.empty(d_sae, d_in).uniform_(-1, 1, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if cfg.architecture == "jumprelu":
            self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(cfg.jumprelu_init_threshold)))
        elif cfg.architecture == "batchtopk":
            self.register_buffer("threshold", torch.full((d_sae,), -1.0))  # < 0: not estimated yet

    # -- the maps ----------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae): (x - b_dec) W_enc + b_enc."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def current_threshold(self) -> torch.Tensor:
        """The JumpReLU threshold (d_sae,) of ``jumprelu`` or an estimated ``batchtopk``."""
        if self.cfg.architecture == "jumprelu":
            return self.log_threshold.exp()
        if self.cfg.architecture == "batchtopk":
            return self.threshold
        raise NeurometryError(f"a {self.cfg.architecture} SAE has no threshold")

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Latents from pre-activations (..., d_sae), as at inference (batchtopk: its threshold)."""
        arch = self.cfg.architecture
        if arch == "topk":
            values, index = torch.topk(pre, self.cfg.k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter_(-1, index, values.relu())
        if arch == "relu":
            return pre.relu()
        if arch == "jumprelu":
            return _JumpReLU.apply(pre, self.log_threshold.exp(), self.cfg.jumprelu_bandwidth)
        if float(self.threshold.max()) < 0:  # batchtopk before any threshold estimate: use the batch rule
            return self.batch_topk(pre)
        return pre * (pre > self.threshold)

    def batch_topk(self, pre: torch.Tensor) -> torch.Tensor:
        """Keep the k x rows largest ReLU'd pre-activations of the whole batch (rows, d_sae)."""
        flat = pre.relu().reshape(-1)
        keep = min(flat.numel(), self.cfg.k * (pre.numel() // pre.shape[-1]))
        values, index = torch.topk(flat, keep, sorted=False)
        return torch.zeros_like(flat).scatter_(0, index, values).reshape(pre.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (..., d_sae) of activations x (..., d_in)."""
        return self.activate(self.pre_activations(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction (..., d_in) of latents z (..., d_sae)."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # -- constraints and conversions --------------------------------------------------------------
    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Scale each decoder row to unit norm (the encoder is left alone)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the component of W_dec's gradient along each row, so unit rows stay unit to first order."""
        if self.W_dec.grad is not None:
            w = self.W_dec
            self.W_dec.grad -= (self.W_dec.grad * w).sum(1, keepdim=True) * w / (w * w).sum(1, keepdim=True)

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Make an SAE trained on ``scale * x`` act on x directly, with the same latents.

        pre = (s x - b) W + c = (x - b / s)(s W) + c, and x_hat = (z W_dec + b_dec) / s.
        """
        self.W_enc *= scale
        self.b_dec /= scale
        self.W_dec /= scale

    def inference_state(self) -> dict[str, torch.Tensor]:
        """Tensors in SAELens' names: W_enc, W_dec, b_enc, b_dec (+ threshold for JumpReLU forms)."""
        state = {name: getattr(self, name).detach().clone() for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
        if self.cfg.architecture in ("jumprelu", "batchtopk"):
            state["threshold"] = self.current_threshold().detach().clone()
        return state

    @torch.no_grad()
    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`inference_state` (shapes checked)."""
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            target = getattr(self, name)
            if name not in state:
                raise NeurometryError(f"SAE weights lack tensor {name!r}")
            if tuple(state[name].shape) != tuple(target.shape):
                raise NeurometryError(
                    f"SAE tensor {name} has shape {tuple(state[name].shape)}, expected {tuple(target.shape)}"
                )
            target.copy_(state[name])
        if self.cfg.architecture in ("jumprelu", "batchtopk"):
            if "threshold" not in state:
                raise NeurometryError(f"a {self.cfg.architecture} SAE needs a 'threshold' tensor")
            t = state["threshold"].to(torch.float32)
            if self.cfg.architecture == "jumprelu":
                self.log_threshold.copy_(t.clamp_min(1e-12).log())
            else:
                self.threshold.copy_(t)
