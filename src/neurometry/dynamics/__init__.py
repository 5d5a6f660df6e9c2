"""Recurrent networks (and brains) as dynamical systems: the map a model's state follows, its fixed and slow
points and their linearisation, Lyapunov spectra along trajectories, and dynamical similarity between
systems (DSA)."""
