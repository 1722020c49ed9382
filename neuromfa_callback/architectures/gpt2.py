r"""GPT-2: the GPT-NeoX layout on GPT-2's ``Conv1D`` matrices (stored ``in x out``, viewed ``out x in``).

With hidden size ``F = n_embd``, intermediate size ``I = n_inner`` (default ``4F``) and
``S = neurons_per_layer``, block ``l`` (parameters ``<prefix>.h.<l>.*``) maps to:

| matrix (HF name) | input neurons sampled | output neurons sampled |
|---|---|---|
| `attn.c_attn.weight` (F x 3F, viewed 3F x F) | `a` = S of F | rows `t, t+F, t+2F` for `t` = S of F (3S rows) |
| `attn.c_proj.weight` (F x F) | the same `t` | `b` = S of F |
| `mlp.c_fc.weight` (F x I, viewed I x F) | `b` | `c` = 2S of I |
| `mlp.c_proj.weight` (I x F, viewed F x I) | `c` | next block's `a` (last block: a fresh S of F) |

Draw order and RNG as for GPT-NeoX (``a, t, b, c`` per block, one more S of F at the end). GPT-2
splits ``c_attn``'s outputs into contiguous query, key and value thirds, so here rows ``t, t+F, t+2F``
ARE the query, key and value of the same neuron (in GPT-NeoX they are not, see ``gpt_neox``).

Not part of the network: ``wte``/``wpe`` (embeddings), ``lm_head`` (unembedding, tied to ``wte``),
``ln_*`` (norms), biases, and cross-attention (``crossattention.*``) when the config adds it.
"""

from __future__ import annotations

import torch

from neuromfa_callback.architectures._layout import Layout, standard_transformer_layout

__all__ = ["MODEL_TYPES", "ROLES", "build_layout"]

MODEL_TYPES = ("gpt2",)
ROLES = {
    "attention_in": ("attn.c_attn",),
    "attention_out": ("attn.c_proj",),
    "mlp_in": ("mlp.c_fc",),
    "mlp_out": ("mlp.c_proj",),
}


def build_layout(model: torch.nn.Module, path: str = "") -> Layout:
    """Map a GPT-2 model (``GPT2Model``, ``GPT2LMHeadModel`` ...) onto its matrix groups.

    Raises:
        ValueError: the expected parameters are missing or have inconsistent shapes.
    """
    return standard_transformer_layout(model, path, "gpt2", "h", ROLES)
