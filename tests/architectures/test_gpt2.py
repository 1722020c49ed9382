"""GPT-2: the GPT-NeoX sampling on Conv1D matrices (stored in x out, analysed out x in)."""

from __future__ import annotations

import numpy as np
import torch

from neuromfa_callback import build_network
from tests.architectures._helpers import (
    assert_csr_matches_oracle,
    assert_partition_matches_csr,
    check_full_mode,
    tiny_gpt2,
)

PARTS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def test_sampled_follows_the_reference_draws_on_transposed_weights():
    """Draw order a, t, b, c per block + a final S of F; blocks are W.T[rows][:, cols] of the Conv1D weights."""
    model = tiny_gpt2()
    s, f = 8, 48
    net = build_network(model, neurons_per_layer=s, seed=5)
    rng = np.random.RandomState(5)
    draws = [[rng.choice(n, k, replace=False) for n, k in ((f, s), (f, s), (f, s), (4 * f, 2 * s))] for _ in range(2)]
    last = rng.choice(f, s, replace=False)
    for i, (a, t, b, c) in enumerate(draws):
        nxt = draws[i + 1][0] if i == 0 else last
        blocks = net.blocks[4 * i : 4 * i + 4]
        expected = [(a, np.concatenate([t, t + f, t + 2 * f])), (t, b), (b, c), (c, nxt)]
        for block, part, (cols, rows) in zip(blocks, PARTS, expected):
            assert block.name == f"transformer.h.{i}.{part}.weight"
            w = model.get_parameter(block.name).detach()  # in x out
            np.testing.assert_array_equal(block.columns, cols)
            np.testing.assert_array_equal(block.rows[0], rows)
            torch.testing.assert_close(
                block.weights[0], w[torch.as_tensor(cols)][:, torch.as_tensor(rows)].T, rtol=0, atol=0
            )
    assert_csr_matches_oracle(model, net)
    assert_partition_matches_csr(net)


def test_full_mode():
    model = tiny_gpt2(seed=2)
    check_full_mode(model, [f"transformer.h.{i}.{p}.weight" for i in range(2) for p in PARTS])
