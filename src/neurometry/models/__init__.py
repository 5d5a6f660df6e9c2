"""Model zoo, loading and hook-point tables.

``load_model(spec)`` gives a ``LoadedModel`` (module, tokenizer or preprocessing, and its
``HookPoint`` aliases); ``zoo()`` lists the built-in models; ``describe_points`` lists a
model's points with their shapes. :mod:`neurometry.models.hooks` is the one way to run a model
with hooks (capture, add to or replace the tensors of hook points).
"""

from neurometry.models.describe import describe_points
from neurometry.models.layouts import LAYOUTS, TransformerLayout
from neurometry.models.load import load_model
from neurometry.models.loaded import LoadedModel
from neurometry.models.points import HookPoint
from neurometry.models.registry import ZooEntry, zoo

__all__ = [
    "HookPoint",
    "LAYOUTS",
    "LoadedModel",
    "TransformerLayout",
    "ZooEntry",
    "describe_points",
    "load_model",
    "zoo",
]
