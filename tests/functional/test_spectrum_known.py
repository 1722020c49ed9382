"""Known answers: synthetic networks whose spectrum is known analytically."""

from __future__ import annotations

import numpy as np

from neuromfa_callback import multifractal_spectrum


def _regular_network(n_nodes: int, dim: float, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every node has one distance at each r with multiplicity such that M(r) ~ r^dim exactly."""
    # Choose counts so cumulative mass 1 + n(r) = r**dim at integer radii.
    target = np.rint(radii.astype(float) ** dim).astype(int)
    mult = np.diff(np.concatenate(([1], target)))
    per_node = np.repeat(radii.astype(float), mult)
    dist = np.tile(per_node, n_nodes)
    indptr = np.arange(0, dist.size + 1, per_node.size)
    return indptr, dist


def test_monofractal_tau_is_q_times_dimension():
    """Nodes with identical mass M(r) = r^D give tau(q) = q*D and width ~ 0."""
    radii = np.arange(2, 31)
    indptr, dist = _regular_network(50, 2.0, radii)
    s = multifractal_spectrum(indptr, dist)
    # M(r)/M(L) = (r/L)^D exactly up to integer rounding of r^D at small r.
    np.testing.assert_allclose(s.tau, s.q * 2.0, atol=0.02)
    assert s.width < 1e-9
    assert abs(s.alpha0 - 2.0) < 0.02


def test_two_populations_widen_the_spectrum():
    """Mixing nodes of dimension 1 and 2.5 gives a clearly wider spectrum than either alone."""
    radii = np.arange(2, 31)
    ip1, d1 = _regular_network(50, 1.0, radii)
    ip2, d2 = _regular_network(50, 2.5, radii)
    w1 = multifractal_spectrum(ip1, d1).width
    w2 = multifractal_spectrum(ip2, d2).width
    mixed = multifractal_spectrum(np.concatenate([ip1, ip2[1:] + ip1[-1]]), np.concatenate([d1, d2]))
    assert max(w1, w2) < 1e-9
    assert mixed.width > 0.5


def test_tau_at_zero_is_zero(rng):
    """tau(0) = 0 for any network: Z_0(r) is the node count at every radius."""
    d = 1 / np.abs(rng.standard_t(3, size=400 * 30) * 0.02)
    s = multifractal_spectrum(np.arange(0, d.size + 1, 30), d)
    assert abs(s.tau[np.flatnonzero(s.q == 0)[0]]) < 1e-12


def test_ill_formed_spectrum_is_flagged_not_dropped():
    """Three nodes with clumped distances give a non-concave tau: flagged, and still returned."""
    nodes = [
        [1.2, 1.2, 2.0, 2.0, 8.0, 8.0, 140.0, 140.0, 140.0, 140.0, 140.0, 140.0],
        [1.2, 1.2, 1.2, 3.0, 8.0, 13.0, 40.0, 40.0, 40.0, 40.0, 90.0, 90.0, 90.0, 140.0, 140.0],
        [1.2, 2.0, 3.0, 3.0, 5.0, 8.0, 8.0, 8.0, 8.0, 13.0, 140.0],
    ]
    ip = np.concatenate([[0], np.cumsum([len(n) for n in nodes])])
    s = multifractal_spectrum(ip, np.concatenate(nodes))
    assert s.flags == ("f_positive", "alpha_not_decreasing")
    assert not s.is_well_formed
    assert (s.f_alpha > 1e-9).any() and (np.diff(s.alpha) > 1e-9).any()
    assert s.tau.shape == (61,)


def test_well_formed_gaussian_layer_has_no_flags(rng):
    """i.i.d. Gaussian weights at Pythia's init scale give a well-formed spectrum."""
    d = 1 / np.abs(rng.normal(0, 0.02, size=500 * 64))
    s = multifractal_spectrum(np.arange(0, d.size + 1, 64), d)
    assert s.is_well_formed and s.flags == ()


def test_scale_sensitivity_matches_method_notes(rng):
    """NEUROMFA.md 5: alpha0 falls as the weight scale grows (about 2.25 / 1.53 / 0.63)."""
    z = rng.normal(size=2000 * 64)
    ip = np.arange(0, z.size + 1, 64)
    a = [multifractal_spectrum(ip, 1 / np.abs(z * std)).alpha0 for std in (0.01, 0.02, 0.08)]
    assert a[0] > a[1] > a[2]
    np.testing.assert_allclose(a, [2.25, 1.53, 0.63], atol=0.15)
