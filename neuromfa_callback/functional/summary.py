"""Typed results of a NeuroMFA analysis: :class:`ModelAnalysis`, with :class:`DepthSummary` and :class:`NullSummary`.

Every summary statistic of the package is computed here, once: the mean and the spread
(``np.std``, ``ddof=0``) over samples, the weighted-degree baseline, ill-formed counts, per-depth and
null summaries. The functional :func:`~neuromfa_callback.neuromfa`, the ``NeuroMFA`` Metric, the CLI
and both callbacks all produce a :class:`ModelAnalysis` and read their numbers from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuromfa_callback.functional.emergence import emergence
from neuromfa_callback.functional.spectrum import Spectrum

__all__ = ["DepthSummary", "ModelAnalysis", "NullSummary", "safe_emergence"]

_NAN = float("nan")


def safe_emergence(alpha0: float, width: float, alpha0_ref: float, width_ref: float) -> float:
    """:func:`~neuromfa_callback.emergence`, or NaN when any input is not positive and finite.

    Example:
        >>> safe_emergence(1.2, 0.7, 1.4, 0.6) > 0, math.isnan(safe_emergence(float("nan"), 0.7, 1.4, 0.6))
        (True, True)
    """
    vals = (alpha0, width, alpha0_ref, width_ref)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vals):
        return _NAN
    return float(emergence(*vals))


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else _NAN


def _std(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.std()) if x.size else _NAN


class _Spread:
    """Means and spreads (``np.std``, ``ddof=0``) over ``alpha0s`` and ``widths``, ignoring NaN (a sample
    without a spectrum): the one place these statistics are computed."""

    alpha0s: np.ndarray
    widths: np.ndarray

    @property
    def alpha0_mean(self) -> float:
        """Mean ``alpha_0`` (NaN if no value is finite)."""
        return _mean(self.alpha0s)

    @property
    def alpha0_std(self) -> float:
        """Standard deviation of ``alpha_0`` (``ddof=0``)."""
        return _std(self.alpha0s)

    @property
    def width_mean(self) -> float:
        """Mean spectrum width."""
        return _mean(self.widths)

    @property
    def width_std(self) -> float:
        """Standard deviation of the width (``ddof=0``)."""
        return _std(self.widths)


@dataclass(frozen=True, eq=False)
class DepthSummary(_Spread):
    """The spectrum of one depth (block): its nodes' partition sums, fitted on their own.

    Attributes:
        depth: depth index (forward order).
        name: module path of the block (``model.layers.3``).
        spectra: per sample, the spectrum of this depth's nodes, or ``None`` where they were too few
            (no node with more than ``min_neighbours`` kept distances, or a single radius).
        n_nodes: per sample, kept nodes of this depth.
    """

    depth: int
    name: str
    spectra: tuple[Spectrum | None, ...]
    n_nodes: tuple[int, ...]

    @property
    def alpha0s(self) -> np.ndarray:
        return np.array([s.alpha0 if s is not None else _NAN for s in self.spectra])

    @property
    def widths(self) -> np.ndarray:
        return np.array([s.width if s is not None else _NAN for s in self.spectra])

    @property
    def n_ill_formed(self) -> int:
        return sum(1 for s in self.spectra if s is not None and not s.is_well_formed)

    @property
    def n_missing(self) -> int:
        """Samples in which this depth had too few nodes for a spectrum."""
        return sum(1 for s in self.spectra if s is None)

    @property
    def flag(self) -> str:
        """``""``, or why some samples have no spectrum here."""
        return f"too few nodes in {self.n_missing} of {len(self.spectra)} samples" if self.n_missing else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "name": self.name,
            "alpha0": self.alpha0_mean,
            "alpha0_std": self.alpha0_std,
            "width": self.width_mean,
            "width_std": self.width_std,
            "n_nodes": float(np.mean(self.n_nodes)) if self.n_nodes else 0.0,
            "n_ill_formed": self.n_ill_formed,
            "flag": self.flag,
        }


@dataclass(frozen=True, eq=False)
class NullSummary(_Spread):
    """Spectra of the permutation null (each operator's weights shuffled among themselves).

    Attributes:
        alpha0s, widths: shape ``(samples, permutations)``.
        real_alpha0s, real_widths: the real network's per-sample values (for the per-sample E_null).
    """

    alpha0s: np.ndarray
    widths: np.ndarray
    real_alpha0s: np.ndarray
    real_widths: np.ndarray

    @property
    def permutations(self) -> int:
        return int(self.alpha0s.shape[1])

    @property
    def emergences(self) -> np.ndarray:
        """Per sample: ``E_null = (w / w_null) ln(alpha0_null / alpha0)`` with that sample's null means."""
        a_null, w_null = np.nanmean(self.alpha0s, axis=1), np.nanmean(self.widths, axis=1)
        return np.array([safe_emergence(a, w, an, wn) for a, w, an, wn in zip(self.real_alpha0s, self.real_widths, a_null, w_null)])

    def emergence(self) -> float:
        r"""``E_null = (w / w_null) * ln(alpha0_null / alpha0)`` from the means over samples (and permutations).

        The paper's E with the null in place of the initialisation: positive when the real spectrum
        sits left of (and wider than) what the same weights give when arranged at random.
        """
        return safe_emergence(_mean(self.real_alpha0s), _mean(self.real_widths), self.alpha0_mean, self.width_mean)

    @property
    def emergence_std(self) -> float:
        return _std(self.emergences)


@dataclass(frozen=True, eq=False)
class ModelAnalysis(_Spread):
    """Spectra of one model (one checkpoint), one per sample, with their summary.

    Attributes:
        family: ``"generic"`` or the preset used.
        spectra: one :class:`~neuromfa_callback.Spectrum` per sample (seed order).
        seeds: the sampling seeds (``(None,)`` in full mode).
        weighted_degrees: per sample, mean ``|w|`` over the kept edges (``1 < 1/|w| <= threshold``)
            of the kept nodes (rescaled weights with ``scale="rms"``).
        neurons_per_layer: per-layer sample size (``None`` in full mode).
        full: whether the whole network was analysed.
        scale: ``None`` or ``"rms"``.
        params: the spectrum parameters used (``threshold``, ``decimals``, ``min_neighbours``, ``backend``).
        by_depth: one :class:`DepthSummary` per depth (block), in forward order.
        null: the permutation null's :class:`NullSummary`, or ``None`` (``null=0``).
    """

    family: str
    spectra: tuple[Spectrum, ...]
    seeds: tuple[int | None, ...]
    weighted_degrees: tuple[float, ...]
    neurons_per_layer: int | None
    full: bool
    scale: str | None
    params: dict[str, Any]
    by_depth: tuple[DepthSummary, ...] = ()
    null: NullSummary | None = None

    @property
    def alpha0s(self) -> np.ndarray:
        """``alpha_0`` of every sample."""
        return np.array([s.alpha0 for s in self.spectra])

    @property
    def widths(self) -> np.ndarray:
        """Spectrum width of every sample."""
        return np.array([s.width for s in self.spectra])

    @property
    def n_ill_formed(self) -> int:
        """Samples whose spectrum is flagged ill-formed (see ``Spectrum.flags``)."""
        return sum(not s.is_well_formed for s in self.spectra)

    @property
    def n_nodes(self) -> float:
        """Mean number of kept nodes per sample."""
        return float(np.mean([s.n_nodes for s in self.spectra]))

    @property
    def q(self) -> np.ndarray:
        """Moment orders."""
        return self.spectra[0].q

    @property
    def tau_mean(self) -> np.ndarray:
        """Mean ``tau(q)`` over samples."""
        return np.mean([s.tau for s in self.spectra], axis=0)

    @property
    def alpha_mean(self) -> np.ndarray:
        """Mean ``alpha`` over samples."""
        return np.mean([s.alpha for s in self.spectra], axis=0)

    @property
    def f_alpha_mean(self) -> np.ndarray:
        """Mean ``f(alpha)`` over samples."""
        return np.mean([s.f_alpha for s in self.spectra], axis=0)

    @property
    def weighted_degree(self) -> float:
        """Plain baseline: mean ``|w|`` over kept edges, averaged over samples."""
        return float(np.mean(self.weighted_degrees))

    def emergence(self, baseline: ModelAnalysis) -> float:
        """Degree of emergence of this checkpoint relative to ``baseline`` (normally the initialisation).

        ``E = (w / w_0) * ln(alpha0_0 / alpha0)`` with sample means (NEUROMFA.md section 3).
        """
        if not isinstance(baseline, ModelAnalysis):
            raise TypeError(f"Expected `baseline` to be a ModelAnalysis, got {type(baseline).__name__}")
        return float(emergence(self.alpha0_mean, self.width_mean, baseline.alpha0_mean, baseline.width_mean))

    def scalars(self) -> dict[str, float]:
        """The summary scalars (the keys a record holds, without suffix)."""
        out = {
            "alpha0": self.alpha0_mean,
            "alpha0_std": self.alpha0_std,
            "width": self.width_mean,
            "width_std": self.width_std,
            "weighted_degree": self.weighted_degree,
            "n_ill_formed": float(self.n_ill_formed),
            "n_nodes": self.n_nodes,
        }
        if self.null is not None:
            out.update(
                alpha0_null=self.null.alpha0_mean,
                alpha0_null_std=self.null.alpha0_std,
                width_null=self.null.width_mean,
                width_null_std=self.null.width_std,
                emergence_null=self.null.emergence(),
                emergence_null_std=self.null.emergence_std,
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (floats, ints, strings, lists; the per-sample spectra included)."""
        return {
            "family": self.family,
            "samples": len(self.spectra),
            "seeds": list(self.seeds),
            "neurons_per_layer": self.neurons_per_layer,
            "full": self.full,
            "scale": self.scale,
            **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.params.items()},
            **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.scalars().items()},
            "alpha0_mean": self.alpha0_mean,
            "width_mean": self.width_mean,
            "n_ill_formed": self.n_ill_formed,
            "weighted_degrees": list(self.weighted_degrees),
            "q": self.q.tolist(),
            "tau_mean": self.tau_mean.tolist(),
            "alpha_mean": self.alpha_mean.tolist(),
            "f_alpha_mean": self.f_alpha_mean.tolist(),
            "by_depth": [d.to_dict() for d in self.by_depth],
            "spectra": [s.to_dict() for s in self.spectra],
        }
