"""neuromfa-callback: Neuron-based Multifractal Analysis (NeuroMFA) of a model while it trains.

Importing this package imports no optional dependency and never touches the CUDA driver.
"""

from neuromfa_callback.functional.emergence import emergence
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid
from neuromfa_callback.functional.spectrum import Spectrum, default_q, multifractal_spectrum, partition_sums

__version__ = "0.1.0"

__all__ = [
    "PartitionSums",
    "RadiusGrid",
    "Spectrum",
    "__version__",
    "default_q",
    "emergence",
    "multifractal_spectrum",
    "partition_sums",
]
