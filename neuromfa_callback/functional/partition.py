r"""Partition sums on a fixed radius grid: the reducible state of a NeuroMFA analysis.

For rounding to ``decimals`` places and a threshold ``T``, every kept distance ``d`` (``1 < d <= T``)
rounds to a radius on the fixed grid ``{m / 10**decimals : m = 10**decimals, ..., rint(T * 10**decimals)}``.
Because each node's normaliser is its own total mass ``M_i(L) = 1 + n_i`` (every kept distance
rounds to at most ``L``), the partition function

.. math::  Z_q(r) = \sum_i \left(\frac{M_i(r)}{M_i(L)}\right)^q

is a plain sum over nodes on that grid. Networks, chunks of a network, samples or ranks can therefore
be combined by adding ``z`` and OR-ing ``present``; the fit (``functional.spectrum``) happens once, after.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PartitionSums", "RadiusGrid"]


@dataclass(frozen=True)
class RadiusGrid:
    """The radius grid implied by a threshold and a rounding precision.

    Example:
        >>> g = RadiusGrid(threshold=150.0, decimals=0)
        >>> g.size, g.lo, g.hi, float(g.radii[0]), float(g.radii[-1])
        (150, 1, 150, 1.0, 150.0)
    """

    threshold: float = 150.0
    decimals: int = 0

    @property
    def scale(self) -> float:
        """``10**decimals``: a distance ``d`` falls in bin ``rint(d * scale)``."""
        return float(10.0**self.decimals)

    @functools.cached_property
    def lo(self) -> int:
        """Smallest bin index a kept distance (``d > 1``) can round to."""
        return int(np.rint(np.nextafter(1.0, 2.0) * self.scale))

    @functools.cached_property
    def hi(self) -> int:
        """Largest bin index a kept distance (``d <= threshold``) can round to."""
        return int(np.rint(self.threshold * self.scale))

    @functools.cached_property
    def size(self) -> int:
        """Number of grid points."""
        return self.hi - self.lo + 1

    @property
    def radii(self) -> np.ndarray:
        """Radius values, computed exactly as ``numpy.round`` computes rounded distances."""
        m = np.arange(self.lo, self.hi + 1, dtype=np.float64)
        return m if self.decimals == 0 else m / self.scale


@dataclass(frozen=True, eq=False)
class PartitionSums:
    """``Z_q(r)`` on a :class:`RadiusGrid`, plus which radii occur, for a set of kept nodes.

    Attributes:
        q: the moment orders, shape ``(Q,)``.
        grid: the radius grid.
        z: ``Z_q(r)`` for every grid radius, shape ``(grid.size, Q)``, float64.
        present: whether any kept node has a rounded distance at that radius, shape ``(grid.size,)``.
        n_nodes: number of kept nodes (more than ``min_neighbours`` kept distances).
        n_edges: number of kept distances of kept nodes.
        min_neighbours: the node filter the sums were computed with.
        backend: the backend that computed the sums.
        weight_sum: sum of ``|w| = 1/d`` over the kept distances of kept nodes (for the
            weighted-degree baseline ``weight_sum / n_edges``).

    Partition sums of disjoint node sets add:

    Example:
        >>> import numpy as np
        >>> from neuromfa_callback.functional.spectrum import partition_sums
        >>> rng = np.random.default_rng(0)
        >>> d = 1 / np.abs(rng.normal(0, 0.02, size=40 * 30))
        >>> indptr = np.arange(0, d.size + 1, 30)
        >>> whole = partition_sums(indptr, d)
        >>> halves = partition_sums(indptr[:21], d[:600]) + partition_sums(indptr[20:] - 600, d[600:])
        >>> bool(np.allclose(whole.z, halves.z)), whole.n_nodes == halves.n_nodes
        (True, True)
    """

    q: np.ndarray
    grid: RadiusGrid
    z: np.ndarray
    present: np.ndarray
    n_nodes: int
    n_edges: int
    min_neighbours: int = 10
    backend: str = field(default="numpy")
    weight_sum: float = 0.0

    @property
    def mean_weight(self) -> float:
        """Mean ``|w|`` over kept edges of kept nodes (NaN without edges): the weighted-degree baseline."""
        return self.weight_sum / self.n_edges if self.n_edges else float("nan")

    @classmethod
    def empty(cls, q: np.ndarray, grid: RadiusGrid, min_neighbours: int = 10, backend: str = "numpy") -> PartitionSums:
        """Sums over no node: the identity of ``+``."""
        q = np.asarray(q, dtype=np.float64)
        return cls(
            q=q,
            grid=grid,
            z=np.zeros((grid.size, q.size)),
            present=np.zeros(grid.size, dtype=bool),
            n_nodes=0,
            n_edges=0,
            min_neighbours=min_neighbours,
            backend=backend,
        )

    def _check_compatible(self, other: PartitionSums) -> None:
        if not isinstance(other, PartitionSums):
            raise TypeError(f"Expected `other` to be PartitionSums, got {type(other).__name__}")
        if self.grid != other.grid:
            raise ValueError(f"Cannot add partition sums on different grids: {self.grid} and {other.grid}")
        if self.q.shape != other.q.shape or not np.array_equal(self.q, other.q):
            raise ValueError("Cannot add partition sums computed for different `q` grids")
        if self.min_neighbours != other.min_neighbours:
            raise ValueError(
                f"Cannot add partition sums with `min_neighbours` {self.min_neighbours} and {other.min_neighbours}"
            )

    def __add__(self, other: PartitionSums) -> PartitionSums:
        self._check_compatible(other)
        backend = self.backend if self.backend == other.backend else f"{self.backend}+{other.backend}"
        if self.n_nodes == 0:
            backend = other.backend
        elif other.n_nodes == 0:
            backend = self.backend
        return PartitionSums(
            q=self.q,
            grid=self.grid,
            z=self.z + other.z,
            present=self.present | other.present,
            n_nodes=self.n_nodes + other.n_nodes,
            n_edges=self.n_edges + other.n_edges,
            min_neighbours=self.min_neighbours,
            backend=backend,
            weight_sum=self.weight_sum + other.weight_sum,
        )

    def spectrum(self):
        """Fit the multifractal spectrum (see :func:`neuromfa_callback.functional.spectrum.spectrum_from_partition`)."""
        from neuromfa_callback.functional.spectrum import spectrum_from_partition

        return spectrum_from_partition(self)
