"""Llama: grouped-query attention (K < H key/value heads) and the gated MLP."""

from __future__ import annotations

import numpy as np
import pytest

from neuromfa_callback import build_network
from neuromfa_callback.architectures.llama import kv_rows
from tests.architectures._helpers import (
    assert_csr_matches_oracle,
    assert_partition_matches_csr,
    check_full_mode,
    tiny_llama,
)

PARTS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def test_kv_rows_pairs_query_heads_with_their_key_value_head():
    """8 query heads of size 8 share 2 key/value heads: query head h uses kv head h // 4."""
    t = np.array([0, 9, 33, 40, 63, 1])
    rows = kv_rows(t, head_dim=8, n_heads=8, n_kv_heads=2)
    assert rows.tolist() == [0, 1, 8 + 1, 8 + 0, 8 + 7]  # t=1 repeats row 1 (same head group, offset 1)
    assert kv_rows(t, head_dim=8, n_heads=8, n_kv_heads=8).tolist() == t.tolist()


def test_sampled_gqa_and_gated_mlp():
    model = tiny_llama()
    s = 8
    net = build_network(model, neurons_per_layer=s, seed=4)
    qkv, o, gate_up, down = net.blocks[:4]
    assert qkv.name == "model.layers.0.self_attn.{q_proj,k_proj,v_proj}.weight"
    assert gate_up.name == "model.layers.0.mlp.{gate_proj,up_proj}.weight"
    t = o.columns
    np.testing.assert_array_equal(qkv.rows[0], t)
    kv = kv_rows(t, head_dim=8, n_heads=8, n_kv_heads=2)
    np.testing.assert_array_equal(qkv.rows[1], kv)
    np.testing.assert_array_equal(qkv.rows[2], kv)
    assert qkv.weights[1].shape == (kv.size, s)
    np.testing.assert_array_equal(gate_up.rows[0], gate_up.rows[1])
    np.testing.assert_array_equal(gate_up.rows[0], down.columns)
    assert gate_up.n_out == 4 * s
    np.testing.assert_array_equal(down.rows[0], net.blocks[4].columns)
    assert_csr_matches_oracle(model, net)
    assert_partition_matches_csr(net)


def test_intermediate_too_small_for_2s():
    """The MLP intermediate (96) holds at most 48 = 2S sampled neurons."""
    with pytest.raises(ValueError, match=r"`neurons_per_layer` <= 48 .*intermediate size 96.*got 49"):
        build_network(tiny_llama(), neurons_per_layer=49)


def test_full_mode():
    model = tiny_llama(seed=3)
    check_full_mode(model, [f"model.layers.{i}.{p}.weight" for i in range(2) for p in PARTS])
