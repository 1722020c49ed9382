r"""The multifractal spectrum of a neuron interaction network (NEUROMFA.md section 2).

Reference semantics, for per-node distance lists ``D_i``:

1. keep distances with ``1 < d <= threshold``;
2. keep nodes with MORE than ``min_neighbours`` kept distances;
3. round kept distances to ``decimals`` places, half to even (``numpy.round``);
4. radii ``R`` = sorted union of rounded kept distances, ``L = max(R)``;
5. mass ``M_i(r) = 1 + #{d in D_i : round(d) <= r}``;
6. ``p_i(r) = M_i(r) / M_i(L)``, ``Z_q(r) = sum_i p_i(r)^q``;
7. ``tau(q)`` = least-squares slope of ``ln Z_q(r)`` against ``ln(r / L)`` over ``r`` in ``R``;
8. ``alpha_j = (tau_{j+1} - tau_j) / (q_{j+1} - q_j)``, ``f_j = q_j alpha_j - tau_j``.

Agreement: tau, alpha, f(alpha) and width match the authors' reference code to 1e-9 absolute on
every golden case (measured: about 1e-14).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuromfa_callback._checks import check_choice, check_int, check_real
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = [
    "BACKENDS",
    "Spectrum",
    "default_q",
    "multifractal_spectrum",
    "partition_sums",
    "spectrum_from_partition",
    "validate_q",
]

BACKENDS = ("auto", "numpy", "torch", "cupy")
_FLAG_TOL = 1e-9


def default_q() -> np.ndarray:
    """The reference's q grid: -3.0 to 3.0 in steps of 0.1 (61 values, exactly representable 0).

    Example:
        >>> q = default_q()
        >>> q.size, float(q[0]), float(q[30]), float(q[-1])
        (61, -3.0, 0.0, 3.0)
    """
    return _DEFAULT_Q.copy()


_DEFAULT_Q = np.round(np.arange(-30, 31) * 0.1, 1)
_DEFAULT_Q.flags.writeable = False


def validate_q(q: Any) -> np.ndarray:
    """Return ``q`` as float64, checking it is 1-D, finite, strictly increasing and holds 0 inside.

    Raises:
        ValueError: if any of those fails; the message names ``q`` and the problem.
    """
    if q is None:
        return default_q()
    arr = np.asarray(q.detach().cpu() if hasattr(q, "detach") else q, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 3:
        raise ValueError(f"Expected `q` to be a 1-D grid of at least 3 values, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"Expected `q` to be finite, got {arr.tolist()}")
    if not (np.diff(arr) > 0).all():
        raise ValueError(f"Expected `q` to be strictly increasing, got {arr.tolist()}")
    zero = np.flatnonzero(arr == 0.0)
    if zero.size != 1 or zero[0] == 0 or zero[0] == arr.size - 1:
        raise ValueError(
            f"Expected `q` to contain 0 with a neighbour on each side (alpha0 is the slope of tau at 0), "
            f"got {arr.tolist()}"
        )
    return arr


@dataclass(frozen=True, eq=False)
class Spectrum:
    r"""A multifractal spectrum in the reference's convention (``f(alpha) <= 0``, peak at 0).

    Attributes:
        q: moment orders, shape ``(Q,)``.
        tau: mass exponents ``tau(q)``, shape ``(Q,)``.
        alpha: Hoelder exponents by forward differences, shape ``(Q-1,)``.
        f_alpha: ``f_j = q_j alpha_j - tau_j``, shape ``(Q-1,)``.
        radii: the radii ``R`` the fit used (rounded distances that occur).
        n_nodes: nodes kept (more than ``min_neighbours`` kept distances).
        n_edges: kept distances of kept nodes.
        backend: the backend that computed the partition sums.

    Example:
        >>> import numpy as np
        >>> from neuromfa_callback import multifractal_spectrum
        >>> rng = np.random.default_rng(0)
        >>> d = 1 / np.abs(rng.normal(0, 0.02, size=200 * 40))
        >>> s = multifractal_spectrum(np.arange(0, d.size + 1, 40), d)
        >>> s.alpha.shape, s.is_well_formed, round(s.alpha0, 3), s.backend
        ((60,), True, 1.395, 'numpy')
    """

    q: np.ndarray
    tau: np.ndarray
    alpha: np.ndarray
    f_alpha: np.ndarray
    radii: np.ndarray
    n_nodes: int
    n_edges: int
    backend: str

    @property
    def width(self) -> float:
        """Spectrum width ``max(alpha) - min(alpha)`` (larger: more heterogeneous)."""
        return float(self.alpha.max() - self.alpha.min())

    @property
    def alpha0(self) -> float:
        """Stable ``alpha_0``: the central difference of tau at ``q = 0``.

        ``f`` is exactly 0 on both chords next to ``q = 0`` (tau(0) = 0), so the reference's
        argmax picks one of them by rounding noise; their ``q``-weighted mean is stable.
        """
        j = int(np.flatnonzero(self.q == 0.0)[0])
        return float((self.tau[j + 1] - self.tau[j - 1]) / (self.q[j + 1] - self.q[j - 1]))

    @property
    def alpha0_argmax(self) -> float:
        """The reference's ``alpha_0 = alpha[argmax(f_alpha)]`` (one of the two chords at ``q = 0``)."""
        return float(self.alpha[int(np.argmax(self.f_alpha))])

    @property
    def flags(self) -> tuple[str, ...]:
        """Why the spectrum is ill-formed: ``"f_positive"`` (some f > 0), ``"alpha_not_decreasing"``."""
        out = []
        if (self.f_alpha > _FLAG_TOL).any():
            out.append("f_positive")
        if (np.diff(self.alpha) > _FLAG_TOL).any():
            out.append("alpha_not_decreasing")
        return tuple(out)

    @property
    def is_well_formed(self) -> bool:
        """True when :attr:`flags` is empty."""
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (lists of floats)."""
        return {
            "q": self.q.tolist(),
            "tau": self.tau.tolist(),
            "alpha": self.alpha.tolist(),
            "f_alpha": self.f_alpha.tolist(),
            "alpha0": self.alpha0,
            "alpha0_argmax": self.alpha0_argmax,
            "width": self.width,
            "n_nodes": self.n_nodes,
            "n_edges": self.n_edges,
            "flags": list(self.flags),
            "backend": self.backend,
        }


def _no_node_error(min_neighbours: int, threshold: float) -> ValueError:
    return ValueError(
        f"no node has more than {min_neighbours} neighbours within (1, threshold] "
        f"(min_neighbours={min_neighbours}, threshold={threshold:g}): lower `min_neighbours`, "
        "raise `threshold`, or analyse more neurons"
    )


def spectrum_from_partition(part: PartitionSums) -> Spectrum:
    """Fit tau by least squares and take the Legendre transform (steps 7-8).

    Raises:
        ValueError: if no node qualifies, or all kept distances round to one radius (no slope).
    """
    if part.n_nodes == 0:
        raise _no_node_error(part.min_neighbours, part.grid.threshold)
    idx = np.flatnonzero(part.present)
    if idx.size < 2:
        raise ValueError(
            f"all kept distances round to a single radius ({part.grid.radii[idx].tolist()}); "
            "tau(q) needs at least two radii: increase `decimals`"
        )
    radii = part.grid.radii[idx]
    x = np.log(radii / radii[-1])
    log_z = np.log(part.z[idx])
    xc = x - x.sum() / x.size  # the means as np.mean computes them, without its Python-level overhead
    tau = xc @ (log_z - log_z.sum(axis=0) / idx.size) / (xc @ xc)
    q = part.q
    alpha = (tau[1:] - tau[:-1]) / (q[1:] - q[:-1])
    f_alpha = q[:-1] * alpha - tau[:-1]
    return Spectrum(
        q=q,
        tau=tau,
        alpha=alpha,
        f_alpha=f_alpha,
        radii=radii,
        n_nodes=part.n_nodes,
        n_edges=part.n_edges,
        backend=part.backend,
    )


def _validated_params(q, threshold, decimals, min_neighbours, backend):
    q = validate_q(q)
    threshold = check_real("threshold", threshold, greater_than=1)
    decimals = check_int("decimals", decimals, minimum=0)
    min_neighbours = check_int("min_neighbours", min_neighbours, minimum=0)
    check_choice("backend", backend, BACKENDS)
    return q, RadiusGrid(threshold, decimals), min_neighbours


def partition_sums(
    indptr: Any,
    distances: Any,
    *,
    q: Any = None,
    threshold: float = 150.0,
    decimals: int = 0,
    min_neighbours: int = 10,
    backend: str = "auto",
) -> PartitionSums:
    """Partition sums ``Z_q(r)`` of a CSR distance network on the fixed radius grid (steps 1-6).

    Same arguments as :func:`multifractal_spectrum`; the result adds across disjoint node sets.
    """
    from neuromfa_callback.backends import compute_partition

    q, grid, min_neighbours = _validated_params(q, threshold, decimals, min_neighbours, backend)
    return compute_partition(indptr, distances, q=q, grid=grid, min_neighbours=min_neighbours, backend=backend)


def multifractal_spectrum(
    indptr: Any,
    distances: Any,
    *,
    q: Any = None,
    threshold: float = 150.0,
    decimals: int = 0,
    min_neighbours: int = 10,
    backend: str = "auto",
) -> Spectrum:
    r"""NeuroMFA spectrum of a network given as per-node distance lists in CSR form.

    Args:
        indptr: ``n + 1`` non-decreasing offsets starting at 0 (numpy array or torch tensor).
        distances: distances ``1/|w|`` (>= 0, finite); node ``k`` owns
            ``distances[indptr[k]:indptr[k+1]]``.
        q: moment orders, strictly increasing, containing 0 with a neighbour on each side.
            Default: -3.0..3.0 step 0.1.
        threshold: keep distances ``1 < d <= threshold`` (> 1).
        decimals: round kept distances to this many decimals, half to even (>= 0).
        min_neighbours: keep nodes with MORE than this many kept distances.
        backend: ``"auto"`` (follow the input: numpy arrays -> numpy, torch tensors -> torch,
            CUDA tensors -> cupy when installed), ``"numpy"``, ``"torch"`` or ``"cupy"``.

    Returns:
        :class:`Spectrum`, agreeing with the authors' reference to 1e-9 (measured ~1e-14).

    Raises:
        ValueError: bad ``indptr``/``distances``/parameters (the message names the argument and
            value), or no node qualifies.
        ImportError: ``backend="cupy"`` without CuPy (the message gives the install command).

    Example:
        >>> import numpy as np
        >>> from neuromfa_callback import multifractal_spectrum
        >>> rng = np.random.default_rng(1)
        >>> d = 1 / np.abs(rng.standard_t(3, size=300 * 50) * 0.02)
        >>> s = multifractal_spectrum(np.arange(0, d.size + 1, 50), d)
        >>> bool(abs(s.tau[30]) < 1e-12), s.alpha0 > 0, s.width > 0
        (True, True, True)
    """
    return spectrum_from_partition(
        partition_sums(
            indptr,
            distances,
            q=q,
            threshold=threshold,
            decimals=decimals,
            min_neighbours=min_neighbours,
            backend=backend,
        )
    )
