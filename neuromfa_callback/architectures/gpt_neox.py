r"""GPT-NeoX / Pythia preset: the authors' reference sampling, reproduced exactly, on the general node sets.

The general path (:mod:`~neuromfa_callback.architectures.dataflow`) finds four node sets per block of
a GPT-NeoX model: ``query_key_value`` (reads the first LayerNorm's output), ``dense`` (reads the
attention output), ``dense_h_to_4h`` (reads the second LayerNorm's output) and ``dense_4h_to_h``.
This preset only replaces the sampler. With hidden size ``F``, intermediate size ``I`` (Pythia: ``4F``)
and ``S = neurons_per_layer``, block ``l`` selects:

| matrix (HF name) | input neurons sampled | output neurons sampled |
|---|---|---|
| `attention.query_key_value.weight` (3F x F) | `a` = S of F | rows `t, t+F, t+2F` for `t` = S of F (3S rows) |
| `attention.dense.weight` (F x F) | the same `t` | `b` = S of F |
| `mlp.dense_h_to_4h.weight` (I x F) | `b` | `c` = 2S of I |
| `mlp.dense_4h_to_h.weight` (F x I) | `c` | next block's `a` (last block: a fresh S of F) |

Draws per block with ``numpy.random.RandomState(seed).choice(n, size, replace=False)`` in the order
``a, t, b, c``, then one more S of F after the last block: for seed ``k`` the indices equal the
reference's ``numpy.random.seed(k)`` draws (checked against ``golden/gptneox_tiny_init``).

Not part of the network: ``embed_in`` (embedding), ``embed_out`` (unembedding), every LayerNorm and
every bias. Full mode uses every row and column of the same matrices.

Approximations kept from the reference (paper-compatible): HF GPT-NeoX interleaves q/k/v rows per
head, so rows ``t, t+F, t+2F`` are not the query/key/value of one neuron; Pythia's parallel
attention + MLP residual is treated as sequential. The reference's weight-1 edges from the qkv
outputs to the attention output inputs have distance exactly 1, are removed by the ``1 < d``
filter, and are left out here (the golden ``n_nodes`` counts their 3S source nodes per block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neuromfa_callback.architectures._layout import NodeSet, TransformerPlan

__all__ = ["MODEL_TYPES", "ROLES", "check_neurons_per_layer", "plan"]

MODEL_TYPES = ("gpt_neox",)
ROLES = ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")


def _mismatch(why: str) -> ValueError:
    return ValueError(f"architecture='gpt_neox': {why}; use architecture='generic' for this model")


def plan(node_sets: Sequence[NodeSet], n_depths: int) -> tuple[tuple[NodeSet, ...], TransformerPlan]:
    """Order the node sets block by block as the reference does and build its sampler.

    Raises:
        ValueError: the node sets are not those of a GPT-NeoX stack (names, count or shapes).
    """
    by_depth: list[list[NodeSet]] = [[] for _ in range(n_depths)]
    for ns in node_sets:
        by_depth[ns.depth].append(ns)
    ordered = []
    for depth, sets in enumerate(by_depth):
        found = {}
        for ns in sets:
            role = next((r for r in ROLES if len(ns.operators) == 1 and ns.operators[0].name.endswith(f"{r}.weight")), None)
            if role is None or role in found:
                raise _mismatch(f"unexpected node set {ns.name} in block {depth}")
            found[role] = ns
        if sorted(found) != sorted(ROLES):
            raise _mismatch(f"block {depth} lacks {sorted(set(ROLES) - set(found))}")
        ordered += [found[r] for r in ROLES]
    if not ordered:
        raise _mismatch("no GPT-NeoX block found")
    qkv, dense, up = (ordered[k].operators[0] for k in range(3))
    f, inter = dense.n_rows, up.n_rows
    for op, want in zip((ordered[k].operators[0] for k in range(4)), ((3 * f, f), (f, f), (inter, f), (f, inter))):
        if (op.n_rows, op.n_in) != want:
            raise _mismatch(f"`{op.name}` is {op.n_rows} x {op.n_in} (out x in), expected {want[0]} x {want[1]}")

    def qkv_rows(t: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.concatenate([t, t + f, t + 2 * f]),)

    return tuple(ordered), TransformerPlan(len(ordered) // 4, f, f, inter, qkv_rows, family="gpt_neox")


def check_neurons_per_layer(operators: Sequence[Any], neurons_per_layer: int) -> None:
    """Raise (as the sampler would) if ``neurons_per_layer`` exceeds what the reference's sampling draws from,
    from the operators' shapes alone (no forward pass): what a callback's ``setup`` checks."""
    by_role = {r: op for op in operators for r in ROLES if op.name.endswith(f"{r}.weight")}
    if len(by_role) == len(ROLES):
        f, inter = by_role["attention.dense"].n_rows, by_role["mlp.dense_h_to_4h"].n_rows
        TransformerPlan(1, f, f, inter, lambda t: (t,), family="gpt_neox")(neurons_per_layer, np.random.RandomState(0))
