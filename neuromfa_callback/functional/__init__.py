"""Pure functions on arrays and tensors: no Lightning, no state."""

from neuromfa_callback.functional.emergence import emergence
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid
from neuromfa_callback.functional.spectrum import (
    Spectrum,
    default_q,
    multifractal_spectrum,
    partition_sums,
    spectrum_from_partition,
)

__all__ = [
    "PartitionSums",
    "RadiusGrid",
    "Spectrum",
    "default_q",
    "emergence",
    "multifractal_spectrum",
    "partition_sums",
    "spectrum_from_partition",
]
