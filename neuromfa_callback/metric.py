r"""NeuroMFA as a torchmetrics ``Metric``: owns the state, runs the functional path's update/compute.

The state is the additive :class:`~neuromfa_callback.functional.neuromfa.NeuroMFAState` as tensors:
partition sums ``z[s, d, r, q] = sum_i p_i(r)^q`` over the nodes of sample ``s`` at depth ``d`` on the
fixed radius grid, which radii occur, node and edge counts, the kept-weight sum, and the same for the
permutation nulls. All of it reduces across processes with plain ``sum`` / ``max``, so ranks can split
the samples (or the nodes) between them and :meth:`NeuroMFA.compute` fits the spectra once, after the
sync. The depth dimension is sized at the first update (from the model's node sets).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from neuromfa_callback._dist import rank_and_world
from neuromfa_callback.functional.neuromfa import (
    NeuroMFAOptions,
    NeuroMFAState,
    _neuromfa_compute,
    _neuromfa_networks,
    _neuromfa_update,
)
from neuromfa_callback.functional.summary import ModelAnalysis

__all__ = ["NeuroMFA"]

_METRIC_KWARGS = frozenset({"compute_on_cpu", "dist_sync_on_step", "process_group", "dist_sync_fn",
                            "distributed_available_fn", "sync_on_compute", "compute_with_cache"})
_DEPTH_STATES = ("z", "present", "n_nodes", "n_edges", "weight_sum")
_NULL_STATES = tuple(f"{k}_null" for k in _DEPTH_STATES)


class NeuroMFA(Metric):
    r"""Multifractal spectrum of a model's neuron interaction network, averaged over samples.

    ``update(model)`` resolves the model once (its node sets are cached per model object), builds the
    sampled network for every seed ``0..samples-1`` handled by this process (all of them, or
    ``seed % world_size == rank`` when ``split_samples`` and a process group is initialised) and adds
    its partition sums (per depth, and of its nulls) to that seed's slot. ``update(layout)`` takes a
    resolved :class:`~neuromfa_callback.architectures.Layout`; ``update(network)`` a prebuilt
    :class:`~neuromfa_callback.NeuronNetwork` or a sequence of them (its ``seed`` picks the slot);
    repeated updates of a slot add nodes (the spectrum of the union of the networks).

    ``compute()`` returns a dict of float64 tensors: ``alpha0``, ``alpha0_std``, ``width``,
    ``width_std`` (mean and population std across samples; the paper averages before forming E),
    ``weighted_degree``, ``n_ill_formed``, ``n_samples``, ``n_nodes``, the mean spectrum ``q``, ``tau``,
    ``alpha``, ``f_alpha``, per depth ``depth_alpha0``, ``depth_width`` (and ``_std``), and with
    ``null > 0`` ``alpha0_null``, ``width_null``, ``emergence_null`` (and ``_std``).
    :meth:`compute_analysis` returns the same as a typed :class:`~neuromfa_callback.ModelAnalysis`.

    Args:
        split_samples: in a distributed run, give each rank its share of the seeds.
        **kwargs: the analysis options of :class:`~neuromfa_callback.functional.neuromfa.NeuroMFAOptions`
            (``samples``, ``neurons_per_layer``, ``full``, ``scale``, ``scale_rms``, ``null``,
            ``architecture``, ``module``, ``example_input``, ``q``, ``threshold``, ``decimals``,
            ``min_neighbours``, ``backend``); any other keyword goes to ``torchmetrics.Metric``.

    Example:
        >>> import torch
        >>> from neuromfa_callback import NeuroMFA
        >>> _ = torch.manual_seed(0)
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
        >>> metric = NeuroMFA(samples=3, neurons_per_layer=32)
        >>> metric.update(mlp)
        >>> out = metric.compute()
        >>> sorted(k for k in out if k.startswith("alpha0")), int(out["n_samples"]), tuple(out["depth_alpha0"].shape)
        (['alpha0', 'alpha0_std'], 3, (2,))
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, *, split_samples: bool = True, **kwargs: Any) -> None:
        options, rest = NeuroMFAOptions.split(kwargs)
        unknown = sorted(set(rest) - _METRIC_KWARGS)
        if unknown:
            raise TypeError(f"NeuroMFA() got unexpected keyword arguments {unknown}; options are {NeuroMFAOptions.names()} "
                            f"and torchmetrics' {sorted(_METRIC_KWARGS)}")
        super().__init__(**rest)
        self.options = NeuroMFAOptions(**options)
        self.split_samples = bool(split_samples)
        o = self.options
        s, p, g, nq = o.samples, o.null, o.grid.size, o.q.size
        f64 = torch.float64
        for name, shape, fx in (
            ("z", (s, 0, g, nq), "sum"), ("present", (s, 0, g), "max"), ("n_nodes", (s, 0), "sum"),
            ("n_edges", (s, 0), "sum"), ("weight_sum", (s, 0), "sum"),
            ("z_null", (s, p, g, nq), "sum"), ("present_null", (s, p, g), "max"), ("n_nodes_null", (s, p), "sum"),
            ("n_edges_null", (s, p), "sum"), ("weight_sum_null", (s, p), "sum"), ("updated", (s,), "max"),
        ):
            self.add_state(name, default=torch.zeros(shape, dtype=f64), dist_reduce_fx=fx)
        self.depth_names: tuple[str, ...] = ()
        self.family = "generic"
        self._backend = ""  # the engine that ran
        self._layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __getattr__(self, name: str) -> Any:  # the options read like attributes: metric.samples, metric.full ...
        options = self.__dict__.get("options")
        if options is not None and name in NeuroMFAOptions.names():
            return getattr(options, name)
        return super().__getattr__(name)

    # ----------------------------------------------------------------------------------- update
    def local_seeds(self) -> list[int]:
        """The seeds this process analyses (all, or its share under ``split_samples``)."""
        seeds = list(self.options.seeds)
        if self.split_samples:
            rank, world = rank_and_world()
            seeds = seeds[rank::world]
        return seeds

    def layout(self, model: torch.nn.Module) -> Any:
        """The model's :class:`~neuromfa_callback.architectures.Layout` (resolved once per model object)."""
        from neuromfa_callback.architectures import resolve

        if model not in self._layouts:
            o = self.options
            self._layouts[model] = resolve(model, o.architecture, module=o.module, example_input=o.example_input)
        return self._layouts[model]

    def build_networks(self, source: Any, seeds: Sequence[int] | None = None) -> list[Any]:
        """The networks ``update(source)`` would analyse (one per local seed); cheap in sampled mode."""
        from neuromfa_callback.architectures import Layout

        layout = source if isinstance(source, Layout) else self.layout(source)
        self._set_depths(layout.depth_names, layout.family)
        return _neuromfa_networks(layout, self.options, self.local_seeds() if seeds is None else seeds)

    def _set_depths(self, names: Sequence[str], family: str = "generic") -> None:
        names = tuple(names)
        if self.z.shape[1] == 0 and names:
            for state in _DEPTH_STATES:
                old = getattr(self, state)
                setattr(self, state, torch.zeros((old.shape[0], len(names), *old.shape[2:]), dtype=old.dtype, device=old.device))
        elif self.depth_names and names != self.depth_names:
            raise ValueError(f"Expected networks with the depths {self.depth_names}, got {names}")
        self.depth_names, self.family = names, family

    def _state(self) -> NeuroMFAState:
        arrays = {k: getattr(self, k).detach().cpu().numpy() for k in (*_DEPTH_STATES, *_NULL_STATES, "updated")}
        for k in ("present", "present_null", "updated"):
            arrays[k] = arrays[k] > 0
        return NeuroMFAState(self.options, self.depth_names, **arrays, backend=self._backend)

    def load_state(self, state: NeuroMFAState, family: str = "generic") -> None:
        """Add a :class:`~neuromfa_callback.functional.neuromfa.NeuroMFAState` computed elsewhere (another
        process) to this metric's state, as ``update`` would have."""
        self._set_depths(state.depth_names, family)
        self._add_state(state)

    def _add_state(self, state: NeuroMFAState) -> None:
        self._backend = self._backend or state.backend
        dev = self.z.device
        for k in (*_DEPTH_STATES, *_NULL_STATES, "updated"):
            value = torch.as_tensor(getattr(state, k), dtype=torch.float64, device=dev)
            current = getattr(self, k)
            setattr(self, k, torch.maximum(current, value) if k.startswith(("present", "updated")) else current + value)

    def update(self, source: Any) -> None:
        """Analyse a model or a layout (every local seed), a ``NeuronNetwork``, or a sequence of networks."""
        from neuromfa_callback.architectures import Layout
        from neuromfa_callback.functional.network import NeuronNetwork

        if isinstance(source, (torch.nn.Module, Layout)):
            nets = self.build_networks(source)
        else:
            try:
                nets = [source] if isinstance(source, NeuronNetwork) else list(source)
            except TypeError:
                nets = [source]  # refused below, naming `source`
            for net in nets:
                if not isinstance(net, NeuronNetwork):
                    raise TypeError(
                        "Expected `source` to be an nn.Module, a Layout, a NeuronNetwork or a sequence of them, "
                        f"got {type(net).__name__}"
                    )
                self._set_depths(net.depth_names, net.family)
        self._add_state(_neuromfa_update(NeuroMFAState.empty(self.options, self.depth_names), nets))

    # ---------------------------------------------------------------------------------- compute
    def compute_analysis(self) -> ModelAnalysis:
        """The (synced) state as a :class:`~neuromfa_callback.ModelAnalysis`."""
        return _neuromfa_compute(self._state(), family=self.family)

    def compute(self) -> dict[str, torch.Tensor]:
        """Means and standard deviations across samples, the mean spectrum, per-depth and null values."""
        a = self.compute_analysis()
        t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64))  # noqa: E731
        out = {k: t(v) for k, v in a.scalars().items()}
        out.update(
            n_samples=t(float(len(a.spectra))),
            q=t(a.q),
            tau=t(a.tau_mean),
            alpha=t(a.alpha_mean),
            f_alpha=t(a.f_alpha_mean),
            depth_alpha0=t([d.alpha0_mean for d in a.by_depth]),
            depth_alpha0_std=t([d.alpha0_std for d in a.by_depth]),
            depth_width=t([d.width_mean for d in a.by_depth]),
            depth_width_std=t([d.width_std for d in a.by_depth]),
        )
        return out

    def plot(self, val: dict[str, torch.Tensor] | Sequence[dict[str, torch.Tensor]] | None = None, ax: Any = None):
        """Plot f(alpha) against alpha for one computed value (or a sequence of them).

        Returns:
            ``(fig, ax)`` as torchmetrics' ``plot`` does.
        """
        from neuromfa_callback.plotting import plot_spectra

        vals = [self.compute()] if val is None else ([val] if isinstance(val, dict) else list(val))
        history = [
            {"step": i, "alpha": v["alpha"].tolist(), "f_alpha": v["f_alpha"].tolist()} for i, v in enumerate(vals)
        ]
        fig = plot_spectra(history, ax=ax)
        return fig, (ax if ax is not None else fig.axes[0])
