"""BERT: separate query/key/value matrices form one node set with rows t in each."""

from __future__ import annotations

import numpy as np

from neuromfa_callback import build_network
from tests.architectures._helpers import (
    assert_csr_matches_oracle,
    assert_partition_matches_csr,
    check_full_mode,
    tiny_bert,
)

PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def test_sampled_qkv_is_one_node_set():
    model = tiny_bert()
    s = 6
    net = build_network(model, neurons_per_layer=s, seed=2)
    assert len(net.blocks) == 8
    qkv, dense, inter, out = net.blocks[:4]
    assert qkv.name == "encoder.layer.0.attention.self.{query,key,value}.weight"
    assert qkv.names == tuple(f"encoder.layer.0.{p}.weight" for p in PARTS[:3])
    assert [tuple(w.shape) for w in qkv.weights] == [(s, s)] * 3
    for rows in qkv.rows:
        np.testing.assert_array_equal(rows, dense.columns)  # q, k and v rows are the sampled t
    assert (dense.names, inter.names, out.names) == tuple((f"encoder.layer.0.{p}.weight",) for p in PARTS[3:])
    np.testing.assert_array_equal(out.rows[0], net.blocks[4].columns)
    assert inter.rows[0].size == 2 * s
    assert net.indptr[1] - net.indptr[0] == 3 * s  # an a-node sees its query, key and value weights
    assert_csr_matches_oracle(model, net)
    assert_partition_matches_csr(net)


def test_full_mode():
    model = tiny_bert(seed=1)
    check_full_mode(model, [f"encoder.layer.{i}.{p}.weight" for i in range(2) for p in PARTS])
