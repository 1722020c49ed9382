r"""BERT (encoder): the GPT-NeoX layout on BERT's separate query/key/value matrices.

With hidden size ``F``, intermediate size ``I`` and ``S = neurons_per_layer``, layer ``l``
(parameters ``<prefix>.layer.<l>.*``, e.g. ``encoder.layer.0.attention.self.query.weight``) maps to:

| matrix (HF name) | input neurons sampled | output neurons sampled |
|---|---|---|
| `attention.self.{query,key,value}.weight` (3 x F x F, one node set) | `a` = S of F | rows `t` of each (3S rows) |
| `attention.output.dense.weight` (F x F) | the same `t` | `b` = S of F |
| `intermediate.dense.weight` (I x F) | `b` | `c` = 2S of I |
| `output.dense.weight` (F x I) | `c` | next layer's `a` (last layer: a fresh S of F) |

The three attention input matrices share their input neurons, so they form ONE node set: an input
neuron's out-edges are its query, key and value weights to rows ``t``, as in GPT-NeoX's fused
``query_key_value`` (3S out-edges per node). Draw order and RNG as for GPT-NeoX.

Not part of the network: ``embeddings.*``, every ``LayerNorm``, biases, the ``pooler`` and any task
head (``cls.*``, ``classifier``, ``qa_outputs``).
"""

from __future__ import annotations

import torch

from neuromfa_callback.architectures._layout import Layout, standard_transformer_layout

__all__ = ["MODEL_TYPES", "ROLES", "build_layout"]

MODEL_TYPES = ("bert",)
ROLES = {
    "attention_in": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attention_out": ("attention.output.dense",),
    "mlp_in": ("intermediate.dense",),
    "mlp_out": ("output.dense",),
}


def build_layout(model: torch.nn.Module, path: str = "") -> Layout:
    """Map a BERT model (``BertModel``, ``BertForMaskedLM`` ...) onto its matrix groups.

    Raises:
        ValueError: the expected parameters are missing or have inconsistent shapes.
    """
    return standard_transformer_layout(model, path, "bert", "layer", ROLES)
