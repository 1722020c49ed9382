r"""Degree of emergence (NEUROMFA.md section 3).

.. math::  E(t) = \frac{w(t)}{w(t_0)} \ln\frac{\alpha_0(t_0)}{\alpha_0(t)}

with ``alpha_0`` and width ``w`` averaged over samples first, and ``t_0`` the baseline
(normally the initialisation). ``E(t_0) = 0``; E grows when the spectrum moves left (smaller
``alpha_0``: more regular) and widens (more heterogeneous).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["emergence"]


def _positive_finite(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(f"Expected `{name}` to be positive and finite, got {arr[bad].ravel()[0]!r}")
    return arr


def emergence(alpha0: Any, width: Any, alpha0_ref: Any, width_ref: Any) -> float | np.ndarray:
    """Degree of emergence of one checkpoint or of an array of checkpoints.

    Args:
        alpha0: ``alpha_0`` at the checkpoint(s) (mean over samples), > 0.
        width: spectrum width at the checkpoint(s) (mean over samples), > 0.
        alpha0_ref: ``alpha_0`` at the baseline checkpoint, > 0.
        width_ref: width at the baseline checkpoint, > 0.

    Returns:
        A float for scalar inputs, else an array broadcast from the inputs.

    Raises:
        ValueError: an input is zero, negative, NaN or infinite (the message names it).

    Example:
        >>> emergence(1.4, 0.6, 1.4, 0.6)
        0.0
        >>> round(emergence(1.0, 0.9, 1.4, 0.6), 4)
        0.5047
        >>> emergence([1.4, 1.2, 1.0], [0.6, 0.7, 0.9], 1.4, 0.6).round(4).tolist()
        [0.0, 0.1798, 0.5047]
    """
    a = _positive_finite("alpha0", alpha0)
    w = _positive_finite("width", width)
    a_ref = _positive_finite("alpha0_ref", alpha0_ref)
    w_ref = _positive_finite("width_ref", width_ref)
    out = (w / w_ref) * np.log(a_ref / a)
    return float(out) if out.ndim == 0 else out
