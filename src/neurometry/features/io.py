"""Save and load SAEs in SAELens' folder layout: ``cfg.json`` + ``sae_weights.safetensors``.

Our own settings ride along under the ``neurometry`` key of ``cfg.json`` (SAELens ignores it), and
SAELens-saved SAEs of the same architectures load here: ``topk``, ``standard`` (our ``relu``) and
``jumprelu``. A ``batchtopk`` SAE is saved for SAELens as the JumpReLU it is at inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from neurometry.errors import NeurometryError
from neurometry.features.sae import SAEConfig, SparseAutoencoder
from neurometry.files import read_safetensors

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"

_TO_SAELENS = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}
_FROM_SAELENS = {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu"}


def save_sae(folder: str | Path, sae: SparseAutoencoder, *, device: str = "cpu") -> Path:
    """Write ``folder/cfg.json`` and ``folder/sae_weights.safetensors`` (float32, from CPU copies wherever
    ``sae`` lives); returns the folder. ``device`` is recorded as cfg.json's ``device``: where the SAE was
    trained (SAELens' loader takes its own ``device`` argument instead).

    Weights holding NaN or Inf are refused before anything is written."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors = {name: t.to("cpu", torch.float32).contiguous() for name, t in sae.inference_state().items()}
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise NeurometryError(f"SAE tensors {', '.join(bad)} hold NaN or Inf; not saving them to {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    document: dict[str, Any] = {
        "architecture": _TO_SAELENS[cfg.architecture],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": device,
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",  # any input scaling used in training is folded into the weights
        "reshape_activations": "none",
        "metadata": {"model_name": cfg.model, "hook_name": cfg.point},
        "neurometry": cfg.to_dict(),
    }
    if cfg.architecture == "topk":
        document["k"] = cfg.k
    # write beside, then rename: a reader never sees a half-written SAE
    tmp_weights = folder / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp_weights))
    tmp_weights.replace(folder / WEIGHTS_FILE)
    tmp_cfg = folder / (CFG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps(document, indent=2) + "\n")
    tmp_cfg.replace(folder / CFG_FILE)
    return folder


def read_config(folder: str | Path) -> SAEConfig:
    """The :class:`SAEConfig` of a saved SAE (ours or SAELens')."""
    folder = Path(folder)
    path = folder / CFG_FILE
    if not folder.is_dir():
        raise NeurometryError(f"SAE folder {folder} does not exist; give the --out folder of `neurometry sae train`")
    if not path.is_file():
        raise NeurometryError(f"{folder} has no {CFG_FILE}; it is not a saved SAE folder")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NeurometryError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise NeurometryError(f"{path} must hold a JSON object (an SAE config); it holds {type(document).__name__}")
    try:
        return _config(document, path)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise NeurometryError(f"{path} is not a readable SAE config ({type(error).__name__}: {error})") from None


def _config(document: dict[str, Any], path: Path) -> SAEConfig:
    if isinstance(document.get("neurometry"), dict):
        return SAEConfig.from_dict(document["neurometry"])
    arch = document.get("architecture", "standard")
    if arch not in _FROM_SAELENS:
        raise NeurometryError(
            f"{path}: SAELens architecture {arch!r} is not supported; supported: {', '.join(_FROM_SAELENS)}"
        )
    if document.get("normalize_activations", "none") not in ("none", None):
        raise NeurometryError(
            f"{path}: normalize_activations={document['normalize_activations']!r} is not supported; "
            "fold the scaling into the weights first (SAELens: fold_activation_norm_scaling_factor)"
        )
    if document.get("reshape_activations", "none") not in ("none", None):
        raise NeurometryError(f"{path}: reshape_activations={document['reshape_activations']!r} is not supported")
    if not document.get("apply_b_dec_to_input", True):
        raise NeurometryError(f"{path}: apply_b_dec_to_input=false is not supported")
    metadata = document.get("metadata") or {}
    return SAEConfig(
        d_in=int(document["d_in"]),
        d_sae=int(document["d_sae"]),
        architecture=_FROM_SAELENS[arch],
        k=int(document.get("k", 32)),
        model=str(metadata.get("model_name") or ""),
        point=str(metadata.get("hook_name") or ""),
        extra={"saelens_version": metadata.get("sae_lens_version")},
    )


def load_sae(folder: str | Path) -> SparseAutoencoder:
    """An SAE saved by :func:`save_sae` or by SAELens' ``save_model`` (same architectures), in eval mode."""

    folder = Path(folder)
    cfg = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise NeurometryError(f"{folder} has no {WEIGHTS_FILE}; the SAE was not saved completely")
    state = read_safetensors(weights, as_torch=True)
    sae = SparseAutoencoder(cfg)
    sae.load_inference_state({k: v.to(torch.float32) for k, v in state.items()})
    return sae.eval()
