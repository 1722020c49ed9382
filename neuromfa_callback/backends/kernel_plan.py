r"""Host side of the box-counting kernel (``kernels/box_count.cu``): tiles, launch grids, tables, final sums.

Pure NumPy. It drives the kernels through a *runner*, an object with

- ``multiprocessors`` (int): used to size the accumulation grid;
- ``upload(array)`` -> buffer: a device copy of a NumPy array;
- ``zeros(n, dtype)`` / ``empty(n, dtype)`` -> buffer: ``n`` zeros / uninitialised values (NumPy dtype);
- ``launch(name, launch, args)``: run kernel ``name`` with a :class:`Launch`; ``args`` are buffers and
  NumPy scalars (``np.int32``, ``np.int64``, ``np.float64``) in the kernel's order;
- ``sum0(buffer, shape)`` -> ``np.ndarray``: the buffer viewed as ``shape``, summed over axis 0, on the host.

:mod:`~neuromfa_callback.backends.cupy_backend` is the GPU runner (CuPy, torch-allocated buffers); the
tests run the same plan through a C++ CPU harness that compiles the same ``.cu`` file with g++. So
everything except the CuPy glue is exercised on machines without a GPU.

Agreement: integer results (``n_nodes``, ``n_edges``, ``present``) equal the NumPy oracle exactly;
``z`` to about 1e-14 relative, tau to 1e-12 absolute (tested).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuromfa_callback.backends.binning import bin_tables
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = [
    "KERNEL_FILE",
    "KERNEL_NAMES",
    "DensePlan",
    "Launch",
    "Matrix",
    "NVRTC_OPTIONS",
    "dense_plan",
    "kernel_source",
    "launch_grid",
    "run_csr",
    "run_dense",
    "tile_width",
]

KERNEL_FILE = Path(__file__).with_name("kernels") / "box_count.cu"
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")  # no contraction: the same arithmetic as the CPU harness
KERNEL_NAMES = ("nmfa_hist_bf16", "nmfa_hist_f16", "nmfa_hist_f32", "nmfa_hist_f64", "nmfa_hist_csr", "nmfa_accumulate")
DTYPE_KERNEL = {
    "bfloat16": "nmfa_hist_bf16",
    "float16": "nmfa_hist_f16",
    "float32": "nmfa_hist_f32",
    "float64": "nmfa_hist_f64",
}

THREADS = 256  # histogram block size
MAX_TILE = 64  # nodes per histogram block (fewer on large radius grids)
QMAX = 64  # orders per accumulation launch (NMFA_QMAX in the .cu)
SMEM_BYTES = 48 * 1024  # dynamic shared memory without an opt-in
CUM_BYTES = 32 << 20  # scratch for the cumulative rows of one chunk of nodes
ZPART_BYTES = 16 << 20  # per-block partial sums Z
_TILE_FIELDS, _SEG_FIELDS = 5, 5


def kernel_source() -> str:
    """The CUDA source of the kernels (read from the package data)."""
    return KERNEL_FILE.read_text()


@dataclass(frozen=True)
class Launch:
    """Launch configuration: ``grid`` (x, y), ``block`` threads, dynamic ``shared_mem`` bytes."""

    grid: tuple[int, int]
    block: int
    shared_mem: int = 0


@dataclass(frozen=True)
class Matrix:
    """An ``rows x cols`` weight matrix in place: element ``(r, c)`` at ``pointer + (r*row_stride + c*col_stride)``
    elements of ``dtype`` (``"bfloat16"``, ``"float16"``, ``"float32"`` or ``"float64"``); column ``c`` is node ``c``,
    its magnitudes are multiplied by ``factor`` (in float64) before ``1/|w|``."""

    pointer: int
    rows: int
    cols: int
    row_stride: int
    col_stride: int
    dtype: str
    factor: float = 1.0


def _smem(n_bins: int, nt: int) -> int:
    return THREADS * 8 + 4 * n_bins * nt + 4 * (n_bins + 2)


def tile_width(n_bins: int) -> int:
    """Nodes per histogram block: the largest power of two <= 64 whose histograms fit in 48 KiB.

    Raises:
        ValueError: the radius grid is too fine for one node's histogram (use ``backend="torch"``).

    Example:
        >>> tile_width(150), tile_width(1990)
        (64, 4)
    """
    nt = MAX_TILE
    while nt >= 1:
        if _smem(n_bins, nt) <= SMEM_BYTES:
            return nt
        nt //= 2
    raise ValueError(
        f"Expected a radius grid of at most {(SMEM_BYTES - THREADS * 8 - 8) // 8} points for backend='cupy', got "
        f"{n_bins} (from `threshold` and `decimals`); use backend='torch' for this grid"
    )


def launch_grid(kind: str, n_bins: int, n_items: int, n_q: int = 1, multiprocessors: int = 1) -> Launch:
    """The launch configuration of a kernel: the one place that sizes grids, blocks and shared memory.

    Args:
        kind: ``"hist"`` (``n_items`` tiles: one block each) or ``"accumulate"`` (``n_items`` node rows).
        n_bins: radius grid size.
        n_items: tiles or rows.
        n_q: number of orders (``"accumulate"``: bounds the per-block partial sums to ``ZPART_BYTES``).
        multiprocessors: of the device (``"accumulate"``: 4 blocks per multiprocessor at most).

    Example:
        >>> launch_grid("hist", 150, 10)
        Launch(grid=(10, 1), block=256, shared_mem=41056)
        >>> launch_grid("accumulate", 150, 10_000, n_q=61, multiprocessors=132)
        Launch(grid=(132, 1), block=160, shared_mem=0)
    """
    if kind == "hist":
        return Launch((max(1, n_items), 1), THREADS, _smem(n_bins, tile_width(n_bins)))
    if kind == "accumulate":
        block = min(256, -(-n_bins // 32) * 32)
        cap = max(1, ZPART_BYTES // (n_bins * max(n_q, 1) * 8))
        sms = max(multiprocessors, 1)
        gx = max(1, min(n_items, 4 * sms, cap))
        if gx > sms:
            gx -= gx % sms  # whole waves
        return Launch((gx, -(-n_bins // block)), block, 0)
    raise ValueError(f"Expected `kind` to be 'hist' or 'accumulate', got {kind!r}")


def _q_layout(q: np.ndarray) -> tuple[int, int, float]:
    """(index of q = 0, uniform flag, step): on a uniform grid the kernel uses running products."""
    z0 = int(np.flatnonzero(q == 0.0)[0])
    dq = (q[-1] - q[0]) / (q.size - 1)
    steps = (np.arange(q.size) - z0) * dq
    uniform = bool(np.all(np.abs(q - steps) <= 8 * np.finfo(np.float64).eps * max(1.0, float(np.abs(q).max()))))
    return z0, int(uniform), float(dq)


def _tiles(groups: np.ndarray, nt: int, rows_cap: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Tile table ``(seg_begin, seg_end, col0, ncols, row_out)`` for groups ``(seg_begin, seg_end, n_nodes)``, and
    its chunks ``(first tile, tiles, rows)`` of at most ``rows_cap // nt`` tiles; ``row_out`` counts per chunk."""
    g = np.asarray(groups, dtype=np.int64).reshape(-1, 3)
    per_group = -(-g[:, 2] // nt)
    gi = np.repeat(np.arange(g.shape[0]), per_group)
    first_of_group = np.cumsum(per_group) - per_group
    col0 = (np.arange(gi.size) - first_of_group[gi]) * nt
    width = np.minimum(nt, g[gi, 2] - col0)
    per_chunk = max(1, rows_cap // nt)
    chunk = np.arange(gi.size) // per_chunk
    before = np.cumsum(width) - width
    starts = np.arange(0, gi.size, per_chunk)
    row_out = before - before[starts][chunk]
    table = np.stack([g[gi, 0], g[gi, 1], col0, width, row_out], axis=1).astype(np.int64)
    rows = np.add.reduceat(width, starts) if gi.size else np.zeros(0, dtype=np.int64)
    chunks = [(int(t), int(min(per_chunk, gi.size - t)), int(r)) for t, r in zip(starts, rows)]
    return table.reshape(-1, _TILE_FIELDS), chunks


class _Sums:
    """Per-block partial sums on the device and the accumulation launches that fill them."""

    def __init__(self, runner: Any, q: np.ndarray, grid: RadiusGrid, rows_max: int) -> None:
        self.runner, self.q, self.grid = runner, q, grid
        self.nb, self.nq = grid.size, q.size
        self.acc = launch_grid("accumulate", self.nb, rows_max, self.nq, runner.multiprocessors)
        gx = self.acc.grid[0]
        self.z0, self.uniform, self.dq = _q_layout(q)
        self.q_buf = runner.upload(q.astype(np.float64))
        self.zpart = runner.zeros(gx * self.nb * self.nq, np.float64)
        self.npart = runner.zeros(gx * 2, np.uint64)
        self.wpart = runner.zeros(gx, np.float64)
        self.ppart = runner.zeros(gx * self.nb, np.uint32)

    def add_chunk(self, cum: Any, wsum: Any, n_rows: int) -> None:
        for j0 in range(0, self.nq, QMAX):
            nq = min(QMAX, self.nq - j0)
            q_zero = min(max(self.z0 - j0, 0), nq - 1)
            args = [
                cum,
                wsum,
                np.int64(n_rows),
                np.int32(self.nb),
                self.q_buf,
                np.int32(j0),
                np.int32(nq),
                np.int32(q_zero),
                np.int32(self.uniform),
                np.float64(self.dq),
                np.int32(j0 == 0),
                np.int64(self.nq),
                self.zpart,
                self.npart,
                self.wpart,
                self.ppart,
            ]
            self.runner.launch("nmfa_accumulate", self.acc, args)

    def result(self, min_neighbours: int, backend: str) -> PartitionSums:
        gx = self.acc.grid[0]
        counts = self.runner.sum0(self.npart, (gx, 2))
        n_nodes = int(counts[0])
        if n_nodes == 0:
            return PartitionSums.empty(self.q, self.grid, min_neighbours, backend=backend)
        return PartitionSums(
            q=self.q,
            grid=self.grid,
            z=self.runner.sum0(self.zpart, (gx, self.nb, self.nq)).astype(np.float64),
            present=self.runner.sum0(self.ppart, (gx, self.nb)) > 0,
            n_nodes=n_nodes,
            n_edges=int(counts[1]),
            min_neighbours=min_neighbours,
            backend=backend,
            weight_sum=float(self.runner.sum0(self.wpart, (gx,))),
        )


def _rows_cap(n_bins: int, nt: int) -> int:
    return max(nt, (CUM_BYTES // (4 * n_bins)) // nt * nt)


def _grid_args(grid: RadiusGrid, nt: int, min_neighbours: int) -> list[Any]:
    return [
        np.int32(grid.size),
        np.int32(nt),
        np.int32(min_neighbours),
        np.int32(grid.lo),
        np.float64(grid.scale),
        np.float64(grid.threshold),
        np.int32(grid.decimals),
    ]


@dataclass(eq=False)
class DensePlan:
    """Host tables of a set of node groups (layout only, not the weights' values): one part per dtype
    ``(kernel, tiles, segments, factors, edge tables, chunks)``; ``buffers`` keeps device copies per runner."""

    n_bins: int
    nt: int
    rows_max: int
    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int, int]]]]
    buffers: dict[Any, list[Any]] = field(default_factory=dict)


def dense_plan(groups: Sequence[Sequence[Matrix]], grid: RadiusGrid) -> DensePlan:
    """The tables for ``groups`` (cached on the layout: the same matrices in place give the same plan).

    Raises:
        ValueError: a group whose matrices differ in ``cols`` or ``dtype``; a grid too fine (:func:`tile_width`).
        TypeError: an unsupported dtype.
    """
    nt = tile_width(grid.size)
    key = tuple(tuple(g) for g in groups if len(g))
    return _dense_plan(key, grid, nt, _rows_cap(grid.size, nt))


@functools.lru_cache(maxsize=8)
def _dense_plan(groups: tuple[tuple[Matrix, ...], ...], grid: RadiusGrid, nt: int, rows_cap: int) -> DensePlan:
    nb = grid.size
    by_dtype: dict[str, list[tuple[Matrix, ...]]] = {}
    for g in groups:
        if len({m.cols for m in g}) != 1 or len({m.dtype for m in g}) != 1:
            raise ValueError("Expected the matrices of a node group to share `cols` and `dtype`")
        if g[0].dtype not in DTYPE_KERNEL:
            raise TypeError(f"Expected weights of dtype {sorted(DTYPE_KERNEL)}, got {g[0].dtype}")
        by_dtype.setdefault(g[0].dtype, []).append(g)
    parts, rows_max = [], 1
    for dtype, gs in by_dtype.items():
        mats = [m for g in gs for m in g]
        segs = np.array([(m.pointer, m.rows, m.row_stride, m.col_stride, 0) for m in mats], dtype=np.int64).reshape(
            -1, _SEG_FIELDS
        )
        factors = np.array([m.factor for m in mats], dtype=np.float64)
        edges = np.zeros(nb + 2, dtype=np.float32)
        if dtype != "float64":
            distinct, which = np.unique(factors, return_inverse=True)
            edges = bin_tables(grid, distinct).reshape(-1)
            segs[:, 4] = which.reshape(-1) * (nb + 2)
        sizes = np.array([len(g) for g in gs])
        ends = np.cumsum(sizes)
        tiles, chunks = _tiles(np.stack([ends - sizes, ends, [g[0].cols for g in gs]], axis=1), nt, rows_cap)
        rows_max = max([rows_max] + [r for _, _, r in chunks])
        parts.append((DTYPE_KERNEL[dtype], tiles, segs, factors, edges, chunks))
    return DensePlan(nb, nt, rows_max, parts)


def run_dense(
    groups: Sequence[Sequence[Matrix]],
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
    runner: Any,
    backend: str = "cupy",
) -> PartitionSums:
    """Partition sums of node groups given as weight matrices in place (see :class:`Matrix`).

    Each group is one node set: node ``c`` of a group has the out-edges of column ``c`` of every matrix in
    it (all with the same ``cols`` and ``dtype``). Equal to the NumPy oracle on the CSR of
    ``1 / (|w| * factor)`` (exact zeros: no edge). A runner with a ``cache_key`` keeps the plan's device
    tables between calls (they describe where the weights are, not their values).
    """
    q = np.asarray(q, dtype=np.float64)
    plan = dense_plan(groups, grid)
    nb, nt = plan.n_bins, plan.nt
    sums = _Sums(runner, q, grid, plan.rows_max)
    cum = runner.empty(plan.rows_max * nb, np.uint32)  # every row read is written first
    wsum = runner.empty(plan.rows_max, np.float64)
    key = getattr(runner, "cache_key", None)
    bufs = plan.buffers.get(key) if key is not None else None
    if bufs is None:
        bufs = [
            [runner.upload(a) for a in (tiles, segs, edges, factors)]
            for _, tiles, segs, factors, edges, _ in plan.parts
        ]
        if key is not None:
            plan.buffers[key] = bufs
    for (name, _, _, _, _, chunks), part_bufs in zip(plan.parts, bufs):
        for first, n_tiles, rows in chunks:
            args = [np.int64(first), *part_bufs, *_grid_args(grid, nt, min_neighbours), cum, wsum]
            runner.launch(name, launch_grid("hist", nb, n_tiles), args)
            sums.add_chunk(cum, wsum, rows)
    return sums.result(min_neighbours, backend)


def run_csr(
    indptr: Any,
    distances: Any,
    n_nodes: int,
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
    runner: Any,
    backend: str = "cupy",
) -> PartitionSums:
    """Partition sums of a CSR network whose ``indptr`` (int64) and ``distances`` (float64) are runner buffers.

    The float64 rule of the NumPy oracle bins the distances, so the result is the oracle's.
    """
    q = np.asarray(q, dtype=np.float64)
    nb, nt = grid.size, tile_width(grid.size)
    tiles, chunks = _tiles(np.array([(0, 0, n_nodes)]), nt, _rows_cap(nb, nt))  # col0 of a tile: its first node
    rows_max = max([rows for _, _, rows in chunks] + [1])
    sums = _Sums(runner, q, grid, rows_max)
    cum = runner.empty(rows_max * nb, np.uint32)
    wsum = runner.empty(rows_max, np.float64)
    tile_buf = runner.upload(tiles) if chunks else None
    for first, n_tiles, rows in chunks:
        args = [np.int64(first), tile_buf, indptr, distances, *_grid_args(grid, nt, min_neighbours), cum, wsum]
        runner.launch("nmfa_hist_csr", launch_grid("hist", nb, n_tiles), args)
        sums.add_chunk(cum, wsum, rows)
    return sums.result(min_neighbours, backend)
