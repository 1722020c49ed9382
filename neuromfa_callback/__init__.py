"""neuromfa-callback: Neuron-based Multifractal Analysis (NeuroMFA) of a model while it trains.

Importing this package imports no optional dependency and never touches the CUDA driver; the
Lightning, torchmetrics and transformers integrations are imported on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from neuromfa_callback.functional.emergence import emergence
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid
from neuromfa_callback.functional.spectrum import Spectrum, default_q, multifractal_spectrum, partition_sums

__version__ = "0.1.0"  # the one version source: pyproject.toml reads this literal (without importing)

_LAZY = {
    "NeuronNetwork": "neuromfa_callback.functional.network",
    "build_network": "neuromfa_callback.functional.network",
    "describe": "neuromfa_callback.describe",
    "MatrixInfo": "neuromfa_callback.describe",
    "analyze_model": "neuromfa_callback.analysis",
    "ModelAnalysis": "neuromfa_callback.functional.summary",
    "DepthSummary": "neuromfa_callback.functional.summary",
    "NullSummary": "neuromfa_callback.functional.summary",
    "neuromfa": "neuromfa_callback.functional.neuromfa",
    "NeuroMFAOptions": "neuromfa_callback.functional.neuromfa",
    "resolve": "neuromfa_callback.architectures",
    "Layout": "neuromfa_callback.architectures",
    "NeuroMFA": "neuromfa_callback.metric",
    "NeuroMFACallback": "neuromfa_callback.callback",
    "NeuroMFATrainerCallback": "neuromfa_callback.hf_callback",
    "load_history": "neuromfa_callback.history",
    "load_model": "neuromfa_callback.checkpoints",
    "tune_allocator": "neuromfa_callback._malloc",
}

__all__ = [
    "DepthSummary",
    "Layout",
    "MatrixInfo",
    "ModelAnalysis",
    "NeuroMFA",
    "NeuroMFACallback",
    "NeuroMFAOptions",
    "NeuroMFATrainerCallback",
    "NeuronNetwork",
    "NullSummary",
    "PartitionSums",
    "RadiusGrid",
    "Spectrum",
    "__version__",
    "analyze_model",
    "build_network",
    "default_q",
    "describe",
    "emergence",
    "load_history",
    "load_model",
    "multifractal_spectrum",
    "neuromfa",
    "partition_sums",
    "resolve",
    "tune_allocator",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuromfa_callback' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
