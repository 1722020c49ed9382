"""Golden: the authors' reference outputs, on every backend available here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import multifractal_spectrum
from tests.conftest import GOLDEN_CASES, load_golden

TOL = 1e-9


def _inputs(arrays, backend_input):
    ip, ds = arrays["indptr"], arrays["distances"]
    if backend_input == "torch":
        return torch.from_numpy(ip), torch.from_numpy(ds)
    return ip, ds


@pytest.mark.parametrize("backend", ["numpy", "torch", "auto"])
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_spectrum_matches_reference(case, backend):
    """tau, alpha, f(alpha) and width agree with the reference to 1e-9 absolute."""
    arrays, ref = load_golden(case)
    ip, ds = _inputs(arrays, "torch" if backend == "torch" else "numpy")
    s = multifractal_spectrum(ip, ds, q=ref["q"], threshold=ref["threshold"], decimals=ref["fdigi"], backend=backend)
    np.testing.assert_allclose(s.tau, ref["tau"], rtol=0, atol=TOL)
    np.testing.assert_allclose(s.alpha, ref["alpha"], rtol=0, atol=TOL)
    np.testing.assert_allclose(s.f_alpha, ref["f_alpha"], rtol=0, atol=TOL)
    assert abs(s.width - ref["width"]) < TOL
    assert s.backend == ("numpy" if backend == "auto" else backend)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_alpha0_is_one_of_the_tied_chords(case):
    """The reference's argmax alpha0 is one of the two chords next to q=0; ours is too."""
    arrays, ref = load_golden(case)
    s = multifractal_spectrum(arrays["indptr"], arrays["distances"], threshold=ref["threshold"], decimals=ref["fdigi"])
    j = int(np.flatnonzero(s.q == 0)[0])
    chords = [s.alpha[j - 1], s.alpha[j]]
    assert min(abs(ref["alpha0"] - c) for c in chords) < TOL
    assert min(abs(s.alpha0_argmax - c) for c in chords) == 0.0
    assert s.alpha0 == pytest.approx((chords[0] + chords[1]) / 2, abs=1e-12)


def test_golden_counts_nodes_and_edges_like_reference():
    """n_nodes counts nodes with more than 10 kept distances; kept nodes' edges are counted."""
    arrays, ref = load_golden("pythia70m_shape_init")
    s = multifractal_spectrum(arrays["indptr"], arrays["distances"])
    d, ip = arrays["distances"], arrays["indptr"]
    keep = (d > 1) & (d <= 150)
    per_node = np.add.reduceat(keep.astype(int), ip[:-1])
    assert s.n_nodes == int((per_node > 10).sum())
    assert s.n_edges == int(per_node[per_node > 10].sum())


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_no_qualifying_node_raises(backend):
    """The reference's error case: no node has more than min_neighbours kept neighbours."""
    arrays, ref = load_golden("too_sparse")
    assert "error" in ref
    with pytest.raises(ValueError, match=r"no node has more than 10 neighbours within \(1, threshold\]"):
        multifractal_spectrum(arrays["indptr"], arrays["distances"], backend=backend)
