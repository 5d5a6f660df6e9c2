"""NECO over training: OOD separability against neural collapse across checkpoints (Ammar et al. 2024).

An MLP is trained here on half of scikit-learn's digits 0-5 well past zero training error. At 12
log-spaced checkpoints its penultimate features give NC1 on the training rows and the AUROC of NECO, MSP
and Mahalanobis with the other half of 0-5 as ID and the unseen digits 6-9 as OOD
(:func:`neurometry.detect.ood_over_checkpoints`).

Measured (seeds 0, 1, 2; this machine's CPU; docs/detect.md "NECO over training"):

- with batch norm and Papyan et al.'s recipe (SGD, momentum, weight decay 5e-4, step decay): NC1 falls
  15.0x, 16.9x, 19.0x; NECO's AUROC rises from 0.713/0.693/0.634 to 0.984/0.982/0.984, and its Spearman
  correlation with NC1 is -1.000/-0.993/-0.993 over all checkpoints and -1.000 over the terminal phase
  alone. NECO does track NC1, but so does MSP (-0.99 to -1.00), and NECO's lead over MSP at the end is
  small (+0.004 to +0.007). Mahalanobis tracks NC1 too but ends below MSP at seeds 1 and 2.
- with the static testbed's recipe (no batch norm, AdamW): NC1 falls only 2.8-3.8x, still 1.3-1.6x in
  the terminal phase, while NECO's AUROC stays flat there (within 0.003; terminal-phase Spearman +0.70,
  0.00, +1.00) and MSP's keeps rising. Whether NECO tracks NC1 depends on the training recipe.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from neurometry.detect import OODOverCheckpoints, ood_over_checkpoints
from neurometry.errors import NeurometryError
from neurometry.lab.base import log_spaced_steps
from neurometry.threads import blas_threads
from tests.detect.test_ood_digits import ID_CLASSES, digits_split

STEPS = 1000  # zero training error by step 23-43; the rest is the terminal phase
CHECKPOINTS = 12  # log-spaced from step 1 (log_spaced_steps, as the collapse lab saves, without step 0)


def train_with_checkpoints(seed: int, batch_norm: bool = True, steps: int = STEPS) -> dict:
    """Train a 64 -> 128 -> 64 ReLU MLP with a linear head on half of the digits 0-5 (stratified, pixels / 16,
    the split of test_ood_digits.py), full batch, and record at log-spaced steps from 1 to ``steps`` the
    penultimate features (eval mode) of the training rows, the held-out ID rows and the digits 6-9, and the
    head (W, b).

    ``batch_norm=True``: Linear -> BatchNorm1d -> ReLU blocks and Papyan et al.'s recipe (SGD, momentum 0.9,
    lr 0.05 divided by 10 at 1/3 and 2/3 of the steps, weight decay 5e-4). ``batch_norm=False``: the static
    testbed's network and optimiser (Linear -> ReLU, AdamW lr 3e-3, weight decay 0.05). About 2-3 s.
    Returns the lists ``ood_over_checkpoints`` takes (``train``, ``labels``, ``id``, ``ood``,
    ``classifiers``) and ``steps``."""
    torch.manual_seed(seed)
    x_train, x_test, y_train, _, x_ood = digits_split(seed)
    pixels = {name: torch.tensor(rows, dtype=torch.float32) for name, rows in
              (("train", x_train), ("id", x_test), ("ood", x_ood))}
    norm = torch.nn.BatchNorm1d if batch_norm else lambda width: torch.nn.Identity()
    body = torch.nn.Sequential(
        torch.nn.Linear(64, 128), norm(128), torch.nn.ReLU(), torch.nn.Linear(128, 64), norm(64), torch.nn.ReLU()
    )
    head = torch.nn.Linear(64, ID_CLASSES)
    parameters = [*body.parameters(), *head.parameters()]
    if batch_norm:
        optimiser = torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, [steps // 3, 2 * steps // 3], gamma=0.1)
    else:
        optimiser = torch.optim.AdamW(parameters, lr=3e-3, weight_decay=5e-2)
        schedule = None
    targets = torch.tensor(y_train)
    recorded = sorted(set(log_spaced_steps(steps, CHECKPOINTS)) - {0})
    series: dict[str, list] = {"train": [], "id": [], "ood": [], "classifiers": []}
    for step in range(1, steps + 1):
        body.train()
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(body(pixels["train"])), targets).backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        if step in recorded:
            body.eval()
            with torch.no_grad():
                for name, rows in pixels.items():
                    series[name].append(body(rows).double().numpy())
            series["classifiers"].append(
                (head.weight.detach().double().numpy().copy(), head.bias.detach().double().numpy().copy())
            )
    return {**series, "labels": y_train, "steps": recorded}


def track(seed: int, batch_norm: bool = True) -> OODOverCheckpoints:
    with blas_threads(1, torch_threads=True):
        s = train_with_checkpoints(seed, batch_norm)
        return ood_over_checkpoints(
            s["train"], s["labels"], s["id"], s["ood"], s["classifiers"], steps=s["steps"],
            scores=("neco", "msp", "mahalanobis"),
        )


def show(r: OODOverCheckpoints, title: str, seconds: float) -> None:
    print(f"\n{title}: {len(r.steps)} checkpoints, terminal phase from step {r.steps[r.terminal_start]:.0f}, "
          f"{seconds:.1f} s")
    for k, step in enumerate(r.steps):
        print(f"step {step:5.0f} train error {r.train_error[k]:.3f} NC1 {r.nc1[k]:.4f} AUROC "
              + " ".join(f"{name} {values[k]:.4f}" for name, values in r.auroc.items()))
    print("spearman(NC1, AUROC):", {k: round(v, 3) for k, v in r.spearman.items()},
          "terminal phase:", {k: round(v, 3) for k, v in r.terminal_spearman.items()})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neco_auroc_tracks_nc1_over_checkpoints(seed):
    start = time.perf_counter()
    r = track(seed)
    show(r, f"batch norm, SGD, seed {seed}", time.perf_counter() - start)
    neco, msp = r.auroc["neco"], r.auroc["msp"]
    terminal = r.terminal_start
    # zero training error from step 43 on (seeds 0-2), then 5 more checkpoints up to step 1000
    assert terminal is not None and r.steps[terminal] <= 100 and len(r.steps) - terminal >= 5
    # NC1 falls > 10x from the first checkpoint to the last (measured 15.0x, 16.9x, 19.0x), and keeps
    # falling in the terminal phase (1.63x, 1.56x, 1.57x)
    assert r.nc1[0] / r.nc1[-1] > 10 and r.nc1[terminal] / r.nc1[-1] > 1.3
    # NECO separates the unseen digits better at the end (measured 0.713/0.693/0.634 -> 0.984/0.982/0.984),
    # also within the terminal phase (+0.0045, +0.0038, +0.0067)
    assert neco[-1] > neco[0] + 0.2 and neco[-1] > 0.975 and neco[-1] > neco[terminal] + 0.002
    # its AUROC ranks against NC1: Spearman -1.000/-0.993/-0.993 over all checkpoints, -1.000 in the
    # terminal phase at every seed
    assert r.spearman["neco"] < -0.95 and r.terminal_spearman["neco"] < -0.9
    # NECO beats MSP at the last checkpoint (by 0.0071, 0.0071, 0.0039). MSP tracks NC1 just as well
    # (Spearman -0.99 to -1.00), and Mahalanobis does *not* beat MSP here (0.979/0.964/0.967 against
    # 0.977/0.975/0.981) though it tracks NC1 too (-0.99 to -1.00)
    assert neco[-1] > msp[-1] + 0.002
    assert r.spearman["mahalanobis"] < -0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_batch_norm_neco_stops_tracking_nc1_in_the_terminal_phase(seed):
    """The static testbed's recipe (no batch norm, AdamW): NC1 still falls in the terminal phase, but NECO's
    AUROC stays flat there while MSP's keeps rising: the tracking is not automatic."""
    start = time.perf_counter()
    r = track(seed, batch_norm=False)
    show(r, f"no batch norm, AdamW, seed {seed}", time.perf_counter() - start)
    neco = r.auroc["neco"]
    terminal = r.terminal_start
    assert terminal is not None and len(r.steps) - terminal >= 4  # zero error from step 81 (seeds 0-2)
    # NC1 falls less overall (2.8x, 3.7x, 3.8x) but still falls in the terminal phase (1.57x, 1.28x, 1.36x)
    assert r.nc1[0] / r.nc1[-1] < 5 and r.nc1[terminal] / r.nc1[-1] > 1.2
    # NECO's AUROC moves by less than 0.005 there (-0.0028, +0.0004, -0.0027) and does not rank against
    # NC1 (terminal-phase Spearman +0.70, 0.00, +1.00), while MSP's does (-1.00, -1.00, -0.70)
    assert abs(neco[-1] - neco[terminal]) < 0.005
    assert r.terminal_spearman["neco"] > -0.5 and r.terminal_spearman["msp"] < -0.5
    # over all checkpoints the learning phase still gives NECO a negative correlation (-0.83, -0.83, -0.76)
    assert r.spearman["neco"] < -0.6


def test_ood_over_checkpoints_rejects_bad_input():
    rng = np.random.default_rng(0)
    h = [rng.normal(size=(30, 4)) for _ in range(3)]
    labels = np.repeat([0, 1, 2], 10)
    heads = [(rng.normal(size=(3, 4)), np.zeros(3)) for _ in range(3)]
    r = ood_over_checkpoints(h, labels, h, [x + 3 for x in h], heads, scores=("msp",))
    assert r.nc1.shape == (3,) and np.array_equal(r.steps, [0, 1, 2]) and set(r.to_dict()["auroc"]) == {"msp"}
    with pytest.raises(NeurometryError, match="one entry per checkpoint"):
        ood_over_checkpoints(h, labels, h[:2], h, heads)
    with pytest.raises(NeurometryError, match="at least 3"):
        ood_over_checkpoints(h[:2], labels, h[:2], h[:2], heads[:2])
    with pytest.raises(NeurometryError, match="strictly increasing"):
        ood_over_checkpoints(h, labels, h, h, heads, steps=[0, 2, 1])
    with pytest.raises(NeurometryError, match="rows but train_labels"):
        ood_over_checkpoints(h, labels[:-1], h, h, heads)
    with pytest.raises(NeurometryError, match="columns"):
        ood_over_checkpoints(h, labels, h, [x[:, :3] for x in h], heads)
    with pytest.raises(NeurometryError, match="unknown OOD score"):
        ood_over_checkpoints(h, labels, h, h, heads, scores=("necoo",))
