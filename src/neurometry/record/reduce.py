"""Turning a hooked tensor into stored rows, never touching a padding position.

Token-level tensors are (batch, seq, *feat) with a (batch, seq) mask of real tokens; attention
probabilities (batch, heads, query, key) become token-level rows of shape (heads, key width), one
per query token, with keys zero-padded to a fixed width so every row has the same shape.
"""

from __future__ import annotations

import torch

TEXT_REDUCTIONS = ("tokens", "mean", "first", "last")
IMAGE_REDUCTIONS = ("mean", "none")
# over the positions of (rows, positions, ...) outputs; "steps": one row per position (a recurrent model's
# state at every time step of (trials, time, features) inputs), with trial and time as row metadata
TENSOR_REDUCTIONS = ("none", "last", "mean", "first", "steps")


def attention_as_tokens(probs: torch.Tensor, key_width: int) -> torch.Tensor:
    """(batch, heads, query, key) -> (batch, query, heads, key_width), keys zero-padded."""
    rows = probs.permute(0, 2, 1, 3)
    pad = key_width - rows.shape[-1]
    return torch.nn.functional.pad(rows, (0, pad)) if pad > 0 else rows[..., :key_width]


class TokenMask:
    """The (batch, seq) mask of real tokens, with the flat index of real positions computed once per
    batch and shared by every point."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask
        self.flat_index = mask.reshape(-1).nonzero().squeeze(1)


def reduce_tokens(values: torch.Tensor, mask: TokenMask | torch.Tensor, how: str) -> torch.Tensor:
    """Reduce (batch, seq, *feat) over real tokens only; ``mask`` is (batch, seq), True at real tokens.

    ``tokens``: every real token, batch-major then position order -> (n_real, *feat).
    ``mean``: masked mean -> (batch, *feat). ``first``: position 0. ``last``: last real token.
    """
    if not isinstance(mask, TokenMask):
        mask = TokenMask(mask)
    if how == "tokens":
        return values.flatten(0, 1).index_select(0, mask.flat_index)
    mask = mask.mask
    if how == "first":
        return values[:, 0]
    lengths = mask.sum(dim=1)
    if how == "last":
        # Real tokens may not be a prefix (left padding), so take the highest real position.
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(mask, positions, -1).max(dim=1).values
        return values[torch.arange(values.shape[0]), last]
    if how == "mean":
        weights = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - 2)))
        total = (values * weights).sum(dim=1, dtype=torch.float64)
        return (total / lengths.reshape(-1, *([1] * (values.dim() - 2)))).to(values.dtype)
    raise ValueError(f"unknown reduction {how!r}")


def reduce_spatial(values: torch.Tensor, how: str) -> torch.Tensor:
    """(batch, C, H, W) -> (batch, C) spatial mean, or unchanged for ``none``."""
    if how == "mean":
        return values.mean(dim=(2, 3))
    if how == "none":
        return values
    raise ValueError(f"unknown reduction {how!r}")
