"""Optional-dependency flags, evaluated lazily.

Nothing here imports an optional package (or touches the CUDA driver) at import time of
``neuromfa_callback``; each probe runs on first use and is cached.
"""

from __future__ import annotations

import functools
import importlib.util

__all__ = [
    "CUPY_INSTALL_HINT",
    "cupy_available",
    "matplotlib_available",
    "module_available",
    "wandb_available",
]

CUPY_INSTALL_HINT = "pip install 'neuromfa-callback[cuda12]'  (or '[cuda13]' for CUDA 13)"


@functools.lru_cache(maxsize=None)
def module_available(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it.

    Example:
        >>> module_available("numpy")
        True
        >>> module_available("surely_not_a_module_xyz")
        False
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cupy_available() -> bool:
    """Whether CuPy is installed (does not initialise CUDA)."""
    return module_available("cupy")


def wandb_available() -> bool:
    """Whether wandb is installed."""
    return module_available("wandb")


def matplotlib_available() -> bool:
    """Whether matplotlib is installed."""
    return module_available("matplotlib")
