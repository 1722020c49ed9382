r"""One-call analysis of a model: :func:`analyze_model`, the name the README and the CLI use for :func:`neuromfa`.

Spectra of ``samples`` sampled networks (seeds ``0..samples-1``, the same neurons every time it is
called, so checkpoints of one run are comparable) or of the full network, summarised in a
:class:`~neuromfa_callback.ModelAnalysis`: means and spreads (``np.std``, ``ddof=0``), ill-formed counts,
the plain weighted-degree baseline (mean ``|w|`` over the kept edges) that NEUROMFA.md section 5 asks
to report next to the degree of emergence, one summary per depth, and the permutation null.
"""

from __future__ import annotations

from typing import Any

from neuromfa_callback.functional.neuromfa import neuromfa
from neuromfa_callback.functional.summary import DepthSummary, ModelAnalysis, NullSummary

__all__ = ["DepthSummary", "ModelAnalysis", "NullSummary", "analyze_model"]


def analyze_model(model: Any, **options: Any) -> ModelAnalysis:
    """NeuroMFA of ``model``; the same as :func:`~neuromfa_callback.neuromfa` (see it for the options).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
        ...                           torch.nn.ReLU(), torch.nn.Linear(128, 10))
        >>> a = analyze_model(mlp, samples=3)
        >>> len(a.spectra), [d.name for d in a.by_depth], a.by_depth[2].flag
        (3, ['0', '2', '4'], 'too few nodes in 3 of 3 samples')
    """
    return neuromfa(model, **options)
