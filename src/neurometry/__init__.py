"""neurometry: record, measure, compare, probe, steer and decompose neural network activations.

The top-level verbs are imported lazily, so `import neurometry` stays cheap until one is used::

    import neurometry
    neurometry.record("minilm", "sentences.jsonl", ["resid.*"], "acts.nmstore")
    store = neurometry.open_store("acts.nmstore")
    X = store.activations("resid.3")
"""

from __future__ import annotations

from typing import Any

from neurometry.errors import NeurometryError

__version__ = "0.1.0"
__all__ = [
    "NeurometryError", "compare", "features", "load_model", "measures", "open_store", "probe", "record", "steer",
]

_LAZY = {
    "open_store": ("neurometry.store", "open_store"),
    "load_model": ("neurometry.models", "load_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    if name in ("measures", "record", "compare", "probe", "steer", "features"):
        import importlib

        return importlib.import_module(f"neurometry.{name}")
    raise AttributeError(f"module 'neurometry' has no attribute {name!r}")
