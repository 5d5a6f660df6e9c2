"""Hook points: where in a model an activation is read, and how to pick the tensor out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.models.lstm import lstm_cell_states

KINDS = ("tokens", "attention", "spatial", "vector")
CAPTURES = ("output", "input", "cell_states")


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in ``value`` (a tensor, tuple/list, dict or ``ModelOutput``), else None."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):  # ModelOutput is an OrderedDict of the non-None fields
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class HookPoint:
    """One place to read activations.

    Attributes:
        name: alias such as ``"resid.3"``, or the module path itself when not aliased.
        module_path: dotted path of the ``nn.Module`` to hook (``""`` is the root module).
        kind: layout of the captured tensor, batch axis first:
            ``"tokens"`` (batch, seq, *feat), ``"attention"`` (batch, heads, query, key),
            ``"spatial"`` (batch, C, H, W), ``"vector"`` (batch, d).
        capture: ``"output"`` (forward hook on the module's output), ``"input"`` (forward
            pre-hook, first positional input) or ``"cell_states"`` (an ``nn.LSTM``'s cell state at every
            step, recomputed from its inputs after it ran: see ``models.lstm``; read-only).
        index: element to take when the hooked value is a tuple/``ModelOutput``; None takes the
            tensor itself, or ``.logits``, or the first tensor found.
    """

    name: str
    module_path: str
    kind: str
    capture: str = "output"
    index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.capture not in CAPTURES:
            raise ValueError(f"capture must be one of {CAPTURES}, not {self.capture!r}")

    def select(self, value: Any) -> torch.Tensor:
        """Pick this point's tensor from what the hook saw.

        ``value`` is the module output (capture="output"), the positional-argument tuple
        (capture="input") or ``(module, arguments)`` (capture="cell_states"). Returns a tensor whose
        first axis is the batch.
        """
        if self.capture == "cell_states":
            module, args = value
            return lstm_cell_states(module, args)
        if self.capture == "input":
            args = value if isinstance(value, (tuple, list)) else (value,)
            picked = args[self.index or 0] if args else None
        elif self.index is not None:
            if isinstance(value, dict):
                value = tuple(value.values())
            picked = value[self.index] if isinstance(value, (tuple, list)) else value
        elif isinstance(value, torch.Tensor):
            picked = value
        else:
            logits = getattr(value, "logits", None)
            picked = logits if isinstance(logits, torch.Tensor) else _first_tensor(value)
        if picked is None and self.kind == "attention":
            raise NeurometryError(
                f"attention probabilities for {self.name!r} were not computed; "
                "call LoadedModel.enable_attention_probs() before running the model"
            )
        if not isinstance(picked, torch.Tensor):
            raise NeurometryError(
                f"hook point {self.name!r} ({self.module_path or '<root>'}) produced no tensor; "
                "pick another point (run `neurometry points MODEL` to list them)"
            )
        return picked

    def module(self, root: nn.Module) -> nn.Module:
        """The ``nn.Module`` this point hooks inside ``root``."""
        try:
            return root.get_submodule(self.module_path) if self.module_path else root
        except AttributeError as exc:
            raise NeurometryError(
                f"model has no module {self.module_path!r} for point {self.name!r}; "
                "run `neurometry points MODEL` to list valid points"
            ) from exc

    def attach(
        self, root: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor | None]
    ) -> torch.utils.hooks.RemovableHandle:
        """Register a hook on ``root`` that calls ``fn(tensor)`` with this point's tensor.

        If ``fn`` returns a tensor it replaces the captured one in the forward pass (for
        steering and patching). Returns the handle; call ``.remove()`` when done.
        """
        mod = self.module(root)
        if self.capture == "cell_states":

            def read_hook(_m: nn.Module, args: tuple, _output: Any) -> None:
                if fn(self.select((_m, args))) is not None:
                    raise NeurometryError(f"{self.name!r} is an LSTM's cell state read after the fact; "
                                          "it cannot be edited: edit the LSTM's output instead")

            return mod.register_forward_hook(read_hook)
        if self.capture == "input":

            def pre_hook(_m: nn.Module, args: tuple) -> tuple | None:
                new = fn(self.select(args))
                if new is None:
                    return None
                i = self.index or 0
                return (*args[:i], new, *args[i + 1 :])

            return mod.register_forward_pre_hook(pre_hook)

        def hook(_m: nn.Module, _args: tuple, output: Any) -> Any:
            new = fn(self.select(output))
            if new is None:
                return None
            return _replace(output, self.select(output), new)

        return mod.register_forward_hook(hook)


def _replace(output: Any, old: torch.Tensor, new: torch.Tensor) -> Any:
    """``output`` with the tensor ``old`` (found by identity) swapped for ``new``."""
    if output is old:
        return new
    if isinstance(output, tuple):
        return tuple(_replace(o, old, new) for o in output)
    if isinstance(output, list):
        return [_replace(o, old, new) for o in output]
    if isinstance(output, dict):
        for key, val in output.items():
            if val is old:
                output[key] = new
        return output
    return output
