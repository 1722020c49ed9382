"""CuPy backend: the GPU box-counting kernel (issue: GPU kernel). Not built yet.

This module is the place for it: ``partition_sums_cupy`` takes the same arguments as the other
backends. Until the kernel lands it refuses clearly, naming the extra to install when CuPy is
missing, and never falls back silently to another backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuromfa_callback._imports import CUPY_INSTALL_HINT, cupy_available
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["require_cupy", "partition_sums_cupy"]


def require_cupy() -> Any:
    """Import CuPy and check a CUDA device is visible, or raise ``ImportError``/``RuntimeError``.

    Example:
        >>> from neuromfa_callback._imports import cupy_available
        >>> if not cupy_available():
        ...     try:
        ...         require_cupy()
        ...     except ImportError as err:
        ...         print("neuromfa-callback[cuda12]" in str(err))
        ... else:
        ...     print(True)
        True
    """
    if not cupy_available():
        raise ImportError(f"backend='cupy' needs CuPy and a CUDA GPU; install it with: {CUPY_INSTALL_HINT}")
    import cupy

    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise RuntimeError(f"backend='cupy' needs a CUDA GPU, but CUDA reported: {err}") from err
    if n < 1:
        raise RuntimeError("backend='cupy' needs a CUDA GPU, but none is visible")
    return cupy


def partition_sums_cupy(
    indptr: Any, distances: Any, q: np.ndarray, grid: RadiusGrid, min_neighbours: int
) -> PartitionSums:
    """GPU partition sums. Raises until the CuPy kernel is implemented."""
    require_cupy()
    raise NotImplementedError(
        "backend='cupy': the CuPy box-counting kernel is not implemented yet; use backend='torch' on CUDA tensors"
    )
