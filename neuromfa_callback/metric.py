r"""NeuroMFA as a torchmetrics ``Metric``.

The state is the partition function on the fixed radius grid, one slot per sample (seed):
``z[s, r, q] = sum_i p_i(r)^q`` over the nodes of sample ``s``, plus which radii occur, node and
edge counts and the kept-weight sum. All of it reduces across processes with plain ``sum`` / ``max``,
so ranks can split the samples (or the nodes) between them and :meth:`NeuroMFA.compute` fits the
spectra once, after the sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from neuromfa_callback._checks import check_choice, check_int, check_positive_int
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid
from neuromfa_callback.functional.spectrum import BACKENDS, Spectrum, spectrum_from_partition, validate_q

__all__ = ["NeuroMFA"]

_SCALES = (None, "rms")


class NeuroMFA(Metric):
    r"""Multifractal spectrum of a model's neuron interaction network, averaged over samples.

    ``update(model)`` builds the sampled network for every seed ``0..samples-1`` handled by this
    process (all of them, or ``seed % world_size == rank`` when ``split_samples`` and a process
    group is initialised) and adds its partition sums to that seed's slot. ``update(network)``
    adds a prebuilt :class:`~neuromfa_callback.NeuronNetwork` (its ``seed`` picks the slot);
    repeated updates of a slot add nodes (the spectrum of the union of the networks).

    ``compute()`` returns a dict of float64 tensors: ``alpha0``, ``alpha0_std``, ``width``,
    ``width_std`` (mean and population std across samples; the paper averages before forming E),
    ``weighted_degree`` (mean ``|w|`` over each sample's kept edges, averaged over samples: the
    simplest baseline, as :func:`~neuromfa_callback.analyze_model` computes it), ``n_ill_formed``,
    ``n_samples``, ``n_nodes`` (mean kept nodes per sample), and the mean spectrum ``q``, ``tau``,
    ``alpha``, ``f_alpha``.

    Args:
        samples: number of samples (seeds ``0..samples-1``); ignored (1) when ``full``.
        neurons_per_layer: sampled neurons per layer (the reference uses 32).
        full: analyse every neuron of every matrix (no sampling).
        scale: ``None`` (raw weights) or ``"rms"`` (each matrix rescaled to RMS 0.02 first).
        q, threshold, decimals, min_neighbours, backend: as :func:`~neuromfa_callback.multifractal_spectrum`.
        split_samples: in a distributed run, give each rank its share of the seeds.

    Example:
        >>> import torch
        >>> from neuromfa_callback import NeuroMFA
        >>> _ = torch.manual_seed(0)
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
        >>> metric = NeuroMFA(samples=3, neurons_per_layer=32)
        >>> metric.update(mlp)
        >>> out = metric.compute()
        >>> sorted(k for k in out if k.startswith("alpha0")), int(out["n_samples"])
        (['alpha0', 'alpha0_std'], 3)
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        samples: int = 10,
        neurons_per_layer: int = 32,
        full: bool = False,
        scale: str | None = None,
        q: Any = None,
        threshold: float = 150.0,
        decimals: int = 0,
        min_neighbours: int = 10,
        backend: str = "auto",
        split_samples: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from neuromfa_callback._checks import check_real

        self.samples = 1 if full else check_positive_int("samples", samples)
        self.neurons_per_layer = check_positive_int("neurons_per_layer", neurons_per_layer)
        self.full = bool(full)
        self.scale = check_choice("scale", scale, _SCALES)
        self.q = validate_q(q)
        self.grid = RadiusGrid(check_real("threshold", threshold, greater_than=1), check_int("decimals", decimals, minimum=0))
        self.min_neighbours = check_int("min_neighbours", min_neighbours, minimum=0)
        self.backend = check_choice("backend", backend, BACKENDS)
        self.split_samples = bool(split_samples)
        s, g, nq = self.samples, self.grid.size, self.q.size
        f64 = torch.float64
        self.add_state("z", default=torch.zeros(s, g, nq, dtype=f64), dist_reduce_fx="sum")
        self.add_state("present", default=torch.zeros(s, g, dtype=f64), dist_reduce_fx="max")
        self.add_state("updated", default=torch.zeros(s, dtype=f64), dist_reduce_fx="max")
        self.add_state("n_nodes", default=torch.zeros(s, dtype=f64), dist_reduce_fx="sum")
        self.add_state("n_edges", default=torch.zeros(s, dtype=f64), dist_reduce_fx="sum")
        self.add_state("weight_sum", default=torch.zeros(s, dtype=f64), dist_reduce_fx="sum")

    # ----------------------------------------------------------------------------------- update
    def local_seeds(self) -> list[int]:
        """The seeds this process analyses (all, or its share under ``split_samples``)."""
        seeds = list(range(self.samples))
        if self.split_samples and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            seeds = seeds[rank::world]
        return seeds

    def build_networks(self, model: torch.nn.Module, seeds: Sequence[int] | None = None) -> list[Any]:
        """The networks ``update(model)`` would analyse (one per local seed); cheap in sampled mode."""
        from neuromfa_callback.architectures import resolve
        from neuromfa_callback.functional.network import layout_check_finite, layout_rms, network_from_layout

        seeds = self.local_seeds() if seeds is None else list(seeds)
        layout = resolve(model, "auto")
        # One pass over the whole matrices per call (finiteness, RMS), not one per seed.
        rms = layout_rms(layout) if self.scale == "rms" else None
        if rms is None:
            layout_check_finite(layout)
        return [
            network_from_layout(
                layout, neurons_per_layer=self.neurons_per_layer, seed=s, full=self.full, scale=self.scale,
                scale_rms=0.02, rms=rms, checked=True,
            )
            for s in seeds
        ]

    def partition(self, network: Any) -> PartitionSums:
        """Partition sums of one network with this metric's parameters."""
        return network.partition(
            q=self.q,
            threshold=self.grid.threshold,
            decimals=self.grid.decimals,
            min_neighbours=self.min_neighbours,
            backend=self.backend,
        )

    def add_partition(self, part: PartitionSums, slot: int = 0) -> None:
        """Add precomputed partition sums to sample ``slot``."""
        slot = check_int("slot", slot, minimum=0)
        if slot >= self.samples:
            raise ValueError(f"Expected `slot` < samples = {self.samples}, got {slot}")
        if part.grid != self.grid or not np.array_equal(part.q, self.q):
            raise ValueError(f"Expected partition sums on grid {self.grid} with this metric's q, got {part.grid}")
        dev = self.z.device
        self.z[slot] += torch.as_tensor(part.z, dtype=torch.float64, device=dev)
        self.present[slot] = torch.maximum(self.present[slot], torch.as_tensor(part.present, dtype=torch.float64, device=dev))
        self.updated[slot] = 1.0
        self.n_nodes[slot] += part.n_nodes
        self.n_edges[slot] += part.n_edges
        self.weight_sum[slot] += part.weight_sum

    def update(self, model_or_network: Any) -> None:
        """Analyse a model (every local seed), a ``NeuronNetwork``, or a sequence of networks."""
        from neuromfa_callback.functional.network import NeuronNetwork

        if isinstance(model_or_network, torch.nn.Module):
            seeds = self.local_seeds()
            for seed, net in zip(seeds, self.build_networks(model_or_network, seeds)):
                self.add_partition(self.partition(net), slot=seed % self.samples)
            return
        nets = [model_or_network] if isinstance(model_or_network, NeuronNetwork) else list(model_or_network)
        for net in nets:
            if not isinstance(net, NeuronNetwork):
                raise TypeError(
                    "Expected `model_or_network` to be an nn.Module, a NeuronNetwork or a sequence of them, "
                    f"got {type(net).__name__}"
                )
            self.add_partition(self.partition(net), slot=int(getattr(net, "seed", 0) or 0) % self.samples)

    # ---------------------------------------------------------------------------------- compute
    def spectra(self) -> list[Spectrum]:
        """One spectrum per updated sample slot, from the (synced) state."""
        slots = torch.nonzero(self.updated > 0).reshape(-1).tolist()
        if not slots:
            raise ValueError("NeuroMFA.compute() called before any update()")
        out = []
        for s in slots:
            part = PartitionSums(
                q=self.q,
                grid=self.grid,
                z=self.z[s].detach().cpu().numpy(),
                present=self.present[s].detach().cpu().numpy() > 0,
                n_nodes=int(self.n_nodes[s]),
                n_edges=int(self.n_edges[s]),
                min_neighbours=self.min_neighbours,
                backend=self.backend,
                weight_sum=float(self.weight_sum[s]),
            )
            out.append(spectrum_from_partition(part))
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        """Means and standard deviations across samples, and the mean spectrum."""
        spectra = self.spectra()
        a0 = np.array([s.alpha0 for s in spectra])
        w = np.array([s.width for s in spectra])
        slots = torch.nonzero(self.updated > 0).reshape(-1)
        per_sample_w = (self.weight_sum[slots] / self.n_edges[slots]).cpu().numpy()  # mean |w| of each sample
        t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
        return {
            "alpha0": t(a0.mean()),
            "alpha0_std": t(a0.std()),
            "width": t(w.mean()),
            "width_std": t(w.std()),
            "weighted_degree": t(float(np.mean(per_sample_w))),
            "n_ill_formed": t(float(sum(not s.is_well_formed for s in spectra))),
            "n_samples": t(float(len(spectra))),
            "n_nodes": t(float(np.mean([s.n_nodes for s in spectra]))),
            "q": t(self.q),
            "tau": t(np.mean([s.tau for s in spectra], axis=0)),
            "alpha": t(np.mean([s.alpha for s in spectra], axis=0)),
            "f_alpha": t(np.mean([s.f_alpha for s in spectra], axis=0)),
        }

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
