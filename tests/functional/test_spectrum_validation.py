"""Bad input is refused at the boundary with a message naming the argument and the value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import multifractal_spectrum

IP = np.array([0, 12, 24])
D = np.linspace(2, 50, 24)


@pytest.mark.parametrize("to_torch", [False, True])
@pytest.mark.parametrize(
    ("indptr", "distances", "match"),
    [
        (np.array([1, 12, 24]), D, r"`indptr\[0\]` == 0, got 1"),
        (np.array([0, 13, 12, 24]), D, r"`indptr` to be non-decreasing"),
        (np.array([0, 12, 23]), D, r"`indptr\[-1\]` == len\(distances\) == 24, got 23"),
        (IP, np.r_[D[:-1], -3.0], r"`distances` >= 0, got -3.0 at index 23"),
        (IP, np.r_[D[:-1], np.nan], r"finite `distances`, got nan at index 23"),
        (IP, np.r_[np.inf, D[1:]], r"finite `distances`, got inf at index 0"),
        (np.array([[0, 24]]), D, r"1-D `indptr`"),
    ],
)
def test_bad_csr_is_refused(indptr, distances, match, to_torch):
    if to_torch:
        indptr, distances = torch.as_tensor(indptr), torch.as_tensor(distances)
    with pytest.raises(ValueError, match=match):
        multifractal_spectrum(indptr, distances)


def test_float_indptr_is_a_type_error():
    with pytest.raises(TypeError, match=r"`indptr` to hold integers, got dtype float64"):
        multifractal_spectrum(IP.astype(float), D)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1.0}, r"Expected `threshold` > 1, got 1"),
        ({"threshold": 0.5}, r"Expected `threshold` > 1, got 0.5"),
        ({"threshold": float("nan")}, r"`threshold` to be finite, got nan"),
        ({"decimals": -1}, r"Expected `decimals` >= 0, got -1"),
        ({"min_neighbours": -2}, r"Expected `min_neighbours` >= 0, got -2"),
        ({"q": [0.0, -1.0, 1.0]}, r"`q` to be strictly increasing, got \[0.0, -1.0, 1.0\]"),
        ({"q": [0.5, 1.0, 2.0]}, r"`q` to contain 0 with a neighbour on each side"),
        ({"q": [0.0, 1.0, 2.0]}, r"`q` to contain 0 with a neighbour on each side"),
        ({"q": [-1.0, 0.0, 0.0, 1.0]}, r"strictly increasing"),
        ({"q": [-1.0, 0.0, np.inf]}, r"`q` to be finite"),
        ({"backend": "jax"}, r"Expected `backend` to be one of \('auto', 'numpy', 'torch', 'cupy'\), got 'jax'"),
    ],
)
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        multifractal_spectrum(IP, D, **kwargs)


def test_decimals_must_be_an_int():
    with pytest.raises(TypeError, match=r"`decimals` to be an int, got 0.5"):
        multifractal_spectrum(IP, D, decimals=0.5)


def test_single_radius_cannot_be_fitted():
    """All kept distances rounding to one radius leave no slope: a clear error, not NaN."""
    with pytest.raises(ValueError, match=r"single radius \(\[5.0\]\)"):
        multifractal_spectrum(np.array([0, 12]), np.full(12, 5.0))


def test_cupy_backend_without_cupy_names_the_extra():
    pytest.importorskip("torch")
    from neuromfa_callback._imports import cupy_available

    if cupy_available():
        pytest.skip("CuPy is installed here; the refusal is for machines without it")
    with pytest.raises(ImportError, match=r"neuromfa-callback\[cuda12\]"):
        multifractal_spectrum(IP, D, backend="cupy")
