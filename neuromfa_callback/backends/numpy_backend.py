r"""NumPy backend: the float64 oracle and the CPU engine.

Algorithm (NEUROMFA.md section 2, steps 1-6). A kept node ``i`` with ``n_i`` kept distances has
``p_i(r) = c / C`` with ``C = 1 + n_i`` and ``c = M_i(r)``. In bin order, the node's ``k``-th kept
distance raises ``c`` from ``k`` to ``k + 1``, so with ``V(c, C) = (c/C)^q``

.. math::  Z_q(r) = \sum_i C_i^{-q} + \sum_{\text{edges } e:\ b_e \le r} W(c_e, C_e),
   \qquad W(c, C) = V(c, C) - V(c - 1, C),

where ``c_e = rank + 2`` for the edge of rank ``0, 1, ...`` in its node. The steps:

1. Keep distances in ``(1, T]``, count them per node (``add.reduceat`` over the CSR offsets), keep
   nodes with more than ``min_neighbours``, compress their distances and round them to bins.
2. Sort int32 keys ``node * n_bins + bin`` once. Nodes stay in CSR order, so an edge's rank is its
   position minus its node's start: no global ``unique``, no node x bin table.
3. Entries ``(bin, table row, weight)``: one ``W(c_e, C_e)`` per edge; or, when many edges of a node
   share a bin (fewer (node, bin) runs than ``_RUNS_FOR_V_FORM`` per edge, as in full networks with
   thousands of neighbours per node), ``+V(c_new, C)`` and ``-V(c_old, C)`` per run, since the
   ``W`` of a run telescope. Rows of a table of all pairs ``(c, C)``, C-major.
4. Bins are cut into blocks of ``_BLOCK``; the (block, row) combinations that occur are numbered
   through a boolean occupancy array, and one weighted ``bincount`` gives ``A[(block, row), bin in
   block]``. Per block, ``dv[bins] = A_block.T @ table[rows of the block]`` (BLAS, in pieces small
   enough for OpenBLAS to stay on one thread), with the table rows gathered a few blocks at a
   time into a buffer that stays in cache. The table (``W`` or ``V`` for ``C <= _PAIRS_C_MAX``) is
   cached per ``q`` grid; beyond, rows are products of two small cached tables (per ``c``, per
   ``C``). An extra last column counts the edges per bin (``present``).

Numerics: ``W = c^q (-expm1(q log1p(-1/c))) * C^{-q}`` is a product of two accurately computed
factors (no cancellation) and has the sign of ``q``. For ``q >= 0``, ``Z`` is the forward running
sum from ``sum_i C_i^{-q}``; for ``q < 0``, it is ``Z(L) = n_nodes`` plus the backward running sum
of ``-dv``. With ``W`` entries every sum adds terms of one sign; a ``V`` pair of a run adds the
run's increment as a difference of two terms no larger than the node's own term at every radius
the sum reaches, so each partial sum keeps float64 precision either way (measured: tau agrees with
a per-node float64 evaluation to about 1e-14, both forms agree to 2e-15 in ``z``).

Speed: the temporaries live in a per-thread workspace reused across calls (bounded by
``_WORKSPACE_BYTES``), so repeated calls do not fault in fresh pages whatever the allocator does.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["partition_sums_numpy"]

_BLOCK = 8  # bins per block, a power of two (8 and 16 measured best from 4 to 64 on the golden cases)
_PAIRS_C_MAX = 256  # cache the table of all pairs up to this C (4.5 MiB at C = 128, 16 MiB at 256)
_POWERS_C_MAX = 1 << 14  # cache the per-c and per-C tables up to this C (8 MiB each at most)
_GATHER_ROWS = 512  # rows of W gathered at a time (256 KiB for 61 q values: stays in cache)
_RUNS_FOR_V_FORM = 0.5  # V entries (two per run) when there are fewer (node, bin) runs than this per edge
_BLAS_ONE_THREAD_MNK = 1 << 18  # OpenBLAS runs a GEMM with m*n*k <= 4 * 65536 on one thread
_WORKSPACE_BYTES = 32 << 20  # per thread; a larger call allocates (and frees) its own arrays

_cache: dict[tuple[str, bytes], tuple] = {}
_cache_lock = threading.Lock()
_local = threading.local()


class _Workspace:
    """Named scratch arrays that grow on demand and are reused by later calls (one per thread)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._bytes = 0

    def _get(self, name: str, size: int, make: Callable[[int], np.ndarray]) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None or arr.size < size:
            old = 0 if arr is None else arr.nbytes
            arr = make(max(size + size // 4, 1024))  # headroom: sizes drift from call to call
            if self._bytes - old + arr.nbytes <= _WORKSPACE_BYTES:
                self._arrays[name] = arr
                self._bytes += arr.nbytes - old
        return arr[:size]

    def empty(self, name: str, size: int, dtype: type) -> np.ndarray:
        """A 1-D array of ``size`` elements (content undefined); one dtype per name."""
        return self._get(name, size, lambda n: np.empty(n, dtype=dtype))

    def arange(self, size: int) -> np.ndarray:
        """``np.arange(size)`` (intp), kept between calls; read only."""
        return self._get("arange", size, lambda n: np.arange(n, dtype=np.intp))

    def ones(self, size: int) -> np.ndarray:
        """``np.ones(size)`` (float64), kept between calls; read only."""
        return self._get("ones", size, np.ones)


def _workspace() -> _Workspace:
    ws = getattr(_local, "workspace", None)
    if ws is None:
        ws = _local.workspace = _Workspace()
    return ws


def _cached(kind: str, q: np.ndarray, c_max: int, limit: int, build: Callable[[int], tuple]) -> tuple:
    """``build(cap)`` for some ``cap >= c_max``, cached per ``(kind, q)`` while ``cap <= limit``."""
    key = (kind, q.tobytes())
    hit = _cache.get(key)
    if hit is not None and hit[0] >= c_max:
        return hit
    if c_max > limit:
        return build(c_max)
    cap = min(limit, max(64, -(-(c_max + c_max // 4) // 32) * 32))  # 25% headroom: C drifts in training
    out = build(cap)
    for arr in out[1:]:
        arr.flags.writeable = False
    with _cache_lock:
        if len(_cache) >= 8:
            _cache.clear()
        _cache[key] = out
    return out


def _powers(q: np.ndarray, c_max: int) -> tuple[int, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """``(cap, per_c, inv_pow)`` with ``per_c[0][c - 2] = c^q - (c-1)^q`` (accurately),
    ``per_c[1][c - 1] = c^q`` and ``inv_pow[C] = C^-q``. An extra last column (1, ``c`` and 1)
    makes every entry count its edges: ``W`` adds 1, ``V(c_new) - V(c_old)`` adds ``c_new - c_old``."""

    def build(cap: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        log_c = np.log(np.arange(1.0, cap + 1))[:, None]
        steps, powers, inv_pow = (np.ones((n, q.size + 1)) for n in (cap - 1, cap, cap + 1))
        steps[:, :-1] = np.exp(q * log_c[1:]) * -np.expm1(q * np.log1p(-1.0 / np.exp(log_c[1:])))
        powers[:, :-1] = np.exp(q * log_c)
        powers[:, -1] = np.arange(1, cap + 1)  # V(c_new) - V(c_old) then counts c_new - c_old edges
        inv_pow[1:, :-1] = np.exp(-q * log_c)
        return cap, steps, powers, inv_pow

    cap, steps, powers, inv_pow = _cached("powers", q, c_max, _POWERS_C_MAX, build)
    return cap, (steps, powers), inv_pow


def _first_rows(big_c: np.ndarray, form: int) -> np.ndarray:
    """Table row of the smallest ``c`` of ``C``: the rows of ``C`` follow those of ``C - 1``."""
    m = big_c - 1 + form  # form 0: W rows c = 2..C; form 1: V rows c = 1..C
    return m * (m - 1) // 2


def _pairs(q: np.ndarray, c_max: int, form: int) -> np.ndarray | None:
    """For every pair ``c <= C <= c_max``, in row ``_first_rows(C) + c - 2 + form``: ``W(c, C)``
    (form 0, ``c >= 2``) or ``V(c, C) = (c/C)^q`` (form 1). None past ``_PAIRS_C_MAX``."""
    if c_max > _PAIRS_C_MAX:
        return None

    def build(cap: int) -> tuple[int, np.ndarray]:
        _, per_c, inv_pow = _powers(q, cap)
        big_c = np.arange(2 - form, cap + 1)
        big_c = np.repeat(big_c, big_c - 1 + form)
        row_in_c = np.arange(big_c.size) - _first_rows(big_c, form)
        return cap, per_c[form][row_in_c] * inv_pow[big_c]

    return _cached(f"pairs{form}", q, c_max, _PAIRS_C_MAX, build)[1]


def _kept_counts(indptr: np.ndarray, lens: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Number of kept distances per node; ``keep`` ends with one extra False."""
    counts = np.add.reduceat(keep, indptr[:-1], dtype=np.int32)
    counts[lens == 0] = 0  # reduceat gives keep[start] for an empty node
    return counts


def _entries(ws: _Workspace, key: np.ndarray, bins: np.ndarray, kept_counts: np.ndarray, slot: np.ndarray):
    """Step 3: ``(form, rows, bins, weights)`` of the entries, from the sorted ``(node, bin)`` keys.

    Form 0, one ``W(c, C)`` per edge with ``c = rank + 2``; form 1, when there are fewer (node, bin)
    runs than ``_RUNS_FOR_V_FORM`` per edge, ``+V(c_new, C)`` and ``-V(c_old, C)`` per run, with
    ``c_new = 2 +`` the rank of its last edge and ``c_old = 1 +`` the rank of its first edge.
    ``slot`` (one intp per edge) receives the rows of form 0.
    """
    n_edges = key.size
    run = ws.empty("run", n_edges + 1, np.bool_)  # a new (node, bin) run starts here
    run[0] = run[n_edges] = True
    np.not_equal(key[1:], key[:-1], out=run[1:n_edges])
    n_runs = int(np.count_nonzero(run[:n_edges]))
    form = int(n_runs < _RUNS_FOR_V_FORM * n_edges)
    offset = _first_rows(kept_counts + 1, form) - (np.cumsum(kept_counts) - kept_counts)  # row - position
    if form == 0:
        np.add(ws.arange(n_edges), np.repeat(offset, kept_counts), out=slot)
        return form, slot, bins, ws.ones(n_edges)
    first = np.flatnonzero(run)  # run starts, then n_edges
    offset = np.repeat(offset, kept_counts)
    rows = ws.empty("entries", 2 * n_runs, np.intp)
    np.add(first[1:], offset[first[1:] - 1], out=rows[:n_runs])
    np.add(first[:-1], offset[first[:-1]], out=rows[n_runs:])
    weights = np.concatenate([np.ones(n_runs), np.full(n_runs, -1.0)])
    return form, rows, np.concatenate([bins[first[:-1]]] * 2), weights


def _columns(ws: _Workspace, slot: np.ndarray, bins: np.ndarray, weights: np.ndarray, n_slots: int, width: int = _BLOCK):
    """Step 4a: the occurring ``slot = block * n_rows + row`` values (sorted) and ``A[column, sub]``.

    ``bins`` holds each entry's position in its block (``bin % _BLOCK``, plus ``group * _BLOCK`` with
    groups), ``width`` the positions per block (``_BLOCK``, times the number of groups)."""
    col = ws.empty("col", slot.size, np.intp)
    if n_slots <= 16 * slot.size + (1 << 20):
        occupied = ws.empty("occupied", n_slots, np.bool_)
        occupied[:] = False
        occupied[slot] = True
        cols = np.flatnonzero(occupied)
        lut = ws.empty("lut", n_slots, np.intp)
        lut[cols] = np.arange(0, cols.size * width, width)
        np.take(lut, slot, out=col, mode="clip")
    else:  # a huge pair space (thousands of neighbours per node): sort instead
        cols, inverse = np.unique(slot, return_inverse=True)
        np.multiply(inverse.reshape(-1), width, out=col)
    np.add(col, bins, out=col)
    a = np.bincount(col, weights=weights, minlength=cols.size * width)
    return cols, a.reshape(cols.size, width)


def _products(ws: _Workspace, q: np.ndarray, c_max: int, form: int, cols: np.ndarray, a: np.ndarray, n_blocks: int):
    """Step 4b: ``dv[bin] = sum of the bin's entries`` as ``A_block.T @ table[rows of the block]``
    (``A``'s width: ``_BLOCK`` bins, times the number of groups; ``dv`` is block-major).

    Products are cut into pieces of at most ``k_max`` columns (OpenBLAS runs a GEMM with
    ``m * n * k <= 4 * 65536`` on one thread, so a multithreaded BLAS never hands these small
    products to helper threads); table rows are gathered for as many pieces as fit in ``rows``.
    """
    n_q = q.size
    n_rows = (c_max + form) * (c_max + form - 1) // 2
    col_block, col_row = np.divmod(cols, n_rows)
    bounds = np.searchsorted(col_block, np.arange(n_blocks + 1)).tolist()
    _, per_c, inv_pow = _powers(q, c_max)
    table = _pairs(q, c_max, form)
    if table is None:  # row of (c, C) = per_c[form][c - 2 + form] * inv_pow[C]
        table = per_c[form]
        first_row = _first_rows(np.arange(2 - form, c_max + 1), form)
        col_big = np.searchsorted(first_row, col_row, side="right") + 1 - form
        col_row = col_row - first_row[col_big - 2 + form]
    width = a.shape[1]
    k_max = max(1, _BLAS_ONE_THREAD_MNK // (width * (n_q + 1)))
    pieces = [
        (k, start, min(start + k_max, bounds[k + 1]))
        for k in range(n_blocks)
        for start in range(bounds[k], bounds[k + 1], k_max)
    ]
    gather = max(_GATHER_ROWS, k_max)
    rows = ws.empty("rows", gather * (n_q + 1), np.float64).reshape(gather, n_q + 1)
    dv = np.zeros((n_blocks * width, n_q + 1))
    part = np.empty((width, n_q + 1))
    i = 0
    while i < len(pieces):
        lo, j = pieces[i][1], i + 1
        while j < len(pieces) and pieces[j][2] - lo <= gather:
            j += 1
        hi = pieces[j - 1][2]
        w = np.take(table, col_row[lo:hi], axis=0, out=rows[: hi - lo], mode="clip")
        if table is per_c[form]:
            factor = ws.empty("factor", (hi - lo) * (n_q + 1), np.float64).reshape(hi - lo, n_q + 1)
            w *= np.take(inv_pow, col_big[lo:hi], axis=0, out=factor, mode="clip")
        for k, start, stop in pieces[i:j]:
            out = dv[k * width : (k + 1) * width]
            if start == bounds[k]:
                np.matmul(a[start:stop].T, w[start - lo : stop - lo], out=out)
            else:
                out += np.matmul(a[start:stop].T, w[start - lo : stop - lo], out=part)
        i = j
    return dv, inv_pow


def partition_sums_numpy(
    indptr: np.ndarray,
    distances: np.ndarray,
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
    groups: np.ndarray | None = None,
    n_groups: int = 1,
) -> PartitionSums | tuple[PartitionSums, ...]:
    """Partition sums of a CSR distance network (inputs already validated).

    Args:
        indptr: int64 array, ``n + 1`` offsets.
        distances: float64 array of distances ``1/|w|``.
        q: float64 moment orders, strictly increasing (as :func:`validate_q` returns them).
        grid: the radius grid (threshold and rounding).
        min_neighbours: a node is kept if it has MORE than this many kept distances.
        groups: optional group of every node (ints in ``[0, n_groups)``): then the partition sums of
            each group are returned, from ONE pass (the groups extend the bin axis: group ``g``'s bins
            follow group ``g - 1``'s), equal to separate calls on each group's nodes.
        n_groups: number of groups.

    Returns:
        :class:`PartitionSums`, or a tuple of them (one per group) when ``groups`` is given.
    """
    q = np.asarray(q, dtype=np.float64)
    n_g = 1 if groups is None else int(n_groups)
    empty = PartitionSums.empty(q, grid, min_neighbours)
    if indptr.size < 2:
        return empty if groups is None else (empty,) * n_g
    ws = _workspace()
    n_q, n_dist = q.size, distances.size
    n_bins, lo_bin = grid.size, grid.lo

    # 1. Kept distances and nodes; bins.
    keep = ws.empty("keep", n_dist + 1, np.bool_)
    mask = ws.empty("mask", n_dist, np.bool_)
    np.greater(distances, 1.0, out=keep[:n_dist])
    np.less_equal(distances, grid.threshold, out=mask)
    np.logical_and(keep[:n_dist], mask, out=keep[:n_dist])
    keep[n_dist] = False
    lens = np.diff(indptr)
    counts = _kept_counts(indptr, lens, keep)
    node_ok = counts > min_neighbours
    kept_counts = counts[node_ok].astype(np.int64)
    n_nodes = int(kept_counts.size)
    if n_nodes == 0:
        return empty if groups is None else (empty,) * n_g
    node_group = np.zeros(n_nodes, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)[node_ok]
    np.logical_and(keep[:n_dist], np.repeat(node_ok, lens), out=mask)
    n_edges = int(kept_counts.sum())
    d = np.take(distances, np.flatnonzero(mask), out=ws.empty("d", n_edges, np.float64), mode="clip")
    scratch = ws.empty("col", n_edges, np.intp).view(np.float64)  # col holds floats until step 4
    rounded = np.rint(np.multiply(d, grid.scale, out=scratch) if grid.decimals else d, out=scratch)
    edge_group = np.repeat(node_group, kept_counts) if n_g > 1 else None
    np.reciprocal(d, out=d)
    weight_sums = np.bincount(edge_group, weights=d, minlength=n_g) if n_g > 1 else np.array([d.sum()])

    # 2. Sort (node, bin) keys; ranks follow from the node offsets.
    wide = n_nodes * n_bins >= 2**31
    key = ws.empty("key64" if wide else "key", n_edges, np.int64 if wide else np.int32)
    np.subtract(rounded, lo_bin, out=key, casting="unsafe")
    node_base = np.repeat(np.arange(0, n_nodes * n_bins, n_bins, dtype=key.dtype), kept_counts)
    np.add(key, node_base, out=key)
    key.sort()
    bins = np.subtract(key, node_base, out=node_base)
    n_blocks = -(-n_bins // _BLOCK)
    n_pad = n_blocks * _BLOCK
    if edge_group is not None:  # group g's bins follow group g - 1's, whole blocks apart
        bins = bins.astype(np.intp) + edge_group * n_pad

    # 3. Entries, 4. columns (block, row) and products per block.
    c_max = int(kept_counts.max()) + 1
    form, slot, bins, weights = _entries(ws, key, bins, kept_counts, d.view(np.intp))  # d is spent
    n_rows = (c_max + form) * (c_max + form - 1) // 2  # _first_rows(c_max + 1, form)
    block = ws.empty("col", slot.size, np.intp)
    np.add(slot, np.multiply(np.right_shift(bins, _BLOCK.bit_length() - 1, out=block), n_rows, out=block), out=slot)
    cols, a = _columns(ws, slot, np.bitwise_and(bins, _BLOCK - 1, out=bins), weights, n_g * n_blocks * n_rows)
    dv, inv_pow = _products(ws, q, c_max, form, cols, a, n_g * n_blocks)
    dv = dv.reshape(n_g, n_pad, n_q + 1)[:, :n_bins]

    # Running sums per group: forward for q >= 0, backward from Z(L) = n_nodes for q < 0.
    j0 = int(np.searchsorted(q, 0.0))  # q[:j0] < 0 <= q[j0:]
    nodes_in = np.bincount(node_group, minlength=n_g)
    edges_in = np.bincount(node_group, weights=kept_counts, minlength=n_g)
    starts = np.bincount(node_group * (c_max + 1) + kept_counts + 1, minlength=n_g * (c_max + 1)).reshape(n_g, c_max + 1)
    z = np.empty((n_g, n_bins, n_q))
    np.cumsum(dv[:, :, j0:n_q], axis=1, out=z[:, :, j0:])
    z[:, :, j0:] += (starts.astype(np.float64) @ inv_pow[: c_max + 1, j0:n_q])[:, None, :]
    if j0:
        tail = np.cumsum(dv[:, n_bins - 1 : 0 : -1, :j0], axis=1)  # tail[g, k] = dv[g, n_bins-1-k:].sum(0)
        np.subtract(nodes_in[:, None, None].astype(np.float64), tail[:, ::-1], out=z[:, :-1, :j0])
        z[:, -1, :j0] = nodes_in[:, None]
    out = [
        PartitionSums(q=q, grid=grid, z=z[g], present=dv[g, :, n_q] > 0, n_nodes=int(nodes_in[g]),
                      n_edges=int(edges_in[g]), min_neighbours=min_neighbours, backend="numpy",
                      weight_sum=float(weight_sums[g]))
        if nodes_in[g] else empty
        for g in range(n_g)
    ]
    return out[0] if groups is None else tuple(out)
