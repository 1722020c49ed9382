"""Backend parity: every backend available here against the NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import multifractal_spectrum, partition_sums

BACKENDS = ["torch"] + (["cupy"] if torch.cuda.is_available() else [])


def _random_network(rng, n, scale, dist="t"):
    deg = rng.integers(0, 80, size=n)
    x = rng.standard_t(3, size=int(deg.sum())) if dist == "t" else rng.normal(size=int(deg.sum()))
    x[rng.random(x.size) < 0.05] = 0.0  # exact zeros: weight 0 means no edge (distance inf is refused, so use 0 -> d huge)
    d = 1 / np.maximum(np.abs(x * scale), 1e-300)
    return np.concatenate([[0], np.cumsum(deg)]), d


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("decimals", [0, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partition_sums_identical_to_numpy(backend, decimals, seed):
    rng = np.random.default_rng(seed)
    ip, d = _random_network(rng, 300, [0.01, 0.02, 0.05][seed])
    ref = partition_sums(ip, d, decimals=decimals, backend="numpy")
    dev = "cuda" if backend == "cupy" else "cpu"
    got = partition_sums(torch.from_numpy(ip).to(dev), torch.from_numpy(d).to(dev), decimals=decimals, backend=backend)
    assert got.backend == backend
    np.testing.assert_array_equal(got.present, ref.present)
    assert (got.n_nodes, got.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(got.z, ref.z, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.spectrum().tau, ref.spectrum().tau, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_nodes_and_too_sparse_nodes(backend):
    """Nodes with no distances and nodes below min_neighbours are ignored identically."""
    rng = np.random.default_rng(7)
    d_rich = 1 / np.abs(rng.normal(0, 0.02, size=(20, 40)))
    nodes = [np.array([])] * 3 + [row for row in d_rich] + [np.full(10, 3.0)] * 4
    ip = np.concatenate([[0], np.cumsum([len(x) for x in nodes])])
    d = np.concatenate(nodes)
    ref = multifractal_spectrum(ip, d, backend="numpy")
    got = multifractal_spectrum(torch.from_numpy(ip), torch.from_numpy(d), backend=backend)
    assert got.n_nodes == ref.n_nodes == 20
    np.testing.assert_allclose(got.tau, ref.tau, atol=1e-12)


def test_auto_follows_input():
    rng = np.random.default_rng(3)
    ip, d = _random_network(rng, 50, 0.02)
    assert multifractal_spectrum(ip, d).backend == "numpy"
    assert multifractal_spectrum(torch.from_numpy(ip), torch.from_numpy(d)).backend == "torch"
    assert multifractal_spectrum(torch.from_numpy(ip), torch.from_numpy(d), backend="numpy").backend == "numpy"
    assert multifractal_spectrum(ip, d, backend="torch").backend == "torch"


def test_partition_sums_add_across_node_subsets():
    """Z is a sum over nodes: splitting the node set and adding gives the whole."""
    rng = np.random.default_rng(5)
    ip, d = _random_network(rng, 200, 0.02)
    whole = partition_sums(ip, d)
    cut = 77
    a = partition_sums(ip[: cut + 1], d[: ip[cut]])
    b = partition_sums(ip[cut:] - ip[cut], d[ip[cut] :])
    both = a + b
    np.testing.assert_allclose(both.z, whole.z, rtol=1e-12)
    np.testing.assert_array_equal(both.present, whole.present)
    np.testing.assert_allclose(both.spectrum().tau, whole.spectrum().tau, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy"] + BACKENDS)
def test_weight_sum_is_the_sum_of_kept_weights(backend):
    """weight_sum / n_edges is the mean |w| over kept edges of kept nodes (the baseline)."""
    rng = np.random.default_rng(11)
    ip, d = _random_network(rng, 100, 0.02)
    part = partition_sums(torch.from_numpy(ip), torch.from_numpy(d), backend=backend)
    keep = (d > 1) & (d <= 150)
    per_node = np.add.reduceat(keep.astype(int), ip[:-1])
    per_node[np.diff(ip) == 0] = 0
    node_ok = np.repeat(per_node > 10, np.diff(ip))
    w = 1 / d[keep & node_ok]
    assert part.n_edges == w.size
    assert part.weight_sum == pytest.approx(w.sum(), rel=1e-12)
    assert part.mean_weight == pytest.approx(w.mean(), rel=1e-12)
