r"""Model weights -> :class:`NeuronNetwork`: the neuron interaction network of NEUROMFA.md section 1.

Every input neuron of a node set (see :mod:`neuromfa_callback.architectures`) is a node; its
out-edges are the node set's column for that neuron over all its operators, with length
``d = 1/|w|`` computed in float64 from the stored value (the reference's convention: float64
reciprocal of the float32 weight; checked bit for bit against ``golden/gptneox_tiny_init``). A weight
of exactly 0 is no edge.

Sampled mode holds the sampled submatrices themselves (small copies: they ARE the snapshot); full
mode holds the operators (reading the live parameters; take a snapshot with
``.to(device, copy=True)``). The partition sums stream node set by node set and column chunk by
column chunk on the weights' device, so no full matrix is ever converted to float64 at once and no
per-edge Python object exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuromfa_callback._checks import check_choice, check_int, check_real
from neuromfa_callback.functional._neuron_network import MatrixBlock, NeuronNetwork
from neuromfa_callback.functional._weights import check_finite, matrix_rms

if TYPE_CHECKING:
    from neuromfa_callback.architectures import Layout

__all__ = [
    "MatrixBlock",
    "NeuronNetwork",
    "build_network",
    "layout_check_finite",
    "layout_rms",
    "network_from_layout",
    "rescaled",
    "validate_build_args",
]

_SCALES = (None, "rms")


def layout_rms(layout: Layout, checked: bool = False) -> dict[str, float]:
    """RMS of every operator (whole matrix, effective weights, float64), keyed by operator name.

    Raises:
        ValueError: a matrix holds a non-finite value (unless ``checked``) or only zeros (the message names it).
    """
    if not checked:
        layout_check_finite(layout)
    with torch.no_grad():
        return {op.name: matrix_rms(op, op.name) for op in layout.operators}


def layout_check_finite(layout: Layout) -> None:
    """Raise ``ValueError`` naming the parameter if any analysed parameter holds NaN or inf anywhere.

    A non-finite weight anywhere means the run has diverged, so sampled mode checks whole
    parameters too (one reduction each, nothing copied); a parameter shared by several operators
    (MoE experts) is checked once.
    """
    seen: set[int] = set()
    with torch.no_grad():
        for op in layout.operators:
            for name, t in op.tensors():
                if id(t) not in seen:
                    seen.add(id(t))
                    check_finite(t.detach(), name)


def network_from_layout(
    layout: Layout,
    *,
    neurons_per_layer: int,
    seed: int,
    full: bool,
    scale: str | None,
    scale_rms: float,
    rms: Mapping[str, float] | None = None,
    checked: bool = False,
) -> NeuronNetwork:
    """Build the network of an already resolved layout (arguments validated by :func:`build_network`).

    ``rms``: precomputed :func:`layout_rms` for ``scale="rms"`` (saves a pass over the weights per
    sample when the weights have not changed). ``checked``: the finiteness check already ran.
    """
    if scale == "rms" and rms is None:
        rms = layout_rms(layout)  # also checks every matrix is finite
    elif not checked:
        layout_check_finite(layout)
    sels = None if full else layout.selections(neurons_per_layer, seed)
    blocks = []
    with torch.no_grad():
        for i, ns in enumerate(layout.node_sets):
            rows_of = [None] * len(ns.operators) if sels is None else list(sels[i].rows)
            weights, scales = [], []
            for op, rows in zip(ns.operators, rows_of):
                weights.append(op if sels is None else op.gather(rows, sels[i].cols))  # reads only the sampled entries
                scales.append(float(scale_rms / rms[op.name]) if scale == "rms" else 1.0)
            blocks.append(
                MatrixBlock(
                    name=ns.name,
                    names=ns.names,
                    depth=ns.depth,
                    weights=tuple(weights),
                    columns=np.arange(ns.n_in, dtype=np.int64) if sels is None else np.asarray(sels[i].cols),
                    rows=tuple(rows_of),
                    scales=tuple(scales),
                )
            )
    return NeuronNetwork(
        tuple(blocks),
        depth_names=layout.depth_names,
        family=layout.family,
        full=full,
        seed=None if full else seed,
        neurons_per_layer=None if full else neurons_per_layer,
        scale=scale,
    )


def rescaled(net: NeuronNetwork, layout: Layout, rms: Mapping[str, float], scale_rms: float) -> NeuronNetwork:
    """``net`` (raw weights) as ``scale="rms"`` would build it from the same draws: the same sampled
    submatrices (shared, not copied), each operator's factor ``scale_rms / RMS`` applied before ``1/|w|``."""
    blocks = tuple(
        replace(b, scales=tuple(float(scale_rms / rms[op.name]) for op in ns.operators))
        for b, ns in zip(net.blocks, layout.node_sets)
    )
    return net._like(blocks, scale="rms")


def validate_build_args(neurons_per_layer: Any, seed: Any, full: Any, scale: Any, scale_rms: Any) -> tuple:
    """Check :func:`build_network`'s arguments; returns them normalised."""
    neurons_per_layer = check_int("neurons_per_layer", neurons_per_layer, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if not isinstance(full, bool):
        raise TypeError(f"Expected `full` to be a bool, got {full!r}")
    check_choice("scale", scale, _SCALES)
    scale_rms = check_real("scale_rms", scale_rms, greater_than=0)
    return neurons_per_layer, seed, full, scale, scale_rms


def build_network(
    model: torch.nn.Module,
    *,
    neurons_per_layer: int = 32,
    seed: int = 0,
    full: bool = False,
    scale: str | None = None,
    scale_rms: float = 0.02,
    architecture: str = "auto",
    module: Any = None,
    example_input: Any = None,
) -> NeuronNetwork:
    """The neuron interaction network of ``model``: sampled (as the reference samples it) or full.

    Args:
        model: any ``nn.Module`` holding weight operators, possibly wrapped (see
            :func:`~neuromfa_callback.architectures.resolve`).
        neurons_per_layer: ``S``: per node set ``min(S, n_in)`` input neurons and per operator
            ``min(S, rows)`` rows (the ``gpt_neox`` preset: the reference's S, 3S and 2S). >= 1.
            No effect with ``full=True``.
        seed: seeds ``numpy.random.RandomState``; seed ``k`` draws the reference's indices for
            ``numpy.random.seed(k)`` on GPT-NeoX. No effect with ``full=True``.
        full: every input neuron of every node set is a node, with all its out-edges.
        scale: ``None`` (raw weights) or ``"rms"``: each matrix multiplied by ``scale_rms / RMS``
            (RMS of the WHOLE matrix) before ``1/|w|``, the scale-normalised control of
            NEUROMFA.md section 5.
        scale_rms: target RMS for ``scale="rms"`` (> 0; default 0.02, Pythia's init std).
        architecture: ``"auto"``, ``"generic"`` or ``"gpt_neox"``.
        module: analyse only this part of ``model`` (attribute path or callable).
        example_input: an input whose forward pass reveals the node sets (default: Hugging Face
            ``dummy_inputs`` or a guess from the first layer).

    Returns:
        :class:`NeuronNetwork`. Sampled mode copies only the sampled entries of each weight (the
        whole matrices are only reduced: the finiteness check, and the RMS for ``scale="rms"``);
        full mode reads the live parameters.

    Raises:
        ValueError: no weight operator (the message says what was found), a non-finite weight
            anywhere in an analysed matrix (the message names the parameter and the position), or
            bad arguments (named with their value).

    Example:
        >>> import torch
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
        >>> net = build_network(mlp, neurons_per_layer=4, seed=0)
        >>> net.n_nodes, [b.name for b in net.blocks], net.indptr.tolist()[:3]
        (8, ['0.weight', '2.weight'], [0, 4, 8])
        >>> build_network(mlp, full=True).n_nodes
        48
    """
    from neuromfa_callback.architectures import resolve

    neurons_per_layer, seed, full, scale, scale_rms = validate_build_args(
        neurons_per_layer, seed, full, scale, scale_rms
    )
    return network_from_layout(
        resolve(model, architecture, module=module, example_input=example_input),
        neurons_per_layer=neurons_per_layer,
        seed=seed,
        full=full,
        scale=scale,
        scale_rms=scale_rms,
    )
