r"""Exact radius bins of low-precision weights, by comparison against precomputed float32 edges.

The reference bins a weight ``w`` at ``m = rint(d * 10**decimals)`` with ``d = 1/|w|`` in float64.
A GPU kernel that computes ``1/|w|`` in float32 can land on the wrong side of a half-integer. Since
``v -> rint(fl64(1/v) * s)`` is non-increasing in ``v``, every bin is an interval of float32 values;
:func:`float32_bin_edges` finds the interval ends by bisection over float32 bit patterns, so a kernel
can bin ``|w|`` (fp32, or bf16/fp16 widened to fp32 exactly) with comparisons only and match the
float64 NumPy path bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromfa_callback.functional.partition import RadiusGrid

__all__ = ["Float32Bins", "float32_bin_edges", "reference_bins"]


def reference_bins(v: np.ndarray, grid: RadiusGrid) -> np.ndarray:
    """Bin index (``m - grid.lo``) of float32 magnitudes exactly as the float64 path computes it; -1 if not kept.

    Example:
        >>> reference_bins(np.float32([0.02, 0.5, 1.0, 0.001]), RadiusGrid()).tolist()
        [49, 1, -1, -1]
    """
    d = 1.0 / np.asarray(v, dtype=np.float32).astype(np.float64)
    keep = (d > 1.0) & (d <= grid.threshold)
    m = np.rint(d * grid.scale) if grid.decimals else np.rint(d)
    return np.where(keep, m - grid.lo, -1).astype(np.int64)


@dataclass(frozen=True)
class Float32Bins:
    """``edges[k]``: the smallest float32 ``v`` whose bin is ``<= k``; ``keep_lo``: the smallest kept ``v``.

    A magnitude ``v`` is kept iff ``keep_lo <= v < 1``; its bin is the number of edges greater than ``v``.
    """

    grid: RadiusGrid
    edges: np.ndarray
    keep_lo: np.float32

    def bins(self, v: np.ndarray) -> np.ndarray:
        """Bins by comparison only (what the kernel does); -1 where not kept."""
        v = np.asarray(v, dtype=np.float32)
        # edges are decreasing in k: bin(v) = #{k : edges[k] > v}
        k = self.edges.size - np.searchsorted(self.edges[::-1], v, side="right")
        keep = (v >= self.keep_lo) & (v < np.float32(1.0))
        return np.where(keep, k, -1).astype(np.int64)


def _smallest_f32_where(pred, lo_bits: np.ndarray, hi_bits: np.ndarray) -> np.ndarray:
    """Smallest float32 (as bits, positive floats are ordered like their bits) in [lo, hi] with pred true."""
    lo, hi = lo_bits.astype(np.int64), hi_bits.astype(np.int64)
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        ok = pred(mid.astype(np.uint32).view(np.float32), np.arange(lo.size))
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid + 1, lo)


def float32_bin_edges(grid: RadiusGrid) -> Float32Bins:
    """Exact float32 bin edges for ``grid`` (see the module docstring).

    Example:
        >>> b = float32_bin_edges(RadiusGrid())
        >>> v = np.float32([0.02, 0.5, 0.999, 1.0, 0.0066])
        >>> b.bins(v).tolist() == reference_bins(v, RadiusGrid()).tolist()
        True
    """
    n = grid.size
    one_bits = np.float32(1.0).view(np.uint32)
    tiny_bits = np.float32(np.finfo(np.float32).tiny).view(np.uint32)
    lo_bits = np.full(n, tiny_bits, dtype=np.uint32)
    hi_bits = np.full(n, one_bits, dtype=np.uint32)

    def bin_le(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
        d = 1.0 / v.astype(np.float64)
        m = np.rint(d * grid.scale) if grid.decimals else np.rint(d)
        return m - grid.lo <= idx

    edges = _smallest_f32_where(bin_le, lo_bits, hi_bits).astype(np.uint32).view(np.float32)

    def kept(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return 1.0 / v.astype(np.float64) <= grid.threshold

    keep_lo = _smallest_f32_where(kept, lo_bits[:1], hi_bits[:1]).astype(np.uint32).view(np.float32)[0]
    return Float32Bins(grid=grid, edges=edges, keep_lo=keep_lo)
