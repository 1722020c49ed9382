"""Invariances of the engine, as property-based tests."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from neuromfa_callback import multifractal_spectrum


@st.composite
def networks(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(3, 40))
    rng = np.random.default_rng(seed)
    degrees = rng.integers(12, 60, size=n)
    scale = draw(st.sampled_from([0.01, 0.02, 0.05]))
    dist = 1 / np.abs(rng.standard_t(3, size=int(degrees.sum())) * scale)
    indptr = np.concatenate([[0], np.cumsum(degrees)])
    kept = np.add.reduceat(((dist > 1) & (dist <= 150)).astype(int), indptr[:-1])
    assume((kept > 10).any())  # a network where no node qualifies has no spectrum (tested elsewhere)
    return indptr, dist, rng


def _nodes(indptr, dist):
    return [dist[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]


def _csr(nodes):
    return np.concatenate([[0], np.cumsum([len(x) for x in nodes])]), np.concatenate(nodes)


def _tau(indptr, dist):
    return multifractal_spectrum(indptr, dist).tau


@settings(max_examples=40, deadline=None)
@given(networks())
def test_permuting_nodes_leaves_tau_unchanged(net):
    indptr, dist, rng = net
    nodes = _nodes(indptr, dist)
    perm = rng.permutation(len(nodes))
    np.testing.assert_allclose(_tau(*_csr([nodes[i] for i in perm])), _tau(indptr, dist), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(networks())
def test_permuting_distances_within_a_node_leaves_tau_unchanged(net):
    indptr, dist, rng = net
    nodes = [rng.permutation(x) for x in _nodes(indptr, dist)]
    np.testing.assert_allclose(_tau(*_csr(nodes)), _tau(indptr, dist), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(networks())
def test_duplicating_every_node_leaves_tau_unchanged(net):
    indptr, dist, _ = net
    nodes = _nodes(indptr, dist)
    np.testing.assert_allclose(_tau(*_csr(nodes + nodes)), _tau(indptr, dist), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(networks(), st.integers(1, 10))
def test_adding_nodes_with_too_few_kept_neighbours_leaves_tau_unchanged(net, n_extra):
    indptr, dist, rng = net
    nodes = _nodes(indptr, dist)
    # Each extra node: at most 10 distances inside (1, 150], plus any number outside it.
    extra = [
        np.concatenate([rng.uniform(1.01, 150, size=rng.integers(0, 11)), rng.uniform(151, 1e4, size=20), [1.0, 0.5]])
        for _ in range(n_extra)
    ]
    mixed = nodes + extra
    order = rng.permutation(len(mixed))
    np.testing.assert_allclose(_tau(*_csr([mixed[i] for i in order])), _tau(indptr, dist), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(networks())
def test_spectrum_tau_equals_a_per_node_float64_evaluation(net):
    """The pair-count assembly equals the textbook per-node sum of p^q (the definition)."""
    indptr, dist, _ = net
    s = multifractal_spectrum(indptr, dist)
    kept = [np.rint(x[(x > 1) & (x <= 150)]) for x in _nodes(indptr, dist)]
    kept = [x for x in kept if x.size > 10]
    radii = np.unique(np.concatenate(kept))
    z = np.zeros((radii.size, s.q.size))
    for x in kept:
        p = (1 + np.searchsorted(np.sort(x), radii, side="right")) / (1 + x.size)
        z += p[:, None] ** s.q[None, :]
    xr = np.log(radii / radii[-1])
    xc = xr - xr.mean()
    tau = xc @ (np.log(z) - np.log(z).mean(0)) / (xc @ xc)
    np.testing.assert_allclose(s.tau, tau, atol=1e-11)
