"""`neurometry serve`: a local read-only web dashboard over a store (runs, points, comparisons,
probes, neurons, SAE features, and a steering playground when a model is given)."""

from neurometry.serve.app import create_app, serve
from neurometry.serve.playground import Playground

__all__ = ["Playground", "create_app", "serve"]
