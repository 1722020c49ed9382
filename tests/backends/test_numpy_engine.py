"""The CPU engine's internal paths: workspace reuse, threads, large C, the sort-based compaction."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from neuromfa_callback import partition_sums
from neuromfa_callback.backends import numpy_backend


def _network(rng, n, lo, hi, scale=0.02):
    deg = rng.integers(lo, hi, size=n)
    d = 1 / np.abs(rng.standard_t(3, size=int(deg.sum())) * scale)
    return np.concatenate([[0], np.cumsum(deg)]), d


def _per_node_z(indptr, dist, q, threshold=150.0):
    """The definition: Z_q(r) = sum_i (M_i(r) / M_i(L))^q on the integer radius grid, node by node."""
    radii = np.arange(1, int(threshold) + 1)
    z = np.zeros((radii.size, q.size))
    for i in range(len(indptr) - 1):
        x = dist[indptr[i] : indptr[i + 1]]
        x = np.rint(x[(x > 1) & (x <= threshold)])
        if x.size > 10:
            p = (1 + np.searchsorted(np.sort(x), radii, side="right")) / (1 + x.size)
            z += p[:, None] ** q[None, :]
    return z


def test_repeated_calls_of_different_sizes_reuse_the_workspace_without_leaking_state(rng):
    """A call's result does not depend on what earlier calls left in the reused buffers."""
    nets = [_network(rng, n, 5, hi) for n, hi in [(300, 90), (20, 30), (500, 60)]]
    nets.append(nets[0])
    fresh = [partition_sums(ip, d) for ip, d in nets]
    again = [partition_sums(ip, d) for ip, d in reversed(nets)][::-1]
    for a, b in zip(fresh, again):
        np.testing.assert_array_equal(a.z, b.z)
        np.testing.assert_array_equal(a.present, b.present)
    np.testing.assert_array_equal(fresh[0].z, fresh[3].z)


def test_concurrent_threads_get_the_single_thread_results(rng):
    """Each thread has its own workspace: concurrent calls agree with sequential ones bit for bit."""
    nets = [_network(rng, n, 5, 80) for n in (100, 200, 300, 400)]
    expected = [partition_sums(ip, d).z for ip, d in nets]
    got: dict[int, list] = {}

    def work(k):
        got[k] = [partition_sums(*nets[(k + j) % 4]).z for j in range(12)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for j, z in enumerate(got[k]):
            np.testing.assert_array_equal(z, expected[(k + j) % 4])


def test_nodes_beyond_the_cached_pair_table_match_the_definition(rng):
    """Nodes with C > _PAIRS_C_MAX (here up to ~600) take the small-table path; z is still exact."""
    ip, d = _network(rng, 12, 500, 900, scale=0.01)
    part = partition_sums(ip, d)
    assert part.n_nodes == 12 and int(np.diff(ip).max()) > numpy_backend._PAIRS_C_MAX
    np.testing.assert_allclose(part.z, _per_node_z(ip, d, part.q), rtol=1e-12)


@pytest.mark.parametrize("runs_for_v_form", [0.0, 2.0])
@pytest.mark.parametrize("pairs_c_max", [256, 8])
def test_entry_forms_and_table_paths_agree(rng, monkeypatch, runs_for_v_form, pairs_c_max):
    """W per edge or V per (node, bin) run, cached pair table or small tables: the same sums."""
    ip, d = _network(rng, 300, 11, 90)
    reference = partition_sums(ip, d)
    monkeypatch.setattr(numpy_backend, "_RUNS_FOR_V_FORM", runs_for_v_form)
    monkeypatch.setattr(numpy_backend, "_PAIRS_C_MAX", pairs_c_max)
    part = partition_sums(ip, d)
    np.testing.assert_allclose(part.z, reference.z, rtol=1e-14)
    np.testing.assert_array_equal(part.present, reference.present)
    np.testing.assert_allclose(part.z, _per_node_z(ip, d, part.q), rtol=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_many_ties_per_node_use_runs_and_match_the_definition(rng, backend):
    """Nodes with thousands of neighbours (many per bin) take the V-per-run form; z stays exact."""
    import torch

    ip, d = _network(rng, 6, 2000, 3000, scale=0.02)
    if backend == "torch":
        ip, d = torch.from_numpy(ip), torch.from_numpy(d)
    part = partition_sums(ip, d, backend=backend)
    np.testing.assert_allclose(part.z, _per_node_z(np.asarray(ip), np.asarray(d), part.q), rtol=1e-12)


def test_sort_based_compaction_for_huge_pair_spaces_matches_the_definition(rng):
    """A few nodes with thousands of kept distances use np.unique instead of the occupancy array."""
    ip, d = _network(rng, 3, 4000, 5000, scale=0.005)
    part = partition_sums(ip, d)
    c_max = int(np.diff(ip).max()) + 1
    blocks = -(-part.grid.size // numpy_backend._BLOCK)
    assert blocks * c_max * (c_max - 1) // 2 > 16 * part.n_edges + (1 << 20)
    np.testing.assert_allclose(part.z, _per_node_z(ip, d, part.q), rtol=1e-12)


@pytest.mark.parametrize("decimals", [0, 1])
def test_partition_sums_equal_the_per_node_definition(rng, decimals):
    """z on every grid radius, not only tau, agrees with the node-by-node float64 sum."""
    ip, d = _network(rng, 200, 5, 70)
    part = partition_sums(ip, d, decimals=decimals)
    if decimals == 0:
        np.testing.assert_allclose(part.z, _per_node_z(ip, d, part.q), rtol=1e-13)
    ones = partition_sums(ip, d, decimals=decimals, q=[-1.0, 0.0, 1.0])
    np.testing.assert_allclose(ones.z[:, 1], ones.n_nodes, rtol=0)  # Z_0 = number of nodes, exactly
