r"""Llama (grouped-query attention, gated MLP): the GPT-NeoX layout with shared-input node sets.

With hidden size ``F``, ``H`` query heads and ``K`` key/value heads of size ``d`` (``H*d`` query
rows, ``K*d`` key/value rows), intermediate size ``I`` and ``S = neurons_per_layer``, layer ``l``
(parameters ``<prefix>.layers.<l>.*``) maps to:

| matrix (HF name) | input neurons sampled | output neurons sampled |
|---|---|---|
| `self_attn.{q,k,v}_proj.weight` (H*d, K*d, K*d rows x F; one node set) | `a` = S of F | q rows `t`; k, v: `kv(t)` |
| `self_attn.o_proj.weight` (F x H*d) | the same `t` (S of H*d) | `b` = S of F |
| `mlp.{gate_proj,up_proj}.weight` (I x F each; one node set) | `b` | rows `c` = 2S of I in both |
| `mlp.down_proj.weight` (F x I) | `c` | next layer's `a` (last layer: a fresh S of F) |

``kv(t)`` maps query neuron ``t`` (head ``t // d``, offset ``t % d``) to the key/value neuron it is
paired with under grouped-query attention, ``(t // d) // (H // K) * d + t % d``, with repeats removed
(first occurrence kept). With ``K == H`` it is ``t``, and the a-nodes have 3S out-edges as in
GPT-NeoX. ``gate_proj`` and ``up_proj`` read the same input and their outputs are multiplied neuron
by neuron, so one input neuron sees rows ``c`` of both (4S out-edges). Draw order and RNG as for
GPT-NeoX, with ``t`` drawn from ``H*d``.

Not part of the network: ``embed_tokens``, ``lm_head``, every RMSNorm (``*_layernorm``, ``norm``).
"""

from __future__ import annotations

import numpy as np
import torch

from neuromfa_callback.architectures._layout import (
    Layout,
    TransformerPlan,
    check_shapes,
    collect_layers,
    transformer_groups,
)

__all__ = ["MODEL_TYPES", "ROLES", "build_layout", "kv_rows"]

MODEL_TYPES = ("llama",)
ROLES = {
    "attention_in": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attention_out": ("self_attn.o_proj",),
    "mlp_in": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp_out": ("mlp.down_proj",),
}


def kv_rows(t: np.ndarray, head_dim: int, n_heads: int, n_kv_heads: int) -> np.ndarray:
    """Key/value rows paired with query rows ``t`` under grouped-query attention (repeats removed).

    Example:
        >>> kv_rows(np.array([0, 5, 9, 13]), head_dim=4, n_heads=4, n_kv_heads=2)
        array([0, 1, 5])
    """
    rows = (t // head_dim) // (n_heads // n_kv_heads) * head_dim + t % head_dim
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)]


def build_layout(model: torch.nn.Module, path: str = "") -> Layout:
    """Map a Llama model (``LlamaModel``, ``LlamaForCausalLM``) onto its matrix groups.

    Head counts come from ``model.config`` (``num_attention_heads``, ``num_key_value_heads``,
    ``head_dim``).

    Raises:
        ValueError: no config, missing parameters or inconsistent shapes.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "num_attention_heads"):
        raise ValueError("llama: the model has no `config.num_attention_heads`; cannot pair query and key/value heads")
    layers = collect_layers(model, "llama", "layers", [p for ps in ROLES.values() for p in ps])
    groups = transformer_groups(layers, ROLES)
    f = int(groups[1].weights[0].shape[0])
    inner = int(groups[1].weights[0].shape[1])
    inter = int(groups[2].weights[0].shape[0])
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    head_dim = int(getattr(config, "head_dim", None) or inner // n_heads)
    if n_heads * head_dim != inner or n_heads % n_kv:
        raise ValueError(
            f"llama: inconsistent heads: {n_heads} heads x head_dim {head_dim} != o_proj input {inner}, "
            f"or {n_heads} heads not a multiple of {n_kv} key/value heads"
        )
    check_shapes(
        "llama",
        groups,
        {
            "attention_in": [(inner, f), (n_kv * head_dim, f), (n_kv * head_dim, f)],
            "attention_out": [(f, inner)],
            "mlp_in": [(inter, f), (inter, f)],
            "mlp_out": [(f, inter)],
        },
    )

    def qkv_rows(t: np.ndarray) -> tuple[np.ndarray, ...]:
        kv = kv_rows(t, head_dim, n_heads, n_kv)
        return (t, kv, kv)

    plan = TransformerPlan(len(layers), f, inner, inter, qkv_rows, mlp_in_parts=2, family="llama")
    return Layout("llama", path, model, groups, plan)
