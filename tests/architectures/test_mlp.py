"""Plain MLPs: a chain of nn.Linear layers, every layer analysed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import build_network
from tests.architectures._helpers import (
    assert_csr_matches_oracle,
    assert_partition_matches_csr,
    check_full_mode,
    tiny_mlp,
)


def test_sampled_chain():
    """Draws s_0..s_out in order; layer k connects s_k to s_{k+1}."""
    model = tiny_mlp()
    net = build_network(model, neurons_per_layer=12, seed=7)
    rng = np.random.RandomState(7)
    draws = [rng.choice(n, 12, replace=False) for n in (24, 40, 32, 16)]
    assert [b.name for b in net.blocks] == ["0.weight", "2.weight", "4.weight"]
    for k, block in enumerate(net.blocks):
        assert block.layer == k and block.role == "linear"
        np.testing.assert_array_equal(block.columns, draws[k])
        np.testing.assert_array_equal(block.rows[0], draws[k + 1])
        w = model[2 * k].weight.detach()
        torch.testing.assert_close(
            block.weights[0], w[torch.as_tensor(draws[k + 1])][:, torch.as_tensor(draws[k])], rtol=0, atol=0
        )
    assert_csr_matches_oracle(model, net)
    assert_partition_matches_csr(net, min_neighbours=3, threshold=1000.0)


def test_layer_too_narrow():
    with pytest.raises(ValueError, match=r"Expected `neurons_per_layer` <= 16 .*got 17"):
        build_network(tiny_mlp(), neurons_per_layer=17)


def test_full_mode():
    model = tiny_mlp(seed=1)
    check_full_mode(model, ["0.weight", "2.weight", "4.weight"])
