"""`neurometry serve`: a local read-only web dashboard over a store (runs, points, comparisons,
probes, neurons, SAE features, and a steering playground when a model is given)."""

from neurometry.app.playground import Playground
from neurometry.app.server import create_app, serve

__all__ = ["Playground", "create_app", "serve"]
