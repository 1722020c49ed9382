"""GPT-NeoX: the reference's sampled network, bit for bit (golden), and full mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import build_network
from tests.architectures._helpers import (
    assert_csr_matches_oracle,
    assert_partition_matches_csr,
    check_full_mode,
    tiny_gpt_neox,
)
from tests.conftest import GOLDEN_DIR, load_golden


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    arrays, meta = load_golden("gptneox_tiny_init")
    model = GPTNeoXForCausalLM(GPTNeoXConfig(**meta["model_config"]))
    model.load_state_dict(load_file(GOLDEN_DIR / "gptneox_tiny_init.safetensors"))
    net = build_network(model, neurons_per_layer=meta["layer_sample"], seed=0)
    return model, net, arrays, meta


def test_golden_indices_are_the_reference_draws(golden):
    """Seed 0 draws exactly the reference's a, qkv rows, t, b, c and final indices."""
    _, net, _, meta = golden
    s, f = meta["samples"], meta["model_config"]["hidden_size"]
    for layer in range(meta["model_config"]["num_hidden_layers"]):
        qkv, dense, h_to_4h, to_h = net.blocks[4 * layer : 4 * layer + 4]
        assert qkv.columns.tolist() == s[f"block{layer}_nums1"]
        assert qkv.rows[0].tolist() == s[f"block{layer}_nums2"]
        assert dense.columns.tolist() == s[f"block{layer}_nums3"]
        assert np.array_equal(qkv.rows[0], np.concatenate([dense.columns + k * f for k in range(3)]))
        assert dense.rows[0].tolist() == s[f"block{layer}_nums4"] == h_to_4h.columns.tolist()
        assert h_to_4h.rows[0].tolist() == s[f"block{layer}_nums5"] == to_h.columns.tolist()
    last = meta["model_config"]["num_hidden_layers"] - 1
    assert net.blocks[-1].rows[0].tolist() == s[f"block{last}_nums6"]
    assert net.blocks[3].rows[0].tolist() == s["block1_nums1"]  # block 0's output rows = block 1's inputs


def test_golden_node_distance_lists_equal_node_for_node(golden):
    """Every golden node but the weight-1 ones has exactly our distances (same float64 bits)."""
    _, net, arrays, meta = golden
    ip, d = arrays["indptr"], arrays["distances"]
    gold = [np.sort(d[ip[k] : ip[k + 1]]) for k in range(ip.size - 1)]
    weight_one = [g for g in gold if np.all(g == 1.0)]
    gold = [g for g in gold if not np.all(g == 1.0)]
    block_of_node = np.repeat(np.arange(len(net.blocks)), [b.n_nodes for b in net.blocks])
    order = np.lexsort((net.node_index, block_of_node))  # the reference sorts nodes by global id
    ours = [np.sort(net.distances[net.indptr[k] : net.indptr[k + 1]]) for k in order]
    assert len(ours) == len(gold) == meta["n_nodes"] - len(weight_one) == 160
    assert len(weight_one) == 96  # the qkv output nodes, 3S per block
    for a, b in zip(ours, gold):
        np.testing.assert_array_equal(a, b)
    assert net.n_edges == d.size - sum(g.size for g in weight_one) == 4096


def test_golden_tau(golden):
    """tau, alpha and width agree with the reference to 1e-9 on both CPU backends."""
    _, net, _, meta = golden
    for backend in ("numpy", "torch"):
        s = net.spectrum(backend=backend)
        np.testing.assert_allclose(s.tau, meta["tau"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(s.alpha, meta["alpha"], rtol=0, atol=1e-9)
        assert s.width == pytest.approx(meta["width"], abs=1e-9)


def test_golden_csr_and_streaming(golden):
    model, net, _, _ = golden
    assert_csr_matches_oracle(model, net)
    assert_partition_matches_csr(net, threshold=150.0, min_neighbours=10)


def test_sampled_reads_only_sampled_entries_and_copies_them():
    """Sampled blocks are small copies: changing the model afterwards does not change the network."""
    model = tiny_gpt_neox()
    net = build_network(model, neurons_per_layer=8, seed=3)
    before = net.distances.copy()
    b = net.blocks[0]
    assert tuple(b.weights[0].shape) == (24, 8)
    assert (
        b.weights[0].untyped_storage().data_ptr()
        != model.gpt_neox.layers[0].attention.query_key_value.weight.data_ptr()
    )
    with torch.no_grad():
        model.gpt_neox.layers[0].attention.query_key_value.weight.mul_(2)
    k = int(net.indptr[b.n_nodes])  # the qkv block's edges come first
    after = build_network(model, neurons_per_layer=8, seed=3).distances
    np.testing.assert_array_equal(after[:k], before[:k] / 2)  # |2w| halves 1/|w| exactly
    np.testing.assert_array_equal(after[k:], before[k:])
    np.testing.assert_array_equal(net.distances, before)  # the first network kept its own copy


def test_full_mode():
    model = tiny_gpt_neox(seed=1)
    names = [
        f"gpt_neox.layers.{i}.{p}.weight"
        for i in range(2)
        for p in ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")
    ]
    check_full_mode(model, names)
