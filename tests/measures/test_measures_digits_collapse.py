"""Neural collapse appears while an MLP trains on scikit-learn's bundled digits (Papyan et al. 2020)."""

import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from neurometry.measures import run_measures


def train_digits_mlp(epochs: int = 600, seed: int = 0):
    """Full-batch AdamW (weight decay 0.05, label smoothing 0.2, both of which speed up collapse) on
    all 1797 digits; returns the penultimate features and last layer (W, b) at initialisation and
    after training, and the labels. About 2 s on 2 cores."""
    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    yt = torch.tensor(y)
    body = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU()
    )
    head = torch.nn.Linear(64, 10)

    def snapshot():
        with torch.no_grad():
            return body(x).numpy().astype(np.float64), (head.weight.numpy().copy(), head.bias.numpy().copy())

    start = snapshot()
    opt = torch.optim.AdamW([*body.parameters(), *head.parameters()], lr=3e-3, weight_decay=5e-2)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(body(x)), yt, label_smoothing=0.2).backward()
        opt.step()
    return start, snapshot(), y


def test_nc1_falls_and_nc4_rises_during_training():
    t = time.perf_counter()
    (h0, clf0), (h1, clf1), y = train_digits_mlp()
    names = ["nc1", "nc4", "cdnv"]
    before = run_measures(lambda: [h0], names, labels=y, classifier=clf0)
    after = run_measures(lambda: [h1], names, labels=y, classifier=clf1)
    print(
        f"nc1 {before['nc1'].value:.3g} -> {after['nc1'].value:.3g}, nc4 {before['nc4'].value:.3f} -> "
        f"{after['nc4'].value:.3f}, cdnv {before['cdnv'].value:.3g} -> {after['cdnv'].value:.3g} "
        f"({time.perf_counter() - t:.1f} s)"
    )
    assert after["nc1"].value * 10 <= before["nc1"].value
    assert after["nc4"].value >= 0.95
    assert after["cdnv"].value < before["cdnv"].value
