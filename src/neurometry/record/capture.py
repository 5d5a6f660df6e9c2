"""Forward hooks that capture hook points and stop the forward pass after the last one is reached."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from neurometry.models import HookPoint


class _StopForward(Exception):
    """Raised from a hook once every requested point has been captured."""


class Capture:
    """Capture the tensors of ``points`` during ``run(forward)``.

    Each module gets one hook for all the points it serves. A module called twice in one forward
    contributes its first call. When ``stop_early`` is set, the forward pass is abandoned as soon as
    every requested point has been captured, so recording ``resid.2`` of a 30-layer model runs
    three layers.
    """

    def __init__(self, module: torch.nn.Module, points: list[HookPoint], stop_early: bool = True):
        self.module = module
        self.points = points
        self.stop_early = stop_early
        self.captured: dict[str, torch.Tensor] = {}
        self.order: list[str] = []

    def _make_hook(self, served: list[HookPoint], capture: str) -> Callable:
        def hook(_module: torch.nn.Module, inputs: Any, output: Any = None) -> None:
            value = inputs[0] if capture == "input" else output
            for point in served:
                if point.name not in self.captured:
                    self.captured[point.name] = point.select(value).detach()
                    self.order.append(point.name)
            if self.stop_early and len(self.captured) == len(self.points):
                raise _StopForward

        return hook

    def run(self, forward: Callable[[], Any]) -> dict[str, torch.Tensor]:
        """Call ``forward()`` with the hooks in place; return {point name: captured tensor}."""
        self.captured = {}
        self.order = []
        by_module: dict[tuple[str, str], list[HookPoint]] = defaultdict(list)
        for point in self.points:
            by_module[(point.module_path, point.capture)].append(point)
        handles = []
        try:
            for (path, capture), served in by_module.items():
                target = self.module.get_submodule(path)
                hook = self._make_hook(served, capture)
                if capture == "input":
                    handles.append(target.register_forward_pre_hook(hook))
                else:
                    handles.append(target.register_forward_hook(hook))
            try:
                with torch.inference_mode():
                    forward()
            except _StopForward:
                pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [p.name for p in self.points if p.name not in self.captured]
        if missing:
            raise RuntimeError(f"hook points {missing} were never reached by the forward pass")
        return self.captured
