r"""One-call analysis of a model: spectra of ``samples`` sampled networks (or the full one), summarised.

:func:`analyze_model` resolves the model once, builds the network for seeds ``0..samples-1`` (the
same neurons every time it is called, so checkpoints of one run are comparable), and returns a
:class:`ModelAnalysis`: the spectra, their mean and spread (``np.std``, ``ddof=0``), ill-formed
counts, and the plain weighted-degree baseline (mean ``|w|`` over the kept edges) that NEUROMFA.md
section 5 asks to report next to the degree of emergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuromfa_callback._checks import check_choice, check_int
from neuromfa_callback.functional.emergence import emergence
from neuromfa_callback.functional.spectrum import BACKENDS, Spectrum

__all__ = ["ModelAnalysis", "analyze_model"]

_SPECTRUM_KWARGS = ("q", "threshold", "decimals", "min_neighbours")


@dataclass(frozen=True, eq=False)
class ModelAnalysis:
    """Spectra of one model (one checkpoint), one per sample, with their summary.

    Attributes:
        family: detected model family.
        spectra: one :class:`~neuromfa_callback.Spectrum` per sample (seed order).
        seeds: the sampling seeds (``(None,)`` in full mode).
        weighted_degrees: per sample, mean ``|w|`` over the kept edges (``1 < 1/|w| <= threshold``)
            of the kept nodes (rescaled weights with ``scale="rms"``).
        neurons_per_layer: per-layer sample size (``None`` in full mode).
        full: whether the whole network was analysed.
        scale: ``None`` or ``"rms"``.
        params: the spectrum parameters used (``threshold``, ``decimals``, ``min_neighbours``, ``backend``).
    """

    family: str
    spectra: tuple[Spectrum, ...]
    seeds: tuple[int | None, ...]
    weighted_degrees: tuple[float, ...]
    neurons_per_layer: int | None
    full: bool
    scale: str | None
    params: dict[str, Any]

    @property
    def alpha0s(self) -> np.ndarray:
        """``alpha_0`` of every sample."""
        return np.array([s.alpha0 for s in self.spectra])

    @property
    def widths(self) -> np.ndarray:
        """Spectrum width of every sample."""
        return np.array([s.width for s in self.spectra])

    @property
    def alpha0_mean(self) -> float:
        """Mean ``alpha_0`` over samples."""
        return float(self.alpha0s.mean())

    @property
    def alpha0_std(self) -> float:
        """Standard deviation of ``alpha_0`` over samples (``ddof=0``)."""
        return float(np.std(self.alpha0s))

    @property
    def width_mean(self) -> float:
        """Mean width over samples."""
        return float(self.widths.mean())

    @property
    def width_std(self) -> float:
        """Standard deviation of the width over samples (``ddof=0``)."""
        return float(np.std(self.widths))

    @property
    def n_ill_formed(self) -> int:
        """Samples whose spectrum is flagged ill-formed (see ``Spectrum.flags``)."""
        return sum(not s.is_well_formed for s in self.spectra)

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
            "alpha0_mean": self.alpha0_mean,
            "alpha0_std": self.alpha0_std,
            "width_mean": self.width_mean,
            "width_std": self.width_std,
            "n_ill_formed": self.n_ill_formed,
            "weighted_degree": self.weighted_degree,
            "weighted_degrees": list(self.weighted_degrees),
            "q": self.q.tolist(),
            "tau_mean": self.tau_mean.tolist(),
            "alpha_mean": self.alpha_mean.tolist(),
            "f_alpha_mean": self.f_alpha_mean.tolist(),
            "spectra": [s.to_dict() for s in self.spectra],
        }


def analyze_model(
    model: Any,
    *,
    samples: int = 10,
    neurons_per_layer: int = 32,
    full: bool = False,
    scale: str | None = None,
    backend: str = "auto",
    scale_rms: float = 0.02,
    architecture: str = "auto",
    **spectrum_kwargs: Any,
) -> ModelAnalysis:
    """Spectra of ``samples`` sampled networks of ``model`` (seeds ``0..samples-1``), or of the full one.

    Args:
        model: a supported model, possibly wrapped (see :func:`~neuromfa_callback.build_network`).
        samples: number of sampled networks (>= 1). ``full=True`` analyses one network.
        neurons_per_layer: per-layer sample size (no effect with ``full=True``).
        full: analyse every neuron (one "sample").
        scale: ``None`` or ``"rms"`` (each matrix rescaled to RMS ``scale_rms`` first).
        backend: partition-sum backend (see :meth:`NeuronNetwork.partition`).
        scale_rms: target RMS for ``scale="rms"``.
        architecture: ``"auto"`` or a family name.
        **spectrum_kwargs: ``q``, ``threshold``, ``decimals``, ``min_neighbours``.

    Returns:
        :class:`ModelAnalysis`.

    Raises:
        ValueError: ``samples < 1``, any :func:`build_network` error, or a sample where no node
            qualifies. TypeError: an unknown keyword argument.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> mlp = torch.nn.Sequential(*[torch.nn.Linear(128, 128) for _ in range(3)])
        >>> a = analyze_model(mlp, samples=3, neurons_per_layer=64, threshold=400.0)
        >>> len(a.spectra), a.alpha0_mean > 0, a.n_ill_formed
        (3, True, 0)
    """
    from neuromfa_callback.architectures import resolve
    from neuromfa_callback.functional.network import (
        layout_check_finite,
        layout_rms,
        network_from_layout,
        validate_build_args,
    )

    samples = check_int("samples", samples, minimum=1)
    unknown = sorted(set(spectrum_kwargs) - set(_SPECTRUM_KWARGS))
    if unknown:
        raise TypeError(
            f"analyze_model() got unexpected keyword arguments {unknown}; spectrum options are {_SPECTRUM_KWARGS}"
        )
    check_choice("backend", backend, BACKENDS)
    neurons_per_layer, _, full, scale, scale_rms = validate_build_args(neurons_per_layer, 0, full, scale, scale_rms)
    layout = resolve(model, architecture)
    seeds: tuple[int | None, ...] = (None,) if full else tuple(range(samples))
    rms = layout_rms(layout) if scale == "rms" else None  # once: the weights do not change between samples
    if rms is None:
        layout_check_finite(layout)  # once, whole matrices: a NaN anywhere means the run diverged
    spectra, degrees = [], []
    for seed in seeds:
        net = network_from_layout(
            layout,
            neurons_per_layer=neurons_per_layer,
            seed=seed or 0,
            full=full,
            scale=scale,
            scale_rms=scale_rms,
            rms=rms,
            checked=True,
        )
        part = net.partition(backend=backend, **spectrum_kwargs)
        spectra.append(part.spectrum())
        degrees.append(part.mean_weight)
    params = {
        "threshold": float(spectrum_kwargs.get("threshold", 150.0)),
        "decimals": int(spectrum_kwargs.get("decimals", 0)),
        "min_neighbours": int(spectrum_kwargs.get("min_neighbours", 10)),
        "backend": spectra[0].backend,
    }
    return ModelAnalysis(
        family=layout.family,
        spectra=tuple(spectra),
        seeds=seeds,
        weighted_degrees=tuple(degrees),
        neurons_per_layer=None if full else neurons_per_layer,
        full=full,
        scale=scale,
        params=params,
    )
