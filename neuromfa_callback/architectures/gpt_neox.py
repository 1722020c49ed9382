r"""GPT-NeoX / Pythia: the layout the authors' reference samples (NEUROMFA.md section 1), reproduced exactly.

With hidden size ``F``, intermediate size ``I`` (Pythia: ``4F``) and ``S = neurons_per_layer``,
block ``l`` (parameters ``<prefix>.layers.<l>.*``) maps to four matrix groups:

| matrix (HF name) | input neurons sampled | output neurons sampled |
|---|---|---|
| `attention.query_key_value.weight` (3F x F) | `a` = S of F | rows `t, t+F, t+2F` for `t` = S of F (3S rows) |
| `attention.dense.weight` (F x F) | the same `t` | `b` = S of F |
| `mlp.dense_h_to_4h.weight` (I x F) | `b` | `c` = 2S of I |
| `mlp.dense_4h_to_h.weight` (F x I) | `c` | next block's `a` (last block: a fresh S of F) |

Draws per block with ``numpy.random.RandomState(seed).choice(n, size, replace=False)`` in the order
``a, t, b, c``, then one more S of F after the last block: for seed ``k`` the indices equal the
reference's ``numpy.random.seed(k)`` draws (checked against ``golden/gptneox_tiny_init``).

Not part of the network: ``embed_in`` (embedding), ``embed_out``/``lm_head`` (unembedding), every
LayerNorm and every bias. Full mode uses every row and column of the same matrices.

Approximations kept from the reference (paper-compatible): HF GPT-NeoX interleaves q/k/v rows per
head, so rows ``t, t+F, t+2F`` are not the query/key/value of one neuron; Pythia's parallel
attention + MLP residual is treated as sequential. The reference's weight-1 edges from the qkv
outputs to the attention output inputs have distance exactly 1, are removed by the ``1 < d``
filter, and are left out here (the golden ``n_nodes`` counts their 3S source nodes per block).
"""

from __future__ import annotations

import torch

from neuromfa_callback.architectures._layout import Layout, standard_transformer_layout

__all__ = ["MODEL_TYPES", "ROLES", "build_layout"]

MODEL_TYPES = ("gpt_neox",)
ROLES = {
    "attention_in": ("attention.query_key_value",),
    "attention_out": ("attention.dense",),
    "mlp_in": ("mlp.dense_h_to_4h",),
    "mlp_out": ("mlp.dense_4h_to_h",),
}


def build_layout(model: torch.nn.Module, path: str = "") -> Layout:
    """Map a GPT-NeoX model (``GPTNeoXModel`` or ``GPTNeoXForCausalLM``) onto its matrix groups.

    Raises:
        ValueError: the expected parameters are missing or have inconsistent shapes.
    """
    return standard_transformer_layout(model, path, "gpt_neox", "layers", ROLES)
