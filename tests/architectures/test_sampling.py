"""The general sampler: min(S, n_in) nodes and min(S, rows) out-neighbours per operator, the same for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import analyze_model, build_network
from tests.architectures._helpers import conv_oracle, tiny_llama, tiny_resnet


def _sizes_from_parameters(model: torch.nn.Module, net) -> list[tuple[int, list[int]]]:
    """(n_in, [rows of each operator]) of every node set, read from the parameters' shapes (out x in)."""
    out = []
    for b in net.blocks:
        shapes = [tuple(model.get_parameter(n).shape) for n in b.names]
        assert len({s[1] for s in shapes}) == 1
        out.append((shapes[0][1], [s[0] for s in shapes]))
    return out


@pytest.mark.parametrize(("s", "seed"), [(8, 0), (40, 3), (200, 1)])
def test_generic_draws_follow_the_documented_recipe(s, seed):
    """Per node set in forward order: cols = choice(n_in, min(S, n_in)), then per operator rows =
    choice(rows, min(S, rows)), all from one RandomState(seed) without replacement."""
    model = tiny_llama()
    net = build_network(model, neurons_per_layer=s, seed=seed)
    rng = np.random.RandomState(seed)
    for b, (n_in, rows) in zip(net.blocks, _sizes_from_parameters(model, net)):
        cols = rng.choice(n_in, min(s, n_in), replace=False)
        np.testing.assert_array_equal(b.columns, cols)
        assert b.n_nodes == min(s, n_in)
        for r, got in zip(rows, b.rows):
            np.testing.assert_array_equal(got, rng.choice(r, min(s, r), replace=False))
    assert net.n_nodes == sum(min(s, n_in) for n_in, _ in _sizes_from_parameters(model, net))


def _indices(net) -> list:
    return [(b.columns.tolist(), [r.tolist() for r in b.rows]) for b in net.blocks]


def test_same_seed_same_neurons_across_calls_and_checkpoints():
    """Seed k picks the same neurons every call and at every checkpoint (weights changed), so a trajectory
    follows the same neurons; only the distances change."""
    model = tiny_llama()
    first = build_network(model, neurons_per_layer=8, seed=5)
    again = build_network(model, neurons_per_layer=8, seed=5)
    assert _indices(first) == _indices(again)
    np.testing.assert_array_equal(first.distances, again.distances)
    with torch.no_grad():  # a "later checkpoint"
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.01)
    later = build_network(model, neurons_per_layer=8, seed=5)
    assert _indices(later) == _indices(first)
    assert not np.array_equal(later.distances, first.distances)


def test_another_seed_other_neurons():
    """A different seed samples different neurons."""
    model = tiny_llama()
    a, b = (build_network(model, neurons_per_layer=8, seed=s) for s in (0, 1))
    assert all(x.columns.tolist() != y.columns.tolist() for x, y in zip(a.blocks, b.blocks))


def test_sampled_cnn_reads_the_conv_rule_entries():
    """A sampled ResNet network holds, for every node set, exactly oracle[rows][:, cols] of each operator
    (convolutions by the hand-built conv rule)."""
    model = tiny_resnet()
    net = build_network(model, neurons_per_layer=16, seed=2)
    for b in net.blocks:
        for name, w, rows in zip(b.names, b.weights, b.rows):
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            p = model.get_parameter(name)
            oracle = conv_oracle(p, owner.groups) if isinstance(owner, torch.nn.Conv2d) else p.detach()
            assert len(rows) == min(16, oracle.shape[0]) and b.n_nodes == min(16, oracle.shape[1])
            torch.testing.assert_close(w, oracle[torch.as_tensor(rows)][:, torch.as_tensor(b.columns)], rtol=0, atol=0)


def test_mlp_784_256_128_10_at_default_settings():
    """An MNIST MLP analyses at the defaults (S = 32, 10 samples, min_neighbours = 10): depths 0 and 1 have
    spectra in every sample; the last depth, whose nodes have only 10 out-edges (<= min_neighbours), is
    flagged "too few nodes" in all 10 samples rather than dropped."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    a = analyze_model(mlp)
    assert [d.name for d in a.by_depth] == ["0", "2", "4"]
    for d in a.by_depth[:2]:
        assert d.flag == "" and np.all(np.isfinite(d.alpha0s)) and len(d.spectra) == 10
    assert a.by_depth[2].flag == "too few nodes in 10 of 10 samples"
    assert a.by_depth[2].n_missing == 10
