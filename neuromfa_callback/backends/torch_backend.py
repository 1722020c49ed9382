"""Torch backend: the NumPy oracle's algorithm in float64 torch ops, on the input's device (CPU or CUDA).

See :mod:`neuromfa_callback.backends.numpy_backend` for the algorithm; this is a line-by-line port.
"""

from __future__ import annotations

import numpy as np
import torch

from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["partition_sums_torch"]

_BLOCK = 16


def _compact(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    uniq, inv = torch.unique(keys, sorted=True, return_inverse=True)
    return uniq, inv.reshape(-1)


@torch.no_grad()
def partition_sums_torch(
    indptr: torch.Tensor,
    distances: torch.Tensor,
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
) -> PartitionSums:
    """Partition sums of a CSR distance network (inputs validated, int64 / float64 tensors)."""
    dev = distances.device
    n_bins = grid.size
    q_t = torch.as_tensor(np.asarray(q, dtype=np.float64), device=dev)
    lens = indptr[1:] - indptr[:-1]
    keep = (distances > 1.0) & (distances <= grid.threshold)
    csum = torch.zeros(distances.numel() + 1, dtype=torch.int64, device=dev)
    torch.cumsum(keep, 0, out=csum[1:])
    counts = csum[indptr[1:]] - csum[indptr[:-1]]
    node_ok = counts > min_neighbours
    kept_counts = counts[node_ok]
    n_nodes = int(kept_counts.numel())
    if n_nodes == 0:
        return PartitionSums.empty(q, grid, min_neighbours, backend="torch")

    d = distances[keep & torch.repeat_interleave(node_ok, lens)]
    b = torch.round(d * grid.scale) if grid.decimals else torch.round(d)  # round half to even
    b = b.to(torch.int64) - grid.lo
    present = torch.zeros(n_bins, dtype=torch.bool, device=dev)
    present[b] = True

    nid = torch.repeat_interleave(torch.arange(n_nodes, device=dev), kept_counts)
    flat = nid * n_bins + b
    if n_nodes * n_bins <= 8 * flat.numel() + (1 << 16):
        hist = torch.bincount(flat, minlength=n_nodes * n_bins)
        nz = torch.nonzero(hist).reshape(-1)
        mult = hist[nz]
    else:
        nz, mult = torch.unique(flat, sorted=True, return_counts=True)
    ev_node = nz // n_bins
    ev_bin = nz - ev_node * n_bins
    start = torch.cumsum(kept_counts, 0) - kept_counts
    c_new = torch.cumsum(mult, 0) - start[ev_node] + 1
    c_old = c_new - mult
    big_c = kept_counts + 1

    c_max = int(big_c.max())
    c_seen = torch.zeros(c_max + 1, dtype=torch.bool, device=dev)
    c_seen[big_c] = True
    c_vals = torch.nonzero(c_seen).reshape(-1)
    off = torch.zeros(c_max + 1, dtype=torch.int64, device=dev)
    off[c_vals] = torch.cumsum(c_vals, 0) - c_vals
    key_space = int(c_vals.sum())
    ev_off = off[big_c[ev_node]] - 1

    bins = torch.cat([ev_bin, ev_bin, torch.zeros(n_nodes, dtype=torch.int64, device=dev)])
    keys = torch.cat([ev_off + c_new, ev_off + c_old, off[big_c]])
    weights = torch.ones(bins.numel(), dtype=torch.float64, device=dev)
    weights[ev_bin.numel() : 2 * ev_bin.numel()] = -1.0

    block = bins // _BLOCK
    cols, col_of_entry = _compact(block * key_space + keys)
    n_cols = cols.numel()
    delta = torch.bincount(col_of_entry * _BLOCK + (bins - block * _BLOCK), weights=weights, minlength=n_cols * _BLOCK)
    delta = delta.reshape(n_cols, _BLOCK)

    col_block = cols // key_space
    col_key = cols - col_block * key_space
    key_c = torch.arange(key_space, device=dev) - torch.repeat_interleave(off[c_vals], c_vals) + 1
    key_big = torch.repeat_interleave(c_vals, c_vals)
    pow_c = torch.exp(torch.outer(torch.log(torch.arange(1, c_max + 1, dtype=torch.float64, device=dev)), q_t))
    pair_keys, pair_of_col = _compact(col_key)
    v = (pow_c[key_c[pair_keys] - 1] / pow_c[key_big[pair_keys] - 1])[pair_of_col]

    n_blocks = n_bins // _BLOCK + 1
    bounds = torch.searchsorted(col_block, torch.arange(n_blocks + 1, device=dev)).tolist()
    dv = torch.zeros((n_blocks * _BLOCK, q_t.numel()), dtype=torch.float64, device=dev)
    for blk in range(n_blocks):
        lo, hi = bounds[blk], bounds[blk + 1]
        if hi > lo:
            dv[blk * _BLOCK : (blk + 1) * _BLOCK] = delta[lo:hi].T @ v[lo:hi]
    dv = dv[:n_bins]

    z = torch.cumsum(dv, 0)
    neg = q_t < 0
    if bool(neg.any()):
        tail = torch.flip(torch.cumsum(torch.flip(dv[:, neg], (0,)), 0), (0,))
        z_neg = torch.full((n_bins, int(neg.sum())), float(n_nodes), dtype=torch.float64, device=dev)
        z_neg[:-1] -= tail[1:]
        z[:, neg] = z_neg
    return PartitionSums(
        q=np.asarray(q, dtype=np.float64),
        grid=grid,
        z=z.cpu().numpy(),
        present=present.cpu().numpy(),
        n_nodes=n_nodes,
        n_edges=int(d.numel()),
        min_neighbours=min_neighbours,
        backend="torch",
        weight_sum=float(torch.sum(1.0 / d)),
    )
