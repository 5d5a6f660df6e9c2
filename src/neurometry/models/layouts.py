"""Per-family tables of where the standard hook points live in a transformer.

A ``TransformerLayout`` names, for one architecture family, the module paths (relative to the
base model, ``{i}`` standing for the layer index) of the embedding output, each block, the
attention output projection, the MLP hidden after its nonlinearity and the attention module
whose output tuple carries the attention probabilities. ``layout_points`` turns a layout and
a concrete model into the alias table ``{alias: HookPoint}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from neurometry.models.points import HookPoint


@dataclass(frozen=True)
class TransformerLayout:
    """Module-path templates of one transformer family (relative to the base model).

    ``embed`` / ``mlp_act`` are ``(path, capture)`` pairs; ``attn_probs_index`` is the element
    of the attention module's output tuple holding the (batch, heads, q, k) probabilities.
    """

    family: str
    model_types: tuple[str, ...]
    embed: tuple[str, str]
    layers: str
    attn_out: str
    mlp_act: tuple[str, str]
    attn_probs: str
    attn_probs_index: int = 1
    final_norm: str | None = None
    decoder: bool = False


LAYOUTS: tuple[TransformerLayout, ...] = (
    TransformerLayout(
        family="bert",
        model_types=("bert", "roberta", "xlm-roberta"),
        embed=("embeddings", "output"),  # after the embedding LayerNorm
        layers="encoder.layer",
        attn_out="encoder.layer.{i}.attention.output.dense",
        mlp_act=("encoder.layer.{i}.intermediate", "output"),
        attn_probs="encoder.layer.{i}.attention.self",
    ),
    TransformerLayout(
        family="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        embed=("embed_tokens", "output"),
        layers="layers",
        attn_out="layers.{i}.self_attn.o_proj",
        mlp_act=("layers.{i}.mlp.down_proj", "input"),  # act(gate(x)) * up(x)
        attn_probs="layers.{i}.self_attn",
        final_norm="norm",
        decoder=True,
    ),
    TransformerLayout(
        family="gpt2",
        model_types=("gpt2",),
        embed=("drop", "output"),  # wte + wpe (dropout is the identity in eval mode)
        layers="h",
        attn_out="h.{i}.attn.c_proj",
        mlp_act=("h.{i}.mlp.c_proj", "input"),
        attn_probs="h.{i}.attn",
        final_norm="ln_f",
        decoder=True,
    ),
)


def layout_for_model_type(model_type: str | None) -> TransformerLayout | None:
    """The layout whose family covers this ``config.model_type``, else None."""
    for layout in LAYOUTS:
        if model_type in layout.model_types:
            return layout
    return None


def base_prefix(model: nn.Module) -> str:
    """Dotted prefix of the base transformer inside a HF model (``"model."``, ``"bert."`` or ``""``)."""
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        return prefix + "."
    return ""


def num_layers(model: nn.Module, layout: TransformerLayout) -> int:
    """Number of blocks in the model's layer list."""
    return len(model.get_submodule(base_prefix(model) + layout.layers))


def layout_points(model: nn.Module, layout: TransformerLayout) -> dict[str, HookPoint]:
    """The alias table of ``model`` under ``layout`` (unordered; see ``order_points``).

    Aliases: ``embed``; per block i ``resid.i`` (block output, = HF ``hidden_states[i+1]``
    except after a final norm), ``attn_out.i``, ``mlp_act.i``, ``attn_pattern.i``;
    ``final_norm`` when the family has one; ``logits`` when the model has an ``lm_head``.
    """
    pre = base_prefix(model)
    points: dict[str, HookPoint] = {}

    def add(name: str, path: str, kind: str, capture: str = "output", index: int | None = None) -> None:
        points[name] = HookPoint(name, pre + path, kind, capture, index)

    add("embed", layout.embed[0], "tokens", layout.embed[1])
    for i in range(num_layers(model, layout)):
        add(f"attn_pattern.{i}", layout.attn_probs.format(i=i), "attention", index=layout.attn_probs_index)
        add(f"attn_out.{i}", layout.attn_out.format(i=i), "tokens")
        path, capture = layout.mlp_act
        add(f"mlp_act.{i}", path.format(i=i), "tokens", capture)
        add(f"resid.{i}", f"{layout.layers}.{i}", "tokens")
    if layout.final_norm:
        add("final_norm", layout.final_norm, "tokens")
    if isinstance(getattr(model, "lm_head", None), nn.Module):
        points["logits"] = HookPoint("logits", "lm_head", "tokens")
    return points
