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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuromfa_callback._checks import check_choice, check_int, check_real
from neuromfa_callback.functional._weights import (
    CHUNK,
    CUDA_CHUNK,
    abs_scaled_columns,
    check_finite,
    count_nonzero,
    csr_of,
    gather,
    matrix_rms,
    move,
)
from neuromfa_callback.functional.partition import PartitionSums
from neuromfa_callback.functional.spectrum import Spectrum, _validated_params

if TYPE_CHECKING:
    from neuromfa_callback.architectures import Layout

__all__ = [
    "MatrixBlock",
    "NeuronNetwork",
    "build_network",
    "layout_rms",
    "network_from_layout",
    "validate_build_args",
]

_SCALES = (None, "rms")


@dataclass(frozen=True, eq=False)
class MatrixBlock:
    """One node set of the network: the input neurons of one matrix group and their out-edges.

    Attributes:
        name: parameter name (a fused group reads ``prefix.{q_proj,k_proj,v_proj}.weight``).
        names: the parameter name of every matrix in the group.
        layer: layer (block) index.
        role: ``"attention_in"``, ``"attention_out"``, ``"mlp_in"``, ``"mlp_out"`` or ``"linear"``.
        weights: per matrix, ``out x in``: the sampled submatrix (sampled mode) or a view of the
            whole parameter (full mode). Column ``j`` of every matrix belongs to node ``j``.
        columns: input-neuron index (column of the whole matrix) of every node.
        rows: per matrix, the rows of the whole matrix that ``weights`` holds (``None``: all).
        scales: per matrix, the factor applied before ``1/|w|`` (1.0 unless ``scale="rms"``).
    """

    name: str
    names: tuple[str, ...]
    layer: int
    role: str
    weights: tuple[torch.Tensor, ...]
    columns: np.ndarray
    rows: tuple[np.ndarray | None, ...]
    scales: tuple[float, ...]

    @property
    def n_nodes(self) -> int:
        """Number of nodes (input neurons)."""
        return int(self.weights[0].shape[1])

    @property
    def n_out(self) -> int:
        """Out-edge slots per node (rows over all matrices, zeros included)."""
        return int(sum(w.shape[0] for w in self.weights))


class NeuronNetwork:
    """A neuron interaction network (sampled or full), ready for :meth:`partition` / :meth:`spectrum`.

    Build it with :func:`build_network`. Node ``k`` is column ``node_index[k]`` of block
    ``node_matrix[k]`` in layer ``node_layer[k]``; nodes are ordered block by block.

    Attributes:
        blocks: the :class:`MatrixBlock` s, in forward order.
        family: model family the network was built from.
        full: whether every neuron is a node (else the reference's sampling).
        seed: sampling seed (``None`` in full mode).
        neurons_per_layer: per-layer sample size (``None`` in full mode).
        scale: ``None`` (raw weights) or ``"rms"`` (every matrix rescaled to RMS ``scale_rms``).
    """

    def __init__(
        self,
        blocks: tuple[MatrixBlock, ...],
        *,
        family: str,
        full: bool,
        seed: int | None,
        neurons_per_layer: int | None,
        scale: str | None,
        ready: Any = None,
    ) -> None:
        self.blocks = tuple(blocks)
        self.family = family
        self.full = full
        self.seed = seed
        self.neurons_per_layer = neurons_per_layer
        self.scale = scale
        self._ready = ready  # CUDA event of a pending non-blocking copy
        self._csr: tuple[np.ndarray, np.ndarray] | None = None

    def __repr__(self) -> str:
        mode = "full" if self.full else f"sampled S={self.neurons_per_layer} seed={self.seed}"
        return (
            f"NeuronNetwork({self.family}, {mode}, scale={self.scale!r}, blocks={len(self.blocks)}, "
            f"n_nodes={self.n_nodes}, device={self.device})"
        )

    # ------------------------------------------------------------------------------ structure
    @property
    def device(self) -> torch.device:
        """Device of the (first block's) weights."""
        return self.blocks[0].weights[0].device

    @property
    def n_nodes(self) -> int:
        """Number of nodes (input neurons over all blocks)."""
        return sum(b.n_nodes for b in self.blocks)

    @property
    def n_edges(self) -> int:
        """Number of edges: out-edge slots whose weight is not exactly 0."""
        self.synchronize()
        return sum(int(count_nonzero(w)) for b in self.blocks for w in b.weights)

    @property
    def node_layer(self) -> np.ndarray:
        """Layer index of every node (int64)."""
        return np.repeat(np.array([b.layer for b in self.blocks], dtype=np.int64), [b.n_nodes for b in self.blocks])

    @property
    def node_matrix(self) -> np.ndarray:
        """Block (parameter) name of every node."""
        return np.repeat(np.array([b.name for b in self.blocks]), [b.n_nodes for b in self.blocks])

    @property
    def node_index(self) -> np.ndarray:
        """Input-neuron index of every node within its matrix (int64)."""
        return np.concatenate([b.columns for b in self.blocks]).astype(np.int64, copy=False)

    # ------------------------------------------------------------------------------ streaming
    def _chunk(self) -> int:
        if self.device.type == "cuda" or not self.full:
            return CUDA_CHUNK  # sampled networks are small: one engine call each
        return CHUNK  # full networks stream in small pieces: bounded memory

    def _pieces(self) -> Iterator[Any]:
        """``|w| * scale`` in float64, node-major ``(k nodes, n_out)``, chunk by chunk of columns.

        NumPy arrays for weights on CPU (no thread-pool overhead on small pieces), tensors otherwise.
        """
        self.synchronize()
        budget = self._chunk()
        for b in self.blocks:
            step = max(1, budget // max(b.n_out, 1))
            for j0 in range(0, b.n_nodes, step):
                yield abs_scaled_columns(b.weights, b.scales, j0, min(b.n_nodes, j0 + step))

    @torch.no_grad()
    def partition(
        self,
        q: Any = None,
        threshold: float = 150.0,
        decimals: int = 0,
        min_neighbours: int = 10,
        backend: str = "auto",
    ) -> PartitionSums:
        """Partition sums of the whole network, streamed in bounded memory (see :mod:`.spectrum`).

        Args:
            q, threshold, decimals, min_neighbours: as for
                :func:`~neuromfa_callback.functional.spectrum.multifractal_spectrum`.
            backend: ``"auto"`` (weights on CPU: ``"numpy"``; on CUDA: the engine's CUDA choice),
                ``"numpy"``, ``"torch"`` or ``"cupy"``.

        Returns:
            :class:`PartitionSums`, equal to the partition sums of :attr:`indptr`/:attr:`distances`.

        Example:
            >>> import torch
            >>> from neuromfa_callback import build_network
            >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
            <torch._C.Generator object at ...>
            >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
            >>> net = build_network(mlp, neurons_per_layer=32, seed=0)
            >>> part = net.partition(min_neighbours=2)
            >>> part.n_nodes <= net.n_nodes == 64
            True
        """
        q, grid, min_neighbours = _validated_params(q, threshold, decimals, min_neighbours, backend)
        from neuromfa_callback.backends import compute_partition

        total = PartitionSums.empty(q, grid, min_neighbours, backend=backend)
        pending: list[Any] = []
        size = 0
        pieces = self._pieces()
        while True:
            piece = next(pieces, None)
            if piece is not None:
                pending.append(piece)
                size += piece.shape[0] * piece.shape[1]
            if pending and (piece is None or size >= self._chunk()):
                indptr, dist = csr_of(pending, drop_zeros=False)
                name = backend
                if isinstance(dist, np.ndarray):
                    if backend == "auto":
                        name = "numpy"
                    elif backend != "numpy":
                        indptr, dist = torch.from_numpy(indptr), torch.from_numpy(dist)
                elif backend == "numpy":
                    indptr, dist = indptr.cpu().numpy(), dist.cpu().numpy()
                part = compute_partition(indptr, dist, q=q, grid=grid, min_neighbours=min_neighbours, backend=name)
                total = total + part
                pending, size = [], 0
            if piece is None:
                break
        return total

    def spectrum(self, **kwargs: Any) -> Spectrum:
        """``self.partition(**kwargs).spectrum()``."""
        return self.partition(**kwargs).spectrum()

    # -------------------------------------------------------------------------------- CSR view
    def _materialise(self) -> tuple[np.ndarray, np.ndarray]:
        if self._csr is None:
            with torch.no_grad():
                ips, ds = [np.zeros(1, dtype=np.int64)], []
                offset = 0
                for piece in self._pieces():
                    ip, d = (_to_numpy(x) for x in csr_of([piece], drop_zeros=True))
                    ips.append(ip[1:] + offset)
                    ds.append(d)
                    offset += d.size
            self._csr = (np.concatenate(ips), np.concatenate(ds) if ds else np.zeros(0))
        return self._csr

    @property
    def indptr(self) -> np.ndarray:
        """CSR offsets (int64, ``n_nodes + 1``): node ``k`` owns ``distances[indptr[k]:indptr[k+1]]``.

        Materialised on first access and cached (full mode: the weights as they were then).
        """
        return self._materialise()[0]

    @property
    def distances(self) -> np.ndarray:
        """Distances ``1/|w|`` (float64) of every edge, exact zeros dropped, node by node."""
        return self._materialise()[1]

    # ------------------------------------------------------------------------------- devices
    def to(self, device: Any, non_blocking: bool = False, copy: bool = False) -> NeuronNetwork:
        """The network with its weights on ``device`` (a new object; ``self`` is unchanged).

        From CUDA to CPU with ``non_blocking=True`` the copies go into pinned memory and a CUDA event
        is recorded; the new network waits on it before it reads its weights (:meth:`synchronize`),
        so the training thread can hand it to a worker thread at once. ``copy=True`` copies even on
        the same device (a snapshot of full-mode weights).

        Example:
            >>> import torch
            >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 8))
            >>> net = build_network(mlp, full=True)
            >>> snap = net.to("cpu", copy=True)
            >>> snap.blocks[0].weights[0].data_ptr() != mlp[0].weight.data_ptr(), snap.device.type
            (True, 'cpu')
        """
        device = torch.device(device)
        with torch.no_grad():
            blocks = tuple(
                replace(b, weights=tuple(move(w, device, non_blocking, copy) for w in b.weights)) for b in self.blocks
            )
        ready = None
        if non_blocking and any(w.is_cuda for b in self.blocks for w in b.weights):
            ready = torch.cuda.Event()
            ready.record()
        return NeuronNetwork(
            blocks,
            family=self.family,
            full=self.full,
            seed=self.seed,
            neurons_per_layer=self.neurons_per_layer,
            scale=self.scale,
            ready=ready,
        )

    def synchronize(self) -> None:
        """Wait for a pending non-blocking copy (no-op otherwise)."""
        if self._ready is not None:
            self._ready.synchronize()
            self._ready = None


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


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()
