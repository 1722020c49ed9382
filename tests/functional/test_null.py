"""The permutation null: known answer, invariances, exactness, and models at initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import analyze_model, build_network, multifractal_spectrum, partition_sums
from neuromfa_callback.functional._neuron_network import null_seed
from neuromfa_callback.functional._weights import null_matrix
from tests.architectures._helpers import tiny_gpt2, tiny_gpt_neox, tiny_llama


def _iid_mlp(seed: int = 0, width: int = 256) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(3)])
    with torch.no_grad():
        for lin in mlp:
            lin.weight.normal_(0.0, 0.02)
    return mlp


def test_iid_weights_give_e_null_near_zero():
    """Known answer: every node's weights are i.i.d. already, so shuffling them changes nothing systematic:
    |E_null| is within two standard deviations (over samples) of 0."""
    a = analyze_model(_iid_mlp(), samples=10, neurons_per_layer=64, null=3)
    e, sd = a.null.emergence(), a.null.emergence_std
    assert np.isfinite(e) and sd > 0
    assert abs(e) <= 2 * sd, (e, sd)
    assert abs(a.null.alpha0_mean - a.alpha0_mean) < 0.02


def test_structured_weights_give_a_nonzero_e_null():
    """The null detects organisation: when half of the input neurons carry 10x larger weights, the real
    network's nodes are heterogeneous and its null (weights mixed across nodes) is not: |E_null| >> its std."""
    mlp = _iid_mlp()
    with torch.no_grad():
        for lin in mlp:
            lin.weight[:, ::2] *= 10.0
    a = analyze_model(mlp, samples=10, neurons_per_layer=64, null=3, threshold=1500.0)
    assert abs(a.null.emergence()) > 5 * a.null.emergence_std


def test_null_partition_sums_equal_the_engine_on_explicitly_permuted_distances():
    """Exactness: the null network's partition sums are multifractal_spectrum's on the same permuted weights."""
    net = build_network(tiny_llama(), neurons_per_layer=16, seed=3)
    null = net.null(1)
    pieces_ip, pieces_d = [np.zeros(1, dtype=np.int64)], []
    for i, b in enumerate(net.blocks):  # build the permuted distances by hand from the real blocks
        mats = [null_matrix(w, null_seed(net.seed, 1, i, k)).double().abs() for k, w in enumerate(b.weights)]
        cols = torch.cat(mats, 0).T.numpy()
        for col in cols:
            pieces_d.append(np.where(col != 0, 1.0 / np.where(col != 0, col, 1.0), 0.0))
            pieces_ip.append(pieces_ip[-1][-1:] + col.size)
    ip, d = np.concatenate(pieces_ip), np.concatenate(pieces_d)
    kw = {"threshold": 1000.0, "min_neighbours": 3}
    ours, ref = null.partition(**kw), partition_sums(ip, d, **kw)
    assert ours.n_nodes == ref.n_nodes > 0 and ours.n_edges == ref.n_edges
    np.testing.assert_allclose(ours.z, ref.z, rtol=1e-12, atol=0)
    np.testing.assert_allclose(null.spectrum(**kw).tau, multifractal_spectrum(ip, d, **kw).tau, atol=1e-12, rtol=0)


def test_null_is_invariant_to_permuting_the_nodes():
    """Reordering a node set's columns (and rows) gives the same null, to the last bit: the arrangement
    depends only on each operator's multiset of weights."""
    net = build_network(tiny_gpt_neox(), neurons_per_layer=16, seed=0)
    g = torch.Generator().manual_seed(5)
    shuffled = type(net)(
        tuple(
            type(b)(b.name, b.names, b.depth,
                    tuple(w[torch.randperm(w.shape[0], generator=g)][:, torch.randperm(w.shape[1], generator=g)] for w in b.weights),
                    b.columns, b.rows, b.scales)
            for b in net.blocks
        ),
        depth_names=net.depth_names, seed=net.seed, neurons_per_layer=net.neurons_per_layer,
    )
    a, b = net.null(2).partition(), shuffled.null(2).partition()
    np.testing.assert_array_equal(a.z, b.z)
    assert a.n_nodes == b.n_nodes


def test_null_keeps_each_operator_multiset_and_is_seeded():
    net = build_network(tiny_gpt2(), neurons_per_layer=16, seed=0)
    n1, n1b, n2 = net.null(0), net.null(0), net.null(1)
    for b, b1, b1b, b2 in zip(net.blocks, n1.blocks, n1b.blocks, n2.blocks):
        for w, w1, w1b, w2 in zip(b.weights, b1.weights, b1b.weights, b2.weights):
            assert torch.equal(w.reshape(-1).sort().values, w1.reshape(-1).sort().values)
            assert torch.equal(w1, w1b) and not torch.equal(w1, w2) and not torch.equal(w, w1)


def test_full_mode_null_equals_the_materialised_null():
    """Full mode permutes one operator at a time while streaming; the result equals permuting the whole
    matrices first (the same seeds)."""
    model = torch.nn.Sequential(torch.nn.Linear(48, 40), torch.nn.ReLU(), torch.nn.Linear(40, 24))
    net = build_network(model, full=True)
    snap = net.to("cpu", copy=True)  # materialised matrices, same node sets
    kw = {"threshold": 1000.0, "min_neighbours": 3}
    np.testing.assert_allclose(net.null(0).partition(**kw).z, snap.null(0).partition(**kw).z, rtol=1e-13)


@pytest.mark.parametrize("build", [tiny_gpt_neox, tiny_gpt2, tiny_llama], ids=["gpt_neox", "gpt2", "llama"])
def test_models_at_initialisation_have_e_null_near_zero(build):
    """At random init no neuron is special: |E_null| within two standard deviations of 0."""
    a = analyze_model(build(seed=1), samples=10, neurons_per_layer=32, null=2)
    e, sd = a.null.emergence(), a.null.emergence_std
    assert np.isfinite(e) and abs(e) <= 2 * sd, (e, sd)
