r"""NeuroMFA of a model in one call, and the update/compute pair the ``NeuroMFA`` Metric shares with it.

As in torchmetrics (``functional/regression/pearson.py`` + ``regression/pearson.py``), the functional
:func:`neuromfa` and the class :class:`~neuromfa_callback.NeuroMFA` run the same private helpers:

* :class:`NeuroMFAOptions`: every analysis option, validated once (the Metric, both callbacks, the
  CLI and :func:`~neuromfa_callback.analyze_model` take their options through it);
* :func:`_neuromfa_networks`: a resolved layout -> one network per seed (the only step that reads
  the weights);
* :func:`_neuromfa_update`: networks -> :class:`NeuroMFAState`, the additive state: partition sums
  per sample and per depth, and of the permutation nulls;
* :func:`_neuromfa_compute`: state -> :class:`~neuromfa_callback.ModelAnalysis`, the one place that
  fits spectra and forms every summary.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from neuromfa_callback._checks import check_choice, check_int, check_real
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid
from neuromfa_callback.functional.spectrum import BACKENDS, spectrum_from_partition, validate_q
from neuromfa_callback.functional.summary import DepthSummary, ModelAnalysis, NullSummary

__all__ = ["NeuroMFAOptions", "NeuroMFAState", "neuromfa"]

_SCALES = (None, "rms")


@dataclass(frozen=True, eq=False)
class NeuroMFAOptions:
    r"""Every option of a NeuroMFA analysis, validated on construction (errors name the argument and value).

    Attributes:
        samples: sampled networks per analysis, seeds ``0..samples-1`` (the same neurons every time);
            1 with ``full=True``.
        neurons_per_layer: ``S``, neurons sampled per node set and rows per operator (the reference: 32).
        full: analyse every neuron of every node set (no sampling).
        scale: ``None`` (raw weights) or ``"rms"`` (each matrix rescaled to RMS ``scale_rms`` first).
        scale_rms: target RMS of ``scale="rms"`` (default 0.02, Pythia's initial scale).
        null: number of permutation nulls per sample (0: none); see :meth:`NeuronNetwork.null`.
        architecture: ``"auto"``, ``"generic"`` or ``"gpt_neox"`` (the reference's exact sampling).
        module: analyse only this part of the model (attribute path or callable).
        example_input: input for the forward pass that reveals the node sets.
        q, threshold, decimals, min_neighbours, backend: engine parameters (see
            :func:`~neuromfa_callback.multifractal_spectrum`).

    Example:
        >>> NeuroMFAOptions(samples=4).seeds
        (0, 1, 2, 3)
        >>> NeuroMFAOptions(null=-1)
        Traceback (most recent call last):
        ...
        ValueError: Expected `null` >= 0, got -1
    """

    samples: int = 10
    neurons_per_layer: int = 32
    full: bool = False
    scale: str | None = None
    scale_rms: float = 0.02
    null: int = 0
    architecture: str = "auto"
    module: Any = None
    example_input: Any = None
    q: Any = None
    threshold: float = 150.0
    decimals: int = 0
    min_neighbours: int = 10
    backend: str = "auto"

    def __post_init__(self) -> None:
        from neuromfa_callback.architectures import ARCHITECTURES

        set_ = object.__setattr__
        if not isinstance(self.full, bool):
            raise TypeError(f"Expected `full` to be a bool, got {self.full!r}")
        set_(self, "samples", 1 if self.full else check_int("samples", self.samples, minimum=1))
        set_(self, "neurons_per_layer", check_int("neurons_per_layer", self.neurons_per_layer, minimum=1))
        check_choice("scale", self.scale, _SCALES)
        set_(self, "scale_rms", check_real("scale_rms", self.scale_rms, greater_than=0))
        set_(self, "null", check_int("null", self.null, minimum=0))
        check_choice("architecture", self.architecture, ARCHITECTURES)
        if self.module is not None and not (isinstance(self.module, str) or callable(self.module)):
            raise TypeError(f"Expected `module` to be an attribute path or a callable, got {self.module!r}")
        set_(self, "q", validate_q(self.q))
        set_(self, "threshold", check_real("threshold", self.threshold, greater_than=1))
        set_(self, "decimals", check_int("decimals", self.decimals, minimum=0))
        set_(self, "min_neighbours", check_int("min_neighbours", self.min_neighbours, minimum=0))
        check_choice("backend", self.backend, BACKENDS)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names (the keyword arguments every entry point accepts)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def split(cls, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(options, rest)``: the keyword arguments that are options, and the others."""
        names = set(cls.names())
        return {k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names}

    def replace(self, **changes: Any) -> NeuroMFAOptions:
        return replace(self, **changes)

    @property
    def grid(self) -> RadiusGrid:
        return RadiusGrid(self.threshold, self.decimals)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.samples))

    @property
    def engine(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`NeuronNetwork.partition`."""
        return {"q": self.q, "threshold": self.threshold, "decimals": self.decimals,
                "min_neighbours": self.min_neighbours, "backend": self.backend}


@dataclass(eq=False)
class NeuroMFAState:
    """The additive state of an analysis: partition sums per sample slot and depth, and of the nulls.

    Shapes: ``z (S, D, G, Q)``, ``present (S, D, G)``, ``n_nodes, n_edges, weight_sum (S, D)``; the null
    arrays the same with ``P`` permutations in place of ``D`` depths; ``updated (S,)``. Everything adds
    (``present`` ORs), so samples, nodes and ranks combine by addition.
    """

    options: NeuroMFAOptions
    depth_names: tuple[str, ...]
    z: np.ndarray
    present: np.ndarray
    n_nodes: np.ndarray
    n_edges: np.ndarray
    weight_sum: np.ndarray
    z_null: np.ndarray
    present_null: np.ndarray
    n_nodes_null: np.ndarray
    n_edges_null: np.ndarray
    weight_sum_null: np.ndarray
    updated: np.ndarray
    backend: str = ""

    @classmethod
    def empty(cls, options: NeuroMFAOptions, depth_names: Sequence[str]) -> NeuroMFAState:
        s, d, p, g, nq = options.samples, len(depth_names), options.null, options.grid.size, options.q.size
        return cls(
            options, tuple(depth_names),
            np.zeros((s, d, g, nq)), np.zeros((s, d, g), dtype=bool), np.zeros((s, d)), np.zeros((s, d)), np.zeros((s, d)),
            np.zeros((s, p, g, nq)), np.zeros((s, p, g), dtype=bool), np.zeros((s, p)), np.zeros((s, p)), np.zeros((s, p)),
            np.zeros(s, dtype=bool),
        )

    def _add(self, prefix: str, slot: int, index: int, part: PartitionSums) -> None:
        getattr(self, f"z{prefix}")[slot, index] += part.z
        getattr(self, f"present{prefix}")[slot, index] |= part.present
        getattr(self, f"n_nodes{prefix}")[slot, index] += part.n_nodes
        getattr(self, f"n_edges{prefix}")[slot, index] += part.n_edges
        getattr(self, f"weight_sum{prefix}")[slot, index] += part.weight_sum

    def add(self, slot: int, by_depth: Sequence[PartitionSums], nulls: Sequence[PartitionSums] = ()) -> None:
        """Add one network's partition sums (per depth) and its nulls' to sample ``slot``."""
        if len(by_depth) != len(self.depth_names):
            raise ValueError(f"Expected partition sums for {len(self.depth_names)} depths, got {len(by_depth)}")
        if len(nulls) != self.options.null:
            raise ValueError(f"Expected {self.options.null} null partition sums, got {len(nulls)}")
        for d, part in enumerate(by_depth):
            self._add("", slot, d, part)
        for p, part in enumerate(nulls):
            self._add("_null", slot, p, part)
        for part in (*by_depth, *nulls):  # the engine that ran (not "auto")
            if part.n_nodes and part.backend not in self.backend.split("+"):
                self.backend = "+".join(filter(None, (self.backend, part.backend)))
        self.updated[slot] = True

    def partition(self, slot: int, depth: int | None = None, null: int | None = None) -> PartitionSums:
        """Partition sums of one slot: whole network, one depth, or one null."""
        o = self.options
        if null is not None:
            z, pr, n, e, w = (self.z_null[slot, null], self.present_null[slot, null], self.n_nodes_null[slot, null],
                              self.n_edges_null[slot, null], self.weight_sum_null[slot, null])
        elif depth is not None:
            z, pr, n, e, w = (self.z[slot, depth], self.present[slot, depth], self.n_nodes[slot, depth],
                              self.n_edges[slot, depth], self.weight_sum[slot, depth])
        else:
            z, pr, n, e, w = (self.z[slot].sum(0), self.present[slot].any(0), self.n_nodes[slot].sum(),
                              self.n_edges[slot].sum(), self.weight_sum[slot].sum())
        return PartitionSums(q=o.q, grid=o.grid, z=z, present=pr, n_nodes=int(n), n_edges=int(e),
                             min_neighbours=o.min_neighbours, backend=self.backend or o.backend, weight_sum=float(w))


def _neuromfa_networks(layout: Any, options: NeuroMFAOptions, seeds: Sequence[int]) -> list[Any]:
    """One network per seed (full mode: one network); the whole parameters are checked (and, for
    ``scale="rms"``, reduced) once, not once per seed."""
    from neuromfa_callback.functional.network import layout_check_finite, layout_rms, network_from_layout

    rms = layout_rms(layout) if options.scale == "rms" else None
    if rms is None:
        layout_check_finite(layout)
    return [
        network_from_layout(layout, neurons_per_layer=options.neurons_per_layer, seed=s, full=options.full,
                            scale=options.scale, scale_rms=options.scale_rms, rms=rms, checked=True)
        for s in ((0,) if options.full else seeds)
    ]


def _raw_networks_and_rms(layout: Any, options: NeuroMFAOptions, seeds: Sequence[int]) -> tuple[list[Any], Any]:
    """The raw networks, and every operator's RMS for the scale-controlled ones (or the error when a matrix
    cannot be rescaled): the rms networks reuse the raw ones' sampled submatrices
    (:func:`~neuromfa_callback.functional.network.rescaled`), so the weights are gathered once."""
    from neuromfa_callback.functional.network import layout_check_finite, layout_rms, network_from_layout

    layout_check_finite(layout)  # a non-finite weight fails the whole snapshot
    try:
        rms: Any = layout_rms(layout, checked=True)
    except ValueError as err:  # only zeros: no RMS to rescale to
        rms = err
    nets = [
        network_from_layout(layout, neurons_per_layer=options.neurons_per_layer, seed=s, full=options.full, scale=None,
                            scale_rms=options.scale_rms, checked=True)
        for s in ((0,) if options.full else seeds)
    ]
    return nets, rms


def _network_chunks(net: Any, options: NeuroMFAOptions) -> tuple[int, list[tuple], list[list[tuple]]]:
    """``(slot, chunks, null chunks)`` of one network: what its partition sums are computed from (in this
    process, or shipped to the analysis worker). Materialised, so for sampled networks only."""
    net.synchronize()
    nulls = [list(net.null(p).chunks(labelled=False)) for p in range(options.null)]
    return int(net.seed or 0) % options.samples, list(net.chunks()), nulls


def _neuromfa_add_chunks(state: NeuroMFAState, slot: int, chunks: Any, nulls: Any) -> None:
    """Partition sums of one network's chunks (by depth) and of its nulls' chunks, added to ``state``."""
    from neuromfa_callback.backends import partition_chunks

    o = state.options
    engine = {"q": o.q, "grid": o.grid, "min_neighbours": o.min_neighbours, "backend": o.backend}
    by_depth = partition_chunks(chunks, n_groups=len(state.depth_names), **engine)
    state.add(slot, by_depth, [partition_chunks(c, **engine) for c in nulls])


def _neuromfa_update(state: NeuroMFAState, networks: Sequence[Any]) -> NeuroMFAState:
    """Partition sums of every network (by depth) and of its nulls, added into ``state`` (slot = seed).

    Sampled networks go through :func:`_network_chunks` (the same chunks the analysis worker receives);
    full networks stream chunk by chunk in bounded memory (on CUDA, through the CuPy kernel if it runs)."""
    o = state.options
    for net in networks:
        if net.full:
            by_depth = net.partition_by_depth(**o.engine)
            state.add(0, by_depth, [net.null(p).partition(**o.engine) for p in range(o.null)])
        else:
            _neuromfa_add_chunks(state, *_network_chunks(net, o))
    return state


def _neuromfa_compute(state: NeuroMFAState, *, family: str = "generic") -> ModelAnalysis:
    """Fit every spectrum of the state and summarise (see :class:`~neuromfa_callback.ModelAnalysis`).

    Raises:
        ValueError: no slot was updated, or a sample in which no node qualifies.
    """
    o = state.options
    slots = np.flatnonzero(state.updated).tolist()
    if not slots:
        raise ValueError("NeuroMFA: compute() called before any update()")
    spectra, degrees = [], []
    for s in slots:
        part = state.partition(s)
        spectra.append(spectrum_from_partition(part))
        degrees.append(part.mean_weight)
    by_depth = []
    for d, name in enumerate(state.depth_names):
        per = []
        for s in slots:
            try:
                per.append(spectrum_from_partition(state.partition(s, depth=d)))
            except ValueError:
                per.append(None)  # too few nodes at this depth: reported as such, never dropped
        by_depth.append(DepthSummary(d, name, tuple(per), tuple(int(state.n_nodes[s, d]) for s in slots)))
    null = None
    if o.null:
        a = np.full((len(slots), o.null), np.nan)
        w = np.full_like(a, np.nan)
        for i, s in enumerate(slots):
            for p in range(o.null):
                try:
                    sp = spectrum_from_partition(state.partition(s, null=p))
                except ValueError:
                    continue
                a[i, p], w[i, p] = sp.alpha0, sp.width
        null = NullSummary(a, w, np.array([sp.alpha0 for sp in spectra]), np.array([sp.width for sp in spectra]))
    return ModelAnalysis(
        family=family,
        spectra=tuple(spectra),
        seeds=(None,) if o.full else tuple(slots),
        weighted_degrees=tuple(degrees),
        neurons_per_layer=None if o.full else o.neurons_per_layer,
        full=o.full,
        scale=o.scale,
        params={"threshold": o.threshold, "decimals": o.decimals, "min_neighbours": o.min_neighbours,
                "backend": spectra[0].backend},
        by_depth=tuple(by_depth),
        null=null,
    )


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cached_layout(model: Any, o: NeuroMFAOptions, resolve: Any) -> Any:
    """The model's layout, found once per model object (and architecture/module), as the Metric and the
    callbacks keep theirs: repeated analyses of one model during training reuse its node sets (the
    layout reads the parameters at every access, so in-place updates are always seen). An
    ``example_input`` always resolves anew."""
    if o.example_input is not None or not isinstance(model, torch_module()):
        return resolve(model, o.architecture, module=o.module, example_input=o.example_input)
    key = (o.architecture, o.module if isinstance(o.module, str) or o.module is None else id(o.module))
    per_model = _LAYOUTS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = resolve(model, o.architecture, module=o.module)
    return per_model[key]


def torch_module() -> type:
    import torch

    return torch.nn.Module


def neuromfa(model: Any, **options: Any) -> ModelAnalysis:
    """NeuroMFA of ``model``: spectra of ``samples`` sampled networks (or the full one), summarised.

    Args:
        model: any ``nn.Module`` with weight operators (wrapped by ``torch.compile``, PEFT, DDP or a
            LightningModule too), or a resolved :class:`~neuromfa_callback.architectures.Layout`.
        **options: the fields of :class:`NeuroMFAOptions` (``samples``, ``neurons_per_layer``,
            ``full``, ``scale``, ``scale_rms``, ``null``, ``architecture``, ``module``,
            ``example_input``, ``q``, ``threshold``, ``decimals``, ``min_neighbours``, ``backend``).

    Returns:
        :class:`~neuromfa_callback.ModelAnalysis` (per-sample spectra, means and spreads, the
        weighted-degree baseline, one summary per depth, and the null if ``null > 0``).

    Raises:
        TypeError: an unknown option, or a bad option type. ValueError: a bad option value, a model
            without a weight operator, non-finite weights, or a sample in which no node qualifies.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> mlp = torch.nn.Sequential(*[torch.nn.Linear(128, 128) for _ in range(3)])
        >>> a = neuromfa(mlp, samples=3, neurons_per_layer=64, threshold=400.0)
        >>> len(a.spectra), a.alpha0_mean > 0, a.n_ill_formed, [d.name for d in a.by_depth]
        (3, True, 0, ['0', '1', '2'])
    """
    from neuromfa_callback.architectures import Layout, resolve

    opts, unknown = NeuroMFAOptions.split(options)
    if unknown:
        raise TypeError(f"neuromfa() got unexpected keyword arguments {sorted(unknown)}; options are {NeuroMFAOptions.names()}")
    o = NeuroMFAOptions(**opts)
    layout = model if isinstance(model, Layout) else _cached_layout(model, o, resolve)
    state = NeuroMFAState.empty(o, layout.depth_names)
    _neuromfa_update(state, _neuromfa_networks(layout, o, o.seeds))
    return _neuromfa_compute(state, family=layout.family)
