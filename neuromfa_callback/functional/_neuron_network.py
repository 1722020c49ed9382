"""The :class:`NeuronNetwork` type: matrix blocks, streamed partition sums, the CSR view.

Built by :func:`neuromfa_callback.functional.network.build_network`; see that module for the
network's definition.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from neuromfa_callback.functional._weights import (
    CHUNK,
    CUDA_CHUNK,
    abs_scaled_columns,
    count_nonzero,
    csr_of,
    move,
)
from neuromfa_callback.functional.partition import PartitionSums
from neuromfa_callback.functional.spectrum import Spectrum, _validated_params

__all__ = ["MatrixBlock", "NeuronNetwork"]



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
            backend: ``"auto"`` (weights on CPU: ``"numpy"``; on CUDA: ``"cupy"`` once the kernel passed its
                self-check there, else ``"torch"``), ``"numpy"``, ``"torch"`` or ``"cupy"`` (the kernel reads
                the weight matrices in place, in their dtype).

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
        from neuromfa_callback.backends import check_backend, compute_partition

        if check_backend(backend, self.device) == "cupy":  # the kernel reads the weights in place
            from neuromfa_callback.backends.cupy_backend import partition_blocks_cupy

            self.synchronize()
            return partition_blocks_cupy(self.blocks, q, grid, min_neighbours)
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
            >>> from neuromfa_callback import build_network
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



def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()
