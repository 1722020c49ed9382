"""The :class:`NeuronNetwork` type: matrix blocks, streamed partition sums (whole, by depth, null), the CSR view.

Built by :func:`neuromfa_callback.functional.network.build_network`; see that module for the
network's definition.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    null_matrix,
    shape_of,
)
from neuromfa_callback.architectures.operators import Operator
from neuromfa_callback.backends import partition_chunks
from neuromfa_callback.functional.partition import PartitionSums
from neuromfa_callback.functional.spectrum import Spectrum, _validated_params

__all__ = ["MatrixBlock", "NeuronNetwork", "null_seed"]

_VIEWABLE = ("linear", "conv1d_hf", "mha", "expert", "linear_like")  # operators with a plain matrix view


def null_seed(seed: int | None, permutation: int, block: int, matrix: int) -> int:
    """Generator seed of one operator's null: a fixed function of the sample seed, permutation and position."""
    return (1_000_003 * ((seed or 0) + 1) + 7_919 * permutation + 131 * block + matrix) % (2**63)


@dataclass(frozen=True, eq=False)
class MatrixBlock:
    """One node set of the network: its input neurons and their out-edges.

    Attributes:
        name: the node set's name (operators fused as ``prefix.{q_proj,k_proj,v_proj}.weight``).
        names: the name of every operator in the set.
        depth: index of the depth (block) the node set belongs to.
        weights: per operator, ``rows x nodes``: the sampled submatrix (sampled mode) or the
            :class:`~neuromfa_callback.architectures.Operator` itself (full mode). Column ``j`` of every
            matrix belongs to node ``j``.
        columns: input-neuron index of every node.
        rows: per operator, the rows that ``weights`` holds (``None``: all).
        scales: per operator, the factor applied before ``1/|w|`` (1.0 unless ``scale="rms"``).
    """

    name: str
    names: tuple[str, ...]
    depth: int
    weights: tuple[Any, ...]
    columns: np.ndarray
    rows: tuple[np.ndarray | None, ...]
    scales: tuple[float, ...]

    @property
    def n_nodes(self) -> int:
        """Number of nodes (input neurons)."""
        return shape_of(self.weights[0])[1]

    @property
    def n_out(self) -> int:
        """Out-edge slots per node (rows over all matrices, zeros included)."""
        return int(sum(shape_of(w)[0] for w in self.weights))


class NeuronNetwork:
    """A neuron interaction network (sampled or full), ready for :meth:`partition` / :meth:`spectrum`.

    Build it with :func:`~neuromfa_callback.build_network`. Node ``k`` is input neuron
    ``node_index[k]`` of node set ``node_matrix[k]`` at depth ``node_depth[k]``; nodes are ordered
    node set by node set.

    Attributes:
        blocks: the :class:`MatrixBlock` s, in forward order.
        depth_names: the module path of every depth (block), in forward order.
        family: ``"generic"`` or the preset used (``"gpt_neox"``).
        full: whether every neuron is a node (else sampled).
        seed: sampling seed (``None`` in full mode).
        neurons_per_layer: per-layer sample size (``None`` in full mode).
        scale: ``None`` (raw weights) or ``"rms"`` (every matrix rescaled to RMS ``scale_rms``).
        permutation: ``None``, or which permutation null this network is (see :meth:`null`).
    """

    def __init__(
        self,
        blocks: tuple[MatrixBlock, ...],
        *,
        depth_names: Sequence[str] = (),
        family: str = "generic",
        full: bool = False,
        seed: int | None = None,
        neurons_per_layer: int | None = None,
        scale: str | None = None,
        permutation: int | None = None,
        ready: Any = None,
    ) -> None:
        self.blocks = tuple(blocks)
        self.depth_names = tuple(depth_names) or tuple(str(d) for d in range(1 + max((b.depth for b in self.blocks), default=-1)))
        self.family = family
        self.full = full
        self.seed = seed
        self.neurons_per_layer = neurons_per_layer
        self.scale = scale
        self.permutation = permutation
        self._ready = tuple(ready or ())  # CUDA events of pending non-blocking copies
        self._csr: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to the analysis process) with its weights as NumPy arrays: no tensor sharing, no CUDA
        events (pending copies are waited for first). Full-mode networks (live operators) do not pickle."""
        self.synchronize()
        state = dict(self.__dict__, _csr=None, _ready=())
        state["blocks"] = tuple(replace(b, weights=tuple(_to_array(w) for w in b.weights)) for b in self.blocks)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["blocks"] = tuple(replace(b, weights=tuple(torch.from_numpy(w) for w in b.weights)) for b in state["blocks"])
        self.__dict__.update(state)

    def _like(self, blocks: tuple[MatrixBlock, ...], **changes: Any) -> NeuronNetwork:
        kw = dict(depth_names=self.depth_names, family=self.family, full=self.full, seed=self.seed,
                  neurons_per_layer=self.neurons_per_layer, scale=self.scale, permutation=self.permutation)
        kw.update(changes)
        return NeuronNetwork(blocks, **kw)

    def __repr__(self) -> str:
        mode = "full" if self.full else f"sampled S={self.neurons_per_layer} seed={self.seed}"
        null = "" if self.permutation is None else f", null #{self.permutation}"
        return (
            f"NeuronNetwork({self.family}, {mode}{null}, scale={self.scale!r}, blocks={len(self.blocks)}, "
            f"depths={len(self.depth_names)}, n_nodes={self.n_nodes}, device={self.device})"
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
    def n_depths(self) -> int:
        return len(self.depth_names)

    @property
    def n_edges(self) -> int:
        """Number of edges: out-edge slots whose weight is not exactly 0."""
        self.synchronize()
        return sum(int(count_nonzero(w)) for b in self.blocks for w in b.weights)

    @property
    def node_depth(self) -> np.ndarray:
        """Depth index of every node (int64)."""
        return np.repeat(np.array([b.depth for b in self.blocks], dtype=np.int64), [b.n_nodes for b in self.blocks])

    @property
    def node_matrix(self) -> np.ndarray:
        """Node-set name of every node."""
        return np.repeat(np.array([b.name for b in self.blocks]), [b.n_nodes for b in self.blocks])

    @property
    def node_index(self) -> np.ndarray:
        """Input-neuron index of every node within its node set (int64)."""
        return np.concatenate([b.columns for b in self.blocks]).astype(np.int64, copy=False)

    # ------------------------------------------------------------------------------ null model
    def null(self, permutation: int) -> NeuronNetwork:
        """The permutation null: every operator's weights shuffled among its own entries (seeded).

        Each operator keeps its exact multiset of weights and every node its number of out-edge
        slots; only which neuron holds which weight is destroyed. The arrangement depends only on the
        multiset (:func:`~neuromfa_callback.functional._weights.null_matrix`), the sample seed and
        ``permutation``, so the null is reproducible and invariant to reordering the nodes. Sampled
        networks are permuted now (small copies); full networks when streamed (one operator at a time).

        Example:
            >>> import torch
            >>> from neuromfa_callback import build_network
            >>> _ = torch.manual_seed(0)
            >>> net = build_network(torch.nn.Sequential(torch.nn.Linear(64, 64)), neurons_per_layer=32)
            >>> a, b = net.null(0), net.null(0)
            >>> bool(torch.equal(a.blocks[0].weights[0], b.blocks[0].weights[0])), a.permutation
            (True, 0)
        """
        if self.permutation is not None:
            raise ValueError(f"Expected a real network, got the null #{self.permutation} of one")
        if self.full:
            return self._like(self.blocks, permutation=int(permutation))
        self.synchronize()
        blocks = tuple(
            replace(b, weights=tuple(null_matrix(w, null_seed(self.seed, permutation, i, k)) for k, w in enumerate(b.weights)))
            for i, b in enumerate(self.blocks)
        )
        return self._like(blocks, permutation=int(permutation))

    # ------------------------------------------------------------------------------ streaming
    def _chunk(self) -> int:
        if self.device.type == "cuda" or not self.full:
            return CUDA_CHUNK  # sampled networks are small: one engine call per depth
        return CHUNK  # full networks stream in small pieces: bounded memory

    def _block_pieces(self, i: int, b: MatrixBlock) -> Iterator[Any]:
        weights = b.weights
        if self.full and self.permutation is not None:  # the null of a full network, one operator at a time
            weights = tuple(null_matrix(move(w, w.device, False, False), null_seed(self.seed, self.permutation, i, k))
                            for k, w in enumerate(b.weights))
        step = max(1, self._chunk() // max(b.n_out, 1))
        for j0 in range(0, b.n_nodes, step):
            yield abs_scaled_columns(weights, b.scales, j0, min(b.n_nodes, j0 + step))

    def _pieces(self, depth: int | None = None, labelled: bool = False) -> Iterator[Any]:
        """``|w| * scale`` in float64, node-major ``(k nodes, n_out)``, chunk by chunk of columns
        (``labelled``: ``(piece, depth)`` pairs)."""
        self.synchronize()
        for i, b in enumerate(self.blocks):
            if depth is None or b.depth == depth:
                for piece in self._block_pieces(i, b):
                    yield (piece, b.depth) if labelled else piece

    def _kernel_blocks(self, depth: int | None) -> list[MatrixBlock]:
        """The blocks with plain ``rows x nodes`` tensors for the CuPy kernel, which reads them in place
        (operators as views where they have one; the null of a full network permuted one block at a time)."""
        out = []
        for i, b in enumerate(self.blocks):
            if depth is not None and b.depth != depth:
                continue
            weights = []
            for k, w in enumerate(b.weights):
                if isinstance(w, Operator):
                    w = w.matrix() if w.kind in _VIEWABLE else w.columns(0, w.n_in)
                if self.full and self.permutation is not None:
                    w = null_matrix(w, null_seed(self.seed, self.permutation, i, k))
                weights.append(w)
            out.append(replace(b, weights=tuple(weights)))
        return out

    def _group(self, depth: int | None, q: np.ndarray, grid: Any, min_neighbours: int, backend: str) -> PartitionSums:
        """Partition sums of one depth's blocks (all blocks: ``depth=None``), on the backend that runs here."""
        from neuromfa_callback.backends import check_backend

        if check_backend(backend, self.device) == "cupy":  # the kernel reads the weights in place, in their dtype
            from neuromfa_callback.backends.cupy_backend import partition_blocks_cupy

            self.synchronize()
            blocks = self._kernel_blocks(depth)
            if not blocks:
                return PartitionSums.empty(q, grid, min_neighbours, backend="cupy")
            return partition_blocks_cupy(blocks, q, grid, min_neighbours)
        self.synchronize()
        chunks = self.chunks(labelled=False) if depth is None else (
            c for c in self.chunks() if (c[2] == depth).any())
        if depth is None:
            return partition_chunks(chunks, q=q, grid=grid, min_neighbours=min_neighbours, backend=backend)
        return partition_chunks(chunks, q=q, grid=grid, min_neighbours=min_neighbours, backend=backend,
                                n_groups=self.n_depths)[depth]

    def chunks(self, labelled: bool = True) -> Iterator[tuple[Any, Any, np.ndarray | None]]:
        """The network as CSR chunks ``(indptr, distances, depth of every node)`` (NumPy arrays on CPU,
        tensors on CUDA), each at most the chunk budget: what the engine is called on. A sampled network
        is one chunk; a full network streams many. Exact zeros are distance 0 (the ``1 < d`` filter drops them).
        """
        pending: list[Any] = []
        labels: list[np.ndarray] = []
        size = 0
        pieces = self._pieces(labelled=True)
        while True:
            item = next(pieces, None)
            if item is not None:
                pending.append(item[0])
                labels.append(np.full(item[0].shape[0], item[1], dtype=np.int64))
                size += item[0].shape[0] * item[0].shape[1]
            if pending and (item is None or size >= self._chunk()):
                indptr, dist = csr_of(pending, drop_zeros=False)
                yield indptr, dist, (np.concatenate(labels) if labelled else None)
                pending, labels, size = [], [], 0
            if item is None:
                return

    @torch.no_grad()
    def partition_by_depth(
        self, q: Any = None, threshold: float = 150.0, decimals: int = 0, min_neighbours: int = 10, backend: str = "auto"
    ) -> tuple[PartitionSums, ...]:
        """Partition sums of the nodes of each depth (one entry per :attr:`depth_names`), from one pass over
        the network (the NumPy engine takes the depth of every node); they add up to :meth:`partition`,
        since partition sums are sums over nodes."""
        q, grid, min_neighbours = _validated_params(q, threshold, decimals, min_neighbours, backend)
        from neuromfa_callback.backends import check_backend

        if check_backend(backend, self.device) == "cupy":  # the kernel: one call per depth's blocks
            return tuple(self._group(d, q, grid, min_neighbours, backend) for d in range(self.n_depths))
        self.synchronize()
        return partition_chunks(self.chunks(), q=q, grid=grid, min_neighbours=min_neighbours, backend=backend,
                                n_groups=self.n_depths)

    @torch.no_grad()
    def partition(
        self, q: Any = None, threshold: float = 150.0, decimals: int = 0, min_neighbours: int = 10, backend: str = "auto"
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
            >>> _ = torch.manual_seed(0)
            >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
            >>> net = build_network(mlp, neurons_per_layer=32, seed=0)
            >>> part = net.partition(min_neighbours=2)
            >>> part.n_nodes <= net.n_nodes == 64
            True
        """
        q, grid, min_neighbours = _validated_params(q, threshold, decimals, min_neighbours, backend)
        return self._group(None, q, grid, min_neighbours, backend)

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

        From CUDA to CPU with ``non_blocking=True`` the copies go into pinned memory, and a CUDA event
        is recorded on the current stream of EACH source device (a model split over several GPUs
        copies from each); the new network waits on all of them before it reads its weights
        (:meth:`synchronize`), so the training thread can hand it to a worker thread at once.
        ``copy=True`` copies even on the same device (a snapshot of full-mode weights).

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
        self.synchronize()
        with torch.no_grad():
            blocks = tuple(
                replace(b, weights=tuple(move(w, device, non_blocking, copy) for w in b.weights)) for b in self.blocks
            )
        ready = ()
        if non_blocking:
            ready = tuple(record_copy_events({w.device for b in self.blocks for w in b.weights}))
        return self._like(blocks, ready=ready)

    def synchronize(self) -> None:
        """Wait for pending non-blocking copies (no-op otherwise)."""
        for event in self._ready:
            event.synchronize()
        self._ready = ()


def record_copy_events(devices: Any) -> list[Any]:
    """One CUDA event per CUDA device in ``devices``, recorded on that device's current stream (where
    the non-blocking copies from it were queued). Waiting on all of them makes every copy complete."""
    events = []
    for dev in sorted({d for d in devices if d.type == "cuda"}, key=str):
        stream = torch.cuda.current_stream(dev)
        event = torch.cuda.Event()
        event.record(stream)
        events.append(event)
    return events


def _to_array(w: Any) -> np.ndarray:
    if isinstance(w, Operator):
        raise TypeError("a full-mode network reads live parameters and cannot be pickled; take .to('cpu', copy=True) first")
    w = w.detach().cpu()
    return (w.float() if w.dtype not in (torch.float16, torch.float32, torch.float64) else w).numpy()  # bf16: exact in fp32


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()
