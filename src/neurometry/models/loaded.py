"""``LoadedModel``: a model ready to record, with its tokenizer or preprocessing and hook points."""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.models.lstm import cell_state_point_names
from neurometry.models.points import HookPoint
from neurometry.models.probe import PROBE_LEN, ModuleProbe, event_order, guess_kind, probe_modules


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a point glob: ``*`` matches within one dotted component, ``**`` across components."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^.]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


MODALITIES = ("text", "image", "tensor")


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?")


@dataclass
class LoadedModel:
    """A model with everything needed to run it on raw inputs and hook it.

    Attributes:
        name: zoo name, folder path or ``"module:attr"``.
        module: the ``nn.Module`` (eval mode; float32 on the CPU unless loaded or placed otherwise).
        modality: ``"text"``, ``"image"`` or ``"tensor"`` (numeric arrays in, e.g. token ids of a
            toy model or feature vectors: rows of a .npy/.npz file, batched as they are).
        tokenizer: HF tokenizer for text (pad token set, right padding), else None.
        preprocess: for images, ``list of paths -> (B, 3, H, W)`` float batch, else None.
        points: every alias -> ``HookPoint``, in depth order.
        family: layout family (``"bert"``, ``"llama"``, ``"gpt2"``, ``"efficientnet"``) or None.
        info: free-form facts about the load (source, seconds, ...).
    """

    name: str
    module: nn.Module
    modality: str
    tokenizer: Any | None
    preprocess: Callable[[list[str]], torch.Tensor] | None
    points: dict[str, HookPoint]
    family: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    example_input: torch.Tensor | None = None  # tensor models: one batch (of 1) the module takes, for probing
    _probe: dict[str, ModuleProbe] | None = field(default=None, init=False, repr=False)
    _order: dict[tuple[str, str], int] | None = field(default=None, init=False, repr=False)
    _attn_default: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise NeurometryError(f"modality must be one of {', '.join(MODALITIES)}, not {self.modality!r}")
        for name, path in cell_state_point_names(self.module).items():  # an LSTM's memory, per step
            self.points.setdefault(name, HookPoint(name, path, "tokens", "cell_states"))
        order = self.order()
        self.points = dict(sorted(self.points.items(), key=lambda kv: self._rank(kv[1], order)))

    # ------------------------------------------------------------------ placement
    @property
    def device_map(self) -> dict[str, Any] | None:
        """Module path -> device (a GPU number, ``cpu`` or ``disk``) of a model spread by ``device_map``
        (accelerate); None for a model on one device."""
        return getattr(self.module, "hf_device_map", None) or None

    @property
    def device(self) -> torch.device:
        """Where inputs go: for a model spread by ``device_map``, its first GPU (the CPU when it has none;
        accelerate moves activations between its parts); else the device of the module's first parameter
        (or buffer), the CPU for a module without any."""
        if self.device_map:
            gpus = [v for v in self.device_map.values() if str(v) not in ("cpu", "disk", "meta")]
            return torch.device(f"cuda:{gpus[0]}" if isinstance(gpus[0], int) else gpus[0]) if gpus else torch.device("cpu")
        for tensor in itertools.chain(self.module.parameters(), self.module.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def placement(self) -> str:
        """Where the model runs, as saved in a run's settings: ``cpu``, ``cuda:0``, or for a model spread by
        ``device_map`` its devices in order, e.g. ``cuda:0+cuda:1+cpu``."""
        from neurometry.models.devices import device_name

        if not self.device_map:
            return device_name(self.device)
        names = [f"cuda:{v}" if isinstance(v, int) else str(v) for v in self.device_map.values()]
        return "+".join(dict.fromkeys(names))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's first floating parameter; float32 for a module without any."""
        for tensor in self.module.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def place(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> LoadedModel:
        """Move the module to ``device`` and cast its floating weights to ``dtype`` (in place; returns self).

        ``device``: ``cpu|cuda|cuda:N|mps|auto`` or a ``torch.device``; ``dtype``:
        ``float32|bfloat16|float16`` or a ``torch.dtype``; ``None`` leaves either as it is.
        """
        from neurometry.models.devices import resolve_device, resolve_model_dtype

        target = resolve_device(device) if device is not None else None
        cast = resolve_model_dtype(dtype) if dtype is not None else None
        if (target is not None and target != self.device) or (cast is not None and cast != self.dtype):
            if self.device_map:
                raise NeurometryError(
                    f"model {self.name!r} is spread over {self.placement} by device_map and cannot be moved or "
                    "cast; load it again with the --device and --model-dtype you want"
                )
            self.module.to(device=target, dtype=cast)
        return self

    # ------------------------------------------------------------------ running
    def forward(self, batch: Any) -> Any:
        """Run the model on one batch.

        Text: ``batch`` is the tokenizer output (``input_ids`` and ``attention_mask``, each
        (B, T)); a HF model receives only those (plus ``token_type_ids`` when its config has
        segment embeddings) and decoders get ``use_cache=False``; a plain module receives the
        keys its ``forward`` accepts. Image: ``batch`` is a (B, 3, H, W) tensor.
        Gradient mode is left to the caller (wrap in ``torch.no_grad()`` to record).
        """
        if not isinstance(batch, Mapping):
            return self.module(batch)
        sig = inspect.signature(self.module.forward)
        params = sig.parameters
        hf = is_hf_model(self.module)
        if hf:
            keys = {"input_ids", "attention_mask"}
            if getattr(self.module.config, "type_vocab_size", None):  # BERT-like: segment ids matter
                keys.add("token_type_ids")
            kwargs = {k: v for k, v in batch.items() if k in keys and k in params}
        elif any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = dict(batch)
        else:
            kwargs = {k: v for k, v in batch.items() if k in params}
        if not kwargs:
            return self.module(batch["input_ids"])
        if hf and "use_cache" in params:
            kwargs["use_cache"] = False
        return self.module(**kwargs)

    def enable_attention_probs(self, enabled: bool = True) -> None:
        """Make attention modules return their probabilities (needed by ``attn_pattern.*``).

        For Hugging Face models this switches the attention implementation to ``"eager"``
        (``enabled=False`` restores the one it was loaded with, usually ``"sdpa"``); the
        results agree with SDPA to about 1e-6. No-op for other models.
        """
        if not is_hf_model(self.module):
            return
        current = self.module.config._attn_implementation
        if self._attn_default is None:
            self._attn_default = current
        target = "eager" if enabled else self._attn_default
        if current != target:
            self.module.set_attn_implementation(target)

    @property
    def attention_probs_enabled(self) -> bool:
        """Whether attention modules currently return probabilities."""
        return is_hf_model(self.module) and self.module.config._attn_implementation == "eager"

    # ------------------------------------------------------------------ points
    def order(self) -> dict[tuple[str, str], int]:
        """Depth rank of every hook site ``(module_path, capture)`` (see ``probe.event_order``)."""
        if self._order is None:
            self._order = event_order(self.module)
        return self._order

    def _rank(self, p: HookPoint, order: dict[tuple[str, str], int] | None = None) -> tuple[int, bool, int]:
        order = order if order is not None else self.order()
        site = (p.module_path, "input" if p.capture == "input" else "output")
        return (order.get(site, len(order)), p.capture == "cell_states", p.index if p.index is not None else -1)

    def module_paths(self) -> list[str]:
        """Dotted paths of every submodule (the root, ``""``, excluded)."""
        return [path for path, _ in self.module.named_modules() if path]

    def probe(self) -> dict[str, ModuleProbe]:
        """Output shape of every module on a one-example forward (computed once, cached)."""
        if self._probe is None:
            self._probe = probe_modules(self)
        return self._probe

    def module_point(self, path: str, strict: bool = True) -> HookPoint | None:
        """A hook point on the output of the module at ``path``; an alias when one is equivalent.

        The kind is guessed from a probe forward (3-D float -> tokens, 4-D -> spatial or
        attention, 2-D -> vector); a tuple output is read at its first tensor.
        """
        for p in self.points.values():
            if p.module_path == path and p.capture == "output" and p.index is None:
                return p
        found = self.probe().get(path)
        if found is None:
            if strict:
                raise NeurometryError(
                    f"module {path!r} of {self.name} does not run in a forward pass; pick another point "
                    f"(run `neurometry points {self.name}` to list them)"
                )
            return None
        seq_len = PROBE_LEN if self.modality == "text" else None
        kind = guess_kind(found.shape, self.modality, seq_len)
        return HookPoint(path, path, kind, "output", found.index)

    def add_aliases(self, aliases: Mapping[str, str]) -> LoadedModel:
        """Name module outputs: ``{alias: module path}`` become points of this model (and of what it records);
        returns self. An unknown path is refused like any unknown point."""
        for alias, path in aliases.items():
            found = self.module_point(path)
            self.points[alias] = HookPoint(alias, path, found.kind, found.capture, found.index)
        return self

    def resolve(self, patterns: list[str] | str) -> list[HookPoint]:
        """Hook points named by ``patterns``, in depth order, without duplicates.

        A pattern is an alias (``resid.3``), a module path (``encoder.layer.3.output``) or a
        glob over both (``resid.*``, ``attn_*.3``, ``encoder.**.dense``): ``*`` matches within
        one dotted component, ``**`` across components. Raises ``NeurometryError`` with a
        suggestion for a pattern that matches nothing.
        """
        if isinstance(patterns, str):
            patterns = [patterns]
        paths = self.module_paths()
        path_set = set(paths)
        chosen: dict[tuple[str, str, int | None], HookPoint] = {}

        def add(p: HookPoint) -> None:
            key = (p.module_path, p.capture, p.index)
            if key not in chosen or (chosen[key].name == chosen[key].module_path and p.name != p.module_path):
                chosen[key] = p

        for pat in patterns:
            if pat in self.points:
                add(self.points[pat])
            elif not _is_glob(pat) and (pat in path_set or pat == ""):
                add(self.module_point(pat))
            elif _is_glob(pat):
                rx = glob_regex(pat)
                hits = [p for name, p in self.points.items() if rx.match(name)]
                for path in paths:
                    if rx.match(path):
                        p = self.module_point(path, strict=False)
                        if p is not None:
                            hits.append(p)
                if not hits:
                    raise NeurometryError(
                        f"pattern {pat!r} matches no point of {self.name}"
                        f"{did_you_mean(pat, [*self.points, *paths])}; "
                        f"run `neurometry points {self.name}` to list them"
                    )
                for p in hits:
                    add(p)
            else:
                raise NeurometryError(
                    f"unknown point {pat!r} for {self.name}{did_you_mean(pat, [*self.points, *paths])}; "
                    f"run `neurometry points {self.name}` to list them"
                )
        return sorted(chosen.values(), key=self._rank)


def is_hf_model(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``PreTrainedModel`` (without importing transformers)."""
    return any(
        c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
        for c in type(module).__mro__
    )
