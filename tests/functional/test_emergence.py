"""Degree of emergence (NEUROMFA.md section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuromfa_callback import emergence


def test_baseline_is_zero():
    assert emergence(1.44, 0.62, 1.44, 0.62) == 0.0


def test_formula_against_hand_computation():
    """E = (w/w0) * ln(a0_ref / a0)."""
    assert emergence(1.1, 0.8, 1.4, 0.6) == pytest.approx((0.8 / 0.6) * math.log(1.4 / 1.1), rel=1e-15)


def test_moving_left_and_widening_increases_e():
    e = emergence([1.4, 1.3, 1.2], [0.6, 0.65, 0.7], 1.4, 0.6)
    assert np.all(np.diff(e) > 0)


def test_accepts_arrays_and_tensors():
    a = torch.tensor([1.4, 1.2], dtype=torch.float64)
    out = emergence(a, torch.tensor([0.6, 0.7]), 1.4, 0.6)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert out[0] == 0.0


@pytest.mark.parametrize("name", ["alpha0", "width", "alpha0_ref", "width_ref"])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_non_positive_or_non_finite(name, bad):
    args = {"alpha0": 1.2, "width": 0.6, "alpha0_ref": 1.4, "width_ref": 0.5}
    args[name] = bad
    with pytest.raises(ValueError, match=rf"Expected `{name}` to be positive and finite"):
        emergence(**args)
