"""Torch backend: the NumPy engine's algorithm in float64 torch ops, on the input's device (CPU or CUDA).

See :mod:`neuromfa_callback.backends.numpy_backend` for the algorithm; this is a port of it, step by
step, with three differences that suit torch and CUDA: kept counts come from a cumulative sum, the
(block, pair) columns are numbered with ``torch.unique``, and the ``W`` rows of the columns are
formed on the device from the two small tables (``c^q - (c-1)^q`` and ``C^-q``) instead of the
cached table of all pairs. No workspace is kept between calls.
"""

from __future__ import annotations

import numpy as np
import torch

from neuromfa_callback.backends.numpy_backend import _BLOCK, _powers
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["partition_sums_torch"]


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
    q = np.asarray(q, dtype=np.float64)
    n_q, n_bins = q.size, grid.size

    # 1. Kept distances and nodes; bins.
    keep = (distances > 1.0) & (distances <= grid.threshold)
    csum = torch.zeros(distances.numel() + 1, dtype=torch.int64, device=dev)
    torch.cumsum(keep, 0, out=csum[1:])
    counts = csum[indptr[1:]] - csum[indptr[:-1]]
    node_ok = counts > min_neighbours
    kept_counts = counts[node_ok]
    n_nodes = int(kept_counts.numel())
    if n_nodes == 0:
        return PartitionSums.empty(q, grid, min_neighbours, backend="torch")
    d = distances[keep & torch.repeat_interleave(node_ok, indptr[1:] - indptr[:-1])]
    n_edges = int(d.numel())
    weight_sum = float(torch.sum(1.0 / d))
    b = torch.round(d * grid.scale) if grid.decimals else torch.round(d)  # round half to even
    b = b.to(torch.int64) - grid.lo

    # 2. Sort (node, bin) keys; ranks follow from the node offsets.
    node_base = torch.repeat_interleave(torch.arange(0, n_nodes * n_bins, n_bins, device=dev), kept_counts)
    bins = torch.sort(b + node_base).values - node_base

    # 3. Edge -> pair row -> (block, pair) column -> A[column, bin in block].
    big_c = kept_counts + 1
    c_max = int(big_c.max())
    n_pairs = c_max * (c_max - 1) // 2
    n_blocks = -(-n_bins // _BLOCK)
    first_row = (big_c - 1) * (big_c - 2) // 2 - (torch.cumsum(kept_counts, 0) - kept_counts)
    slot = (bins >> (_BLOCK.bit_length() - 1)) * n_pairs + torch.arange(n_edges, device=dev)
    slot += torch.repeat_interleave(first_row, kept_counts)
    cols, col = torch.unique(slot, sorted=True, return_inverse=True)
    a = torch.bincount(col * _BLOCK + (bins & (_BLOCK - 1)), minlength=cols.numel() * _BLOCK)
    a = a.to(torch.float64).reshape(cols.numel(), _BLOCK)

    # 4. W rows of the columns from the small tables; per block dv = A_block.T @ W_block.
    _, small, inv_pow = _powers(q, c_max)
    col_block = cols // n_pairs
    col_pair = cols - col_block * n_pairs
    pair_row = torch.arange(1, c_max, device=dev) * torch.arange(c_max - 1, device=dev) // 2
    col_big = torch.searchsorted(pair_row, col_pair, right=True) + 1
    small_t = torch.tensor(small[: c_max - 1], device=dev)
    inv_pow_t = torch.tensor(inv_pow[: c_max + 1], device=dev)
    w = small_t[col_pair - pair_row[col_big - 2]] * inv_pow_t[col_big]
    bounds = torch.searchsorted(col_block, torch.arange(n_blocks + 1, device=dev)).tolist()
    dv = torch.zeros((n_blocks * _BLOCK, n_q + 1), dtype=torch.float64, device=dev)
    for k in range(n_blocks):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            dv[k * _BLOCK : (k + 1) * _BLOCK] = a[lo:hi].T @ w[lo:hi]
    dv = dv[:n_bins]

    # Running sums: forward for q >= 0, backward from Z(L) = n_nodes for q < 0.
    j0 = int(np.searchsorted(q, 0.0))
    z = torch.empty((n_bins, n_q), dtype=torch.float64, device=dev)
    z[:, j0:] = torch.cumsum(dv[:, j0:n_q], 0) + torch.bincount(big_c, minlength=c_max + 1).to(torch.float64) @ inv_pow_t[:, j0:n_q]
    if j0:
        tail = torch.flip(torch.cumsum(torch.flip(dv[1:, :j0], (0,)), 0), (0,))  # tail[k] = dv[k+1:].sum(0)
        z[:-1, :j0] = n_nodes - tail
        z[-1, :j0] = n_nodes
    return PartitionSums(
        q=q,
        grid=grid,
        z=z.cpu().numpy(),
        present=(dv[:, n_q] > 0).cpu().numpy(),
        n_nodes=n_nodes,
        n_edges=n_edges,
        min_neighbours=min_neighbours,
        backend="torch",
        weight_sum=weight_sum,
    )
