"""Exact float32 binning (the GPU kernel's rule), checked on the CPU against the float64 path."""

from __future__ import annotations

import numpy as np
import pytest

from neuromfa_callback.backends.binning import float32_bin_edges, reference_bins
from neuromfa_callback.functional.partition import RadiusGrid


@pytest.mark.parametrize(("threshold", "decimals"), [(150.0, 0), (200.0, 1), (150.5, 0), (37.25, 2)])
def test_every_float32_near_every_edge_bins_like_float64(threshold, decimals):
    """Exhaustive around every edge (+-64 ulps) and at the keep boundaries: comparison bins == float64 bins."""
    grid = RadiusGrid(threshold, decimals)
    b = float32_bin_edges(grid)
    bits = np.concatenate([b.edges.view(np.uint32), [b.keep_lo.view(np.uint32), np.float32(1.0).view(np.uint32)]])
    near = (bits[:, None].astype(np.int64) + np.arange(-64, 65)[None, :]).ravel()
    v = near[near > 0].astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(b.bins(v), reference_bins(v, grid))


def test_a_whole_octave_of_float32_bins_like_float64():
    """Every float32 in [1/64, 1/32) (2^23 values) — the densest part of trained weights."""
    grid = RadiusGrid()
    b = float32_bin_edges(grid)
    start = np.float32(1 / 64).view(np.uint32)
    v = (start + np.arange(1 << 23, dtype=np.uint32)).view(np.float32)
    np.testing.assert_array_equal(b.bins(v), reference_bins(v, grid))


def test_low_precision_weights_bin_exactly(rng):
    """bf16 and fp16 values widen to float32 exactly, so the same edges bin them exactly."""
    torch = pytest.importorskip("torch")
    grid = RadiusGrid()
    b = float32_bin_edges(grid)
    for dtype in (torch.bfloat16, torch.float16):
        w = torch.from_numpy(rng.normal(0, 0.03, size=200_000).astype(np.float32)).to(dtype)
        v = w.abs().float().numpy()
        np.testing.assert_array_equal(b.bins(v), reference_bins(v, grid))


def test_float32_reciprocal_would_be_wrong_somewhere():
    """Why the edges exist: binning with a float32 reciprocal disagrees with float64 near some edges."""
    grid = RadiusGrid(200.0, 1)
    b = float32_bin_edges(grid)
    bits = (b.edges.view(np.uint32)[:, None].astype(np.int64) + np.arange(-2, 3)[None, :]).ravel()
    v = bits.astype(np.uint32).view(np.float32)
    d32 = (np.float32(1.0) / v).astype(np.float32)
    naive = np.rint(d32.astype(np.float64) * 10) - grid.lo
    ref = reference_bins(v, grid)
    kept = ref >= 0
    assert (naive[kept] != ref[kept]).any()


@pytest.mark.parametrize("factor", [0.37, 0.9, 1.0, 1.3, 7.25])
@pytest.mark.parametrize(("threshold", "decimals"), [(150.0, 0), (200.0, 1)])
def test_scaled_magnitudes_bin_like_float64_near_every_edge(threshold, decimals, factor):
    """With a matrix scale (``scale="rms"``): d = 1/(float64(v) * factor); exhaustive +-64 ulps of every edge."""
    grid = RadiusGrid(threshold, decimals)
    b = float32_bin_edges(grid, factor)
    bits = np.concatenate([b.edges.view(np.uint32), [b.keep_lo.view(np.uint32), b.keep_hi.view(np.uint32)]])
    near = (bits[:, None].astype(np.int64) + np.arange(-64, 65)[None, :]).ravel()
    v = near[near > 0].astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(b.bins(v), reference_bins(v, grid, factor))


def test_bin_tables_of_many_factors_equal_one_at_a_time():
    from neuromfa_callback.backends.binning import bin_tables

    grid = RadiusGrid(120.0, 1)
    factors = np.random.default_rng(1).uniform(0.2, 5.0, size=12)
    many = bin_tables(grid, factors)
    for f, row in zip(factors, many):
        np.testing.assert_array_equal(row, float32_bin_edges(grid, f).table())
    with pytest.raises(ValueError, match=r"Expected `factor` > 0 and finite, got -1.0"):
        bin_tables(grid, [1.0, -1.0])
