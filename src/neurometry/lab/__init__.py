"""The lab: classic toy models trained on a CPU in minutes, each reproducing a published finding about
representations over training. Entries plug in by name in :data:`LABS` (``module:class``, imported when
asked for)."""

from __future__ import annotations

from importlib import import_module

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.lab.base import Lab, ProbeData

LABS = {
    "grokking": "neurometry.lab.grokking:GrokkingLab",
    "induction": "neurometry.lab.induction:InductionLab",
    "superposition": "neurometry.lab.superposition:SuperpositionLab",
    "collapse": "neurometry.lab.collapse:CollapseLab",
    "flipflop": "neurometry.lab.flipflop:FlipFlopLab",
    "integrator": "neurometry.lab.integrator:IntegratorLab",
}


def get_lab(name: str) -> type[Lab]:
    """The lab entry class registered as ``name``; an unknown name is refused with the known ones."""
    if name not in LABS:
        raise NeurometryError(f"no lab {name!r}{did_you_mean(name, LABS)}; labs: {', '.join(LABS)}")
    module, _, attribute = LABS[name].partition(":")
    return getattr(import_module(module), attribute)


__all__ = ["LABS", "Lab", "ProbeData", "get_lab"]
