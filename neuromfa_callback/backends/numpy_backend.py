r"""NumPy backend: the float64 oracle.

Algorithm (NEUROMFA.md section 2, steps 1-6, assembled without an exponential per node, radius and q).

A kept node ``i`` with ``n_i`` kept distances has ``p_i(r) = c / C`` with small integers
``c = M_i(r)`` and ``C = 1 + n_i``. ``c`` only changes at the node's own distinct rounded distances
("events"). So ``Z_q(r_k) = sum_p H[k, p] * (c_p / C_p)^q`` over the distinct pairs ``p = (c, C)``,
where ``H[k, p]`` counts the nodes in pair ``p`` at radius ``k``. ``H`` is the running sum over
``k`` of a sparse delta matrix ``D`` (+1 where a node enters a pair, -1 where it leaves), so
``Z = cumsum_k(D @ V)`` with ``V[p, q] = (c_p / C_p)^q``. ``D`` is multiplied block by block
(``_BLOCK`` radii at a time, with only the pairs that occur in that block), which keeps the matrix
products small and dense.

Numerics: for ``q >= 0`` the running sum goes forward from the smallest radius (``Z`` grows with
``r``); for ``q < 0`` it goes backward from ``Z_q(L) = n_nodes`` (``Z`` shrinks with ``r``), so each
partial sum is accumulated from terms no larger than itself and the result keeps float64 precision
(tau agrees with a per-node float64 evaluation to about 1e-14).
"""

from __future__ import annotations

import numpy as np

from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["partition_sums_numpy"]

_BLOCK = 16


def _node_events(nid: np.ndarray, b: np.ndarray, n_nodes: int, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (node, bin) pairs in node-then-bin order, with their multiplicities."""
    flat = nid * n_bins + b
    if n_nodes * n_bins <= 8 * flat.size + (1 << 16):
        hist = np.bincount(flat, minlength=n_nodes * n_bins)
        nz = np.flatnonzero(hist)
        mult = hist[nz]
    else:
        nz, mult = np.unique(flat, return_counts=True)
    ev_node = nz // n_bins
    return ev_node, nz - ev_node * n_bins, mult


def _compact(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys in ``[0, space)`` and each key's rank among them."""
    if space <= 8 * keys.size + (1 << 16):
        occ = np.zeros(space, dtype=bool)
        occ[keys] = True
        uniq = np.flatnonzero(occ)
        lut = np.empty(space, dtype=np.int64)
        lut[uniq] = np.arange(uniq.size)
        return uniq, lut[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


def partition_sums_numpy(
    indptr: np.ndarray,
    distances: np.ndarray,
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
) -> PartitionSums:
    """Partition sums of a CSR distance network (inputs already validated).

    Args:
        indptr: int64 array, ``n + 1`` offsets.
        distances: float64 array of distances ``1/|w|``.
        q: float64 moment orders.
        grid: the radius grid (threshold and rounding).
        min_neighbours: a node is kept if it has MORE than this many kept distances.
    """
    q = np.asarray(q, dtype=np.float64)
    n_bins = grid.size
    lens = np.diff(indptr)
    keep = (distances > 1.0) & (distances <= grid.threshold)
    csum = np.zeros(distances.size + 1, dtype=np.int64)
    np.cumsum(keep, out=csum[1:])
    counts = csum[indptr[1:]] - csum[indptr[:-1]]
    node_ok = counts > min_neighbours
    kept_counts = counts[node_ok]
    n_nodes = int(kept_counts.size)
    if n_nodes == 0:
        return PartitionSums.empty(q, grid, min_neighbours)

    d = distances[keep & np.repeat(node_ok, lens)]
    b = np.rint(d * grid.scale) if grid.decimals else np.rint(d)
    b = b.astype(np.int64) - grid.lo
    present = np.zeros(n_bins, dtype=bool)
    present[b] = True

    nid = np.repeat(np.arange(n_nodes, dtype=np.int64), kept_counts)
    ev_node, ev_bin, mult = _node_events(nid, b, n_nodes, n_bins)
    start = np.cumsum(kept_counts) - kept_counts
    c_new = np.cumsum(mult) - start[ev_node] + 1
    c_old = c_new - mult
    big_c = kept_counts + 1

    # Pair (c, C) -> key = off[C] + c - 1, one slot per c in 1..C for each C that occurs.
    c_max = int(big_c.max())
    c_seen = np.zeros(c_max + 1, dtype=bool)
    c_seen[big_c] = True
    c_vals = np.flatnonzero(c_seen)
    off = np.zeros(c_max + 1, dtype=np.int64)
    off[c_vals] = np.cumsum(c_vals) - c_vals
    key_space = int(c_vals.sum())
    ev_off = off[big_c[ev_node]] - 1

    n_ev = ev_bin.size
    bins = np.empty(2 * n_ev + n_nodes, dtype=np.int64)
    keys = np.empty_like(bins)
    bins[:n_ev] = ev_bin
    bins[n_ev : 2 * n_ev] = ev_bin
    bins[2 * n_ev :] = 0
    keys[:n_ev] = ev_off + c_new
    keys[n_ev : 2 * n_ev] = ev_off + c_old
    keys[2 * n_ev :] = off[big_c]  # every node starts at c = 1
    weights = np.ones(bins.size, dtype=np.float64)
    weights[n_ev : 2 * n_ev] = -1.0

    block = bins // _BLOCK
    cols, col_of_entry = _compact(block * key_space + keys, (n_bins // _BLOCK + 1) * key_space)
    n_cols = cols.size
    delta = np.bincount(col_of_entry * _BLOCK + (bins - block * _BLOCK), weights=weights, minlength=n_cols * _BLOCK)
    delta = delta.reshape(n_cols, _BLOCK)

    col_block = cols // key_space
    col_key = cols - col_block * key_space
    key_c = np.arange(key_space, dtype=np.int64) - np.repeat(off[c_vals], c_vals) + 1
    key_big = np.repeat(c_vals, c_vals)
    # (c / C)^q = c^q * C^-q from two small tables: c_max * Q exponentials instead of one per pair.
    pow_c = np.exp(np.multiply.outer(np.log(np.arange(1, c_max + 1, dtype=np.float64)), q))
    pair_keys, pair_of_col = _compact(col_key, key_space)
    v_pairs = pow_c[key_c[pair_keys] - 1] / pow_c[key_big[pair_keys] - 1]

    dv = np.zeros(((n_bins // _BLOCK + 1) * _BLOCK, q.size))
    bounds = np.searchsorted(col_block, np.arange(n_bins // _BLOCK + 2))
    for blk in np.flatnonzero(bounds[1:] > bounds[:-1]):
        lo, hi = bounds[blk], bounds[blk + 1]
        dv[blk * _BLOCK : (blk + 1) * _BLOCK] = delta[lo:hi].T @ v_pairs[pair_of_col[lo:hi]]  # small gathers
    dv = dv[:n_bins]

    z = np.cumsum(dv, axis=0)
    neg = q < 0
    if neg.any():
        tail = np.cumsum(dv[::-1, neg], axis=0)[::-1]  # tail[k] = sum over k' >= k
        z_neg = np.full((n_bins, int(neg.sum())), float(n_nodes))
        z_neg[:-1] -= tail[1:]
        z[:, neg] = z_neg
    return PartitionSums(
        q=q,
        grid=grid,
        z=z,
        present=present,
        n_nodes=n_nodes,
        n_edges=int(d.size),
        min_neighbours=min_neighbours,
        backend="numpy",
        weight_sum=float(np.sum(1.0 / d)),
    )
