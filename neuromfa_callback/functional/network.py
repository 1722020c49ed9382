r"""Model weights -> :class:`NeuronNetwork`: the neuron interaction network of NEUROMFA.md section 1.

Every input neuron of a matrix group (see :mod:`neuromfa_callback.architectures`) is a node; its
out-edges are the group's column for that neuron, with length ``d = 1/|w|`` computed in float64 from
the stored value (the reference's convention: float64 reciprocal of the float32 weight; checked bit
for bit against ``golden/gptneox_tiny_init``). A weight of exactly 0 is no edge.

Sampled mode holds the sampled submatrices themselves (small copies: they ARE the snapshot); full
mode holds views of the whole parameters (no copy; take a snapshot with ``.to(device, copy=True)``).
The partition sums stream group by group and column chunk by column chunk on the weights' device,
so no full matrix is ever converted to float64 at once and no per-edge Python object exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuromfa_callback._checks import check_choice, check_int, check_real
from neuromfa_callback.functional._neuron_network import MatrixBlock, NeuronNetwork
from neuromfa_callback.functional._weights import check_finite, gather, matrix_rms

if TYPE_CHECKING:
    from neuromfa_callback.architectures import Layout

__all__ = [
    "MatrixBlock",
    "NeuronNetwork",
    "build_network",
    "layout_check_finite",
    "layout_rms",
    "network_from_layout",
    "validate_build_args",
]

_SCALES = (None, "rms")


def layout_rms(layout: Layout) -> dict[str, float]:
    """RMS of every analysed matrix (whole matrix, float64), keyed by parameter name.

    Raises:
        ValueError: a matrix holds a non-finite value or only zeros (the message names it).
    """
    with torch.no_grad():
        return {n: matrix_rms(w, n) for g in layout.groups for n, w in zip(g.names, g.weights)}


def layout_check_finite(layout: Layout) -> None:
    """Raise ``ValueError`` naming the parameter if any analysed matrix holds NaN or inf anywhere.

    A non-finite weight anywhere means the run has diverged, so sampled mode checks whole matrices
    too (a chunked reduction: nothing is copied).
    """
    with torch.no_grad():
        for g in layout.groups:
            for name, w in zip(g.names, g.weights):
                check_finite(w, name)


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
    sample when the weights have not changed).
    """
    if scale == "rms" and rms is None:
        rms = layout_rms(layout)  # also checks every matrix is finite
    elif not checked:
        layout_check_finite(layout)
    sels = None if full else layout.sample(neurons_per_layer, np.random.RandomState(seed))
    blocks = []
    with torch.no_grad():
        for i, g in enumerate(layout.groups):
            rows_of = [None] * len(g.weights) if sels is None else sels[i].rows
            weights, scales = [], []
            for name, w, rows in zip(g.names, g.weights, rows_of):
                s = scale_rms / rms[name] if rms is not None and scale == "rms" else 1.0
                if rows is not None:
                    w = gather(w, rows, sels[i].cols)  # reads only the sampled entries
                weights.append(w)
                scales.append(float(s))
            blocks.append(
                MatrixBlock(
                    name=g.name,
                    names=g.names,
                    layer=g.layer,
                    role=g.role,
                    weights=tuple(weights),
                    columns=np.arange(g.n_in, dtype=np.int64) if sels is None else np.asarray(sels[i].cols),
                    rows=tuple(rows_of),
                    scales=tuple(scales),
                )
            )
    return NeuronNetwork(
        tuple(blocks),
        family=layout.family,
        full=full,
        seed=None if full else seed,
        neurons_per_layer=None if full else neurons_per_layer,
        scale=scale,
    )


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
) -> NeuronNetwork:
    """The neuron interaction network of ``model``, sampled as the authors' reference samples it.

    Args:
        model: a supported model, possibly wrapped (see :mod:`neuromfa_callback.architectures`).
        neurons_per_layer: ``S``, neurons sampled per layer (``2S`` in MLP intermediates); >= 1 and
            at most the smallest layer it samples from. No effect with ``full=True``.
        seed: seeds ``numpy.random.RandomState``; seed ``k`` draws the reference's indices for
            ``numpy.random.seed(k)`` on GPT-NeoX. No effect with ``full=True``.
        full: every input neuron of every analysed matrix is a node, with all its out-edges.
        scale: ``None`` (raw weights) or ``"rms"``: each matrix multiplied by ``scale_rms / RMS``
            (RMS of the WHOLE matrix) before ``1/|w|``, the scale-normalised control of
            NEUROMFA.md section 5.
        scale_rms: target RMS for ``scale="rms"`` (> 0; default 0.02, a common init std).
        architecture: ``"auto"`` or a family name (``"gpt_neox"``, ``"gpt2"``, ``"llama"``, ``"bert"``, ``"mlp"``).

    Returns:
        :class:`NeuronNetwork`. Sampled mode copies only the sampled entries of each weight (the
        whole matrices are only reduced: the finiteness check, and the RMS for ``scale="rms"``);
        full mode holds views.

    Raises:
        ValueError: unsupported model (the message lists what was found), ``neurons_per_layer``
            out of range, a non-finite weight anywhere in an analysed matrix (the message names
            the parameter and the position), or bad arguments (named with their value).

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
        resolve(model, architecture),
        neurons_per_layer=neurons_per_layer,
        seed=seed,
        full=full,
        scale=scale,
        scale_rms=scale_rms,
    )
