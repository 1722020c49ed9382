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

__all__ = ["Float32Bins", "bin_tables", "float32_bin_edges", "reference_bins"]


def _distances(v: np.ndarray, factor: float) -> np.ndarray:
    """``1 / (float64(v) * factor)`` as the NumPy path computes it (``inf`` for 0)."""
    a = np.asarray(v, dtype=np.float32).astype(np.float64)
    if factor != 1.0:
        a = a * factor
    with np.errstate(divide="ignore", over="ignore"):
        return 1.0 / a


def reference_bins(v: np.ndarray, grid: RadiusGrid, factor: float = 1.0) -> np.ndarray:
    """Bin index (``m - grid.lo``) of float32 magnitudes exactly as the float64 path computes it; -1 if not kept.

    ``factor``: the matrix's scale (``scale="rms"``), applied in float64 before ``1/|w|``.

    Example:
        >>> reference_bins(np.float32([0.02, 0.5, 1.0, 0.001]), RadiusGrid()).tolist()
        [49, 1, -1, -1]
        >>> reference_bins(np.float32([0.02, 0.5]), RadiusGrid(), factor=0.5).tolist()
        [99, 3]
    """
    d = _distances(v, factor)
    keep = (d > 1.0) & (d <= grid.threshold)
    m = np.rint(d * grid.scale) if grid.decimals else np.rint(d)
    return np.where(keep, m - grid.lo, -1).astype(np.int64)


@dataclass(frozen=True)
class Float32Bins:
    """``edges[k]``: the smallest float32 ``v`` whose bin is ``<= k``; ``keep_lo``: the smallest kept ``v``.

    A magnitude ``v`` is kept iff ``keep_lo <= v < keep_hi``; its bin is the number of edges greater than ``v``.
    ``keep_hi`` is 1 unless ``factor`` (the matrix's scale) is not 1.
    """

    grid: RadiusGrid
    edges: np.ndarray
    keep_lo: np.float32
    keep_hi: np.float32 = np.float32(1.0)
    factor: float = 1.0

    def table(self) -> np.ndarray:
        """``[edges..., keep_lo, keep_hi]`` as float32: what the kernel reads (``grid.size + 2`` values)."""
        return np.concatenate([self.edges, [self.keep_lo, self.keep_hi]]).astype(np.float32)

    def bins(self, v: np.ndarray) -> np.ndarray:
        """Bins by comparison only (what the kernel does); -1 where not kept."""
        v = np.asarray(v, dtype=np.float32)
        # edges are decreasing in k: bin(v) = #{k : edges[k] > v}
        k = self.edges.size - np.searchsorted(self.edges[::-1], v, side="right")
        keep = (v >= self.keep_lo) & (v < self.keep_hi)
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


def bin_tables(grid: RadiusGrid, factors) -> np.ndarray:
    """``[edges..., keep_lo, keep_hi]`` (float32, ``grid.size + 2``) for every factor, in one vectorised bisection.

    Row ``i`` equals ``float32_bin_edges(grid, factors[i]).table()``; many factors (one per matrix under
    ``scale="rms"``) cost about as much as one.

    Example:
        >>> t = bin_tables(RadiusGrid(), [1.0, 0.5])
        >>> t.shape, bool((t[0] == float32_bin_edges(RadiusGrid()).table()).all())
        ((2, 152), True)
    """
    f = np.asarray(factors, dtype=np.float64).reshape(-1)
    bad = ~(np.isfinite(f) & (f > 0))
    if bad.any():
        raise ValueError(f"Expected `factor` > 0 and finite, got {f[bad][0]}")
    n = grid.size
    fac = np.repeat(f, n + 2)
    col = np.tile(np.arange(n + 2), f.size)
    lo_bits = np.full(fac.size, np.float32(np.finfo(np.float32).tiny).view(np.uint32), dtype=np.uint32)
    hi_bits = np.full(fac.size, np.float32(np.finfo(np.float32).max).view(np.uint32), dtype=np.uint32)

    def pred(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", over="ignore"):
            d = 1.0 / (v.astype(np.float64) * fac)  # x * 1.0 == x: the same as the NumPy path for factor 1
        m = np.rint(d * grid.scale) if grid.decimals else np.rint(d)
        return np.where(col < n, m - grid.lo <= col, np.where(col == n, d <= grid.threshold, d <= 1.0))

    # Bracket each answer by +-8 float32 ulps around where the float64 rule flips (d * scale = m + 1/2,
    # d = threshold, d = 1); the float64 rounding is far finer than a float32 ulp. Unconfirmed brackets
    # (never seen) fall back to the whole range, so the result is exact either way.
    with np.errstate(divide="ignore", over="ignore"):
        flip = np.where(col < n, grid.scale / ((col + grid.lo + 0.5) * fac),
                        np.where(col == n, 1.0 / (grid.threshold * fac), 1.0 / fac))
    guess = np.clip(flip, np.finfo(np.float32).tiny, np.finfo(np.float32).max).astype(np.float32).view(np.uint32)
    a = np.maximum(guess.astype(np.int64) - 8, lo_bits.astype(np.int64))
    b = np.minimum(guess.astype(np.int64) + 8, hi_bits.astype(np.int64))
    idx = np.arange(fac.size)
    ok = pred(b.astype(np.uint32).view(np.float32), idx) & ~pred(a.astype(np.uint32).view(np.float32), idx)
    lo_bits = np.where(ok, a + 1, lo_bits)
    hi_bits = np.where(ok, b, hi_bits)
    bits = _smallest_f32_where(pred, lo_bits, hi_bits)
    return bits.astype(np.uint32).view(np.float32).reshape(f.size, n + 2)


def float32_bin_edges(grid: RadiusGrid, factor: float = 1.0) -> Float32Bins:
    """Exact float32 bin edges for ``grid`` (see the module docstring), for magnitudes scaled by ``factor``.

    ``v -> 1 / (float64(v) * factor)`` is still monotone, so the bins stay intervals of float32 values.

    Example:
        >>> b = float32_bin_edges(RadiusGrid())
        >>> v = np.float32([0.02, 0.5, 0.999, 1.0, 0.0066])
        >>> b.bins(v).tolist() == reference_bins(v, RadiusGrid()).tolist()
        True
        >>> b2 = float32_bin_edges(RadiusGrid(), factor=0.75)
        >>> float(b2.keep_hi) > 1.0, b2.bins(v).tolist() == reference_bins(v, RadiusGrid(), 0.75).tolist()
        (True, True)
    """
    t = bin_tables(grid, [factor])[0]
    n = grid.size
    return Float32Bins(grid=grid, edges=t[:n].copy(), keep_lo=t[n], keep_hi=t[n + 1], factor=float(factor))
