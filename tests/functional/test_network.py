"""NeuronNetwork: CSR view, streaming in bounded chunks, zeros, scale='rms', non-finite weights, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuromfa_callback.functional._weights as weights_mod
import neuromfa_callback.functional._neuron_network as network_mod
from neuromfa_callback import build_network
from tests.architectures._helpers import (
    assert_csr_matches_oracle,
    assert_partition_matches_csr,
    tiny_gpt_neox,
    tiny_mlp,
)


def test_node_metadata_and_csr():
    """Nodes are ordered block by block; each block's nodes are its sampled input neurons, at its depth.

    An MLP is analysed on the generic path (family ``"generic"``; the per-family layouts are gone): its
    depths are the ``nn.Sequential`` children holding operators (``"0"``, ``"2"``, ``"4"``), and
    ``node_depth`` (formerly ``node_layer``) gives every node's depth index.
    """
    model = tiny_mlp()
    net = build_network(model, neurons_per_layer=10, seed=1)
    assert net.n_nodes == 30 and net.indptr.size == 31
    assert net.depth_names == ("0", "2", "4") and net.n_depths == 3
    assert net.node_depth.dtype == np.int64
    assert net.node_depth.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert [b.depth for b in net.blocks] == [0, 1, 2]
    assert net.node_matrix.tolist() == ["0.weight"] * 10 + ["2.weight"] * 10 + ["4.weight"] * 10
    np.testing.assert_array_equal(net.node_index, np.concatenate([b.columns for b in net.blocks]))
    assert net.distances.dtype == np.float64 and net.indptr.dtype == np.int64
    assert np.all(np.diff(net.indptr) == 10)
    assert (net.seed, net.neurons_per_layer, net.full, net.family) == (1, 10, False, "generic")
    assert "sampled S=10 seed=1" in repr(net)
    assert_csr_matches_oracle(model, net)


def test_exact_zeros_are_not_edges():
    """A zero weight is dropped from the CSR and n_edges, and changes no partition sum."""
    model = tiny_mlp()
    net = build_network(model, neurons_per_layer=10, seed=1)
    b = net.blocks[1]
    with torch.no_grad():
        model[2].weight[b.rows[0][:3], b.columns[0]] = 0.0  # three out-edges of the block's first node
    zeroed = build_network(model, neurons_per_layer=10, seed=1)
    assert net.n_edges == 300 and zeroed.n_edges == 297 == zeroed.distances.size
    first = 10  # node 0 of block 1
    assert zeroed.indptr[first + 1] - zeroed.indptr[first] == 7
    assert np.all(zeroed.distances > 0) and np.all(np.isfinite(zeroed.distances))
    assert_partition_matches_csr(zeroed, min_neighbours=3)


def test_streaming_in_small_chunks_gives_the_same_sums(monkeypatch):
    """With 3000-element chunks every matrix is split into column chunks; sums and CSR are unchanged."""
    model = tiny_gpt_neox(seed=2)
    whole = build_network(model, full=True)
    ref_part, ref_ip, ref_d = whole.partition(threshold=1000.0, min_neighbours=3), whole.indptr, whole.distances
    monkeypatch.setattr(network_mod, "CHUNK", 3000)
    monkeypatch.setattr(weights_mod, "CHUNK", 3000)
    chunked = build_network(model, full=True)
    pieces = list(chunked._pieces())
    assert len(pieces) >= 4 * len(chunked.blocks) and max(p.shape[0] * p.shape[1] for p in pieces) <= 3000
    part = chunked.partition(threshold=1000.0, min_neighbours=3)
    np.testing.assert_array_equal(chunked.indptr, ref_ip)
    np.testing.assert_array_equal(chunked.distances, ref_d)
    assert (part.n_nodes, part.n_edges) == (ref_part.n_nodes, ref_part.n_edges)
    np.testing.assert_allclose(part.z, ref_part.z, rtol=1e-12)
    assert_partition_matches_csr(chunked)


def test_full_mode_holds_operators_and_to_copy_snapshots():
    """Full mode holds the operators themselves (no copy: they read the live parameters at every access);
    ``to(device)`` materialises them into tensors, a snapshot the optimiser's in-place updates do not touch.

    (Before the any-model change full-mode blocks held tensor views; now they hold
    :class:`~neuromfa_callback.architectures.Operator` s, so ``to("cpu")`` always copies.)
    """
    from neuromfa_callback.architectures import Operator

    model = tiny_mlp()
    net = build_network(model, full=True)
    op = net.blocks[0].weights[0]
    assert isinstance(op, Operator) and op.module is model[0]
    assert op.stored().data_ptr() == model[0].weight.data_ptr()  # no copy
    assert net.device == torch.device("cpu")
    part_before = net.partition(threshold=1000.0, min_neighbours=3)
    snap = net.to("cpu", copy=True)
    moved = net.to("cpu")
    for s in (snap, moved):
        assert all(isinstance(w, torch.Tensor) for b in s.blocks for w in b.weights)
        assert s.blocks[0].weights[0].data_ptr() != model[0].weight.data_ptr()
    torch.testing.assert_close(snap.blocks[0].weights[0], model[0].weight.detach(), rtol=0, atol=0)
    before = snap.distances.copy()
    np.testing.assert_array_equal(before, moved.distances)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    np.testing.assert_array_equal(snap.distances, before)  # the snapshot did not move
    np.testing.assert_array_equal(moved.distances, before)
    live = net.partition(threshold=1000.0, min_neighbours=3)  # the operators read the updated weights
    assert live.weight_sum != part_before.weight_sum
    fresh = build_network(model, full=True).partition(threshold=1000.0, min_neighbours=3)
    np.testing.assert_array_equal(live.z, fresh.z)
    assert live.weight_sum == fresh.weight_sum


def test_float64_and_half_weights():
    """Weights are never modified in place, and distances are 1/|w| of the stored value in float64."""
    model = tiny_mlp().double()
    before = [p.detach().clone() for p in model.parameters()]
    build_network(model, full=True, scale="rms").partition(min_neighbours=3, threshold=1000.0)
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b, rtol=0, atol=0)
    half = tiny_mlp().to(torch.bfloat16)
    net = build_network(half, neurons_per_layer=8)
    assert_csr_matches_oracle(half, net)


def test_rms_scale_rescales_each_whole_matrix():
    """scale='rms': every matrix has RMS scale_rms; the network no longer depends on the weights' scale."""
    model = tiny_gpt_neox(seed=3)
    full = build_network(model, full=True, scale="rms", scale_rms=0.05)
    for b in full.blocks:
        w = model.get_parameter(b.name).detach().double()
        assert b.scales[0] == pytest.approx(0.05 / float(w.square().mean().sqrt()), rel=1e-13)
    lens = np.diff(full.indptr)
    for b, start in zip(full.blocks, np.cumsum([0] + [x.n_nodes for x in full.blocks])):
        d = full.distances[full.indptr[start] : full.indptr[start + b.n_nodes]]
        rms = np.sqrt(np.sum(d**-2.0) / (b.n_nodes * b.n_out))
        assert rms == pytest.approx(0.05, rel=1e-12)
    assert lens.sum() == full.n_edges
    raw = build_network(model, neurons_per_layer=8, seed=1)
    rms = build_network(model, neurons_per_layer=8, seed=1, scale="rms")
    assert_csr_matches_oracle(model, rms)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)  # exact in float32
    np.testing.assert_array_equal(
        build_network(model, neurons_per_layer=8, seed=1, scale="rms").distances, rms.distances
    )
    np.testing.assert_array_equal(build_network(model, neurons_per_layer=8, seed=1).distances, raw.distances / 4)


def test_permuting_hidden_neurons_leaves_the_full_spectrum_unchanged():
    """Relabelling a hidden layer's neurons (rows of one layer, columns of the next) changes no node's list."""
    model = tiny_mlp(seed=4, sizes=(64, 96, 64))
    ref = build_network(model, full=True).spectrum(min_neighbours=5, threshold=500.0)
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[0].weight.copy_(model[0].weight[perm])
        model[0].bias.copy_(model[0].bias[perm])
        model[2].weight.copy_(model[2].weight[:, perm])
    got = build_network(model, full=True).spectrum(min_neighbours=5, threshold=500.0)
    np.testing.assert_allclose(got.tau, ref.tau, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_name_the_parameter(bad):
    model = tiny_gpt_neox(seed=0)
    net = build_network(model, neurons_per_layer=8, seed=0)
    b = net.blocks[2]  # layer 0 dense_h_to_4h
    r, c = int(b.rows[0][3]), int(b.columns[5])
    with torch.no_grad():
        model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight[r, c] = bad
    name = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    with pytest.raises(ValueError, match=rf"finite weights in `{name}`, got {bad} at \(out, in\) = \({r}, {c}\)"):
        build_network(model, neurons_per_layer=8, seed=0)
    for kwargs in ({"full": True}, {"scale": "rms"}, {"full": True, "scale": "rms"}):
        with pytest.raises(ValueError, match=rf"finite weights in `{name}`, got {bad} at \(out, in\) = \({r}, {c}\)"):
            build_network(model, neurons_per_layer=8, seed=0, **kwargs)


def test_non_finite_outside_the_sample_is_refused_in_sampled_mode_too():
    """A NaN anywhere in an analysed matrix means the run diverged: sampled mode refuses it as well."""
    model = tiny_gpt_neox(seed=0)
    net = build_network(model, neurons_per_layer=8, seed=0)
    unsampled_row = int(np.setdiff1d(np.arange(256), net.blocks[2].rows[0])[0])
    with torch.no_grad():
        model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight[unsampled_row, 0] = float("nan")
    for kwargs in ({"neurons_per_layer": 8, "seed": 0}, {"full": True}, {"scale": "rms", "neurons_per_layer": 8}):
        with pytest.raises(ValueError, match=rf"`gpt_neox.layers.0.mlp.dense_h_to_4h.weight`, got nan at \(out, in\) = \({unsampled_row}, 0\)"):
            build_network(model, **kwargs)


def test_all_zero_matrix_cannot_be_rescaled():
    model = tiny_mlp()
    with torch.no_grad():
        model[2].weight.zero_()
    with pytest.raises(ValueError, match=r"Cannot rescale `2.weight`.*all its weights are 0"):
        build_network(model, scale="rms", neurons_per_layer=4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"neurons_per_layer": 0}, ValueError, r"Expected `neurons_per_layer` >= 1, got 0"),
        ({"neurons_per_layer": 65}, ValueError, r"Expected `neurons_per_layer` <= 64 \(the hidden size .*\), got 65"),
        (
            {"neurons_per_layer": 33},
            ValueError,
            r"Expected `neurons_per_layer` <= 32 \(half the MLP intermediate size 64.*got 33",
        ),
        ({"neurons_per_layer": 8.0}, TypeError, r"Expected `neurons_per_layer` to be an int, got 8.0"),
        ({"seed": -1}, ValueError, r"Expected `seed` >= 0, got -1"),
        ({"scale": "unit"}, ValueError, r"Expected `scale` to be one of \(None, 'rms'\), got 'unit'"),
        ({"scale_rms": 0.0}, ValueError, r"Expected `scale_rms` > 0, got 0"),
        ({"full": 1}, TypeError, r"Expected `full` to be a bool, got 1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    """Bad arguments are refused naming argument and value; on a GPT-NeoX model (``architecture="auto"``
    picks the ``gpt_neox`` preset, the reference's exact sampling) ``neurons_per_layer`` larger than a
    layer is still an error there (the reference draws S of the hidden size and 2S of the MLP's)."""
    model = _neox_hidden64_inter64(layers=2)
    with pytest.raises(error, match=match):
        build_network(model, **kwargs)


def _neox_hidden64_inter64(layers: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)  # hidden 64, MLP intermediate 64: at most 32 neurons there
    cfg = GPTNeoXConfig(vocab_size=16, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64)
    return GPTNeoXForCausalLM(cfg)


def test_generic_path_clamps_neurons_per_layer_to_the_layer_size():
    """The generic sampler draws ``min(S, n_in)`` nodes and ``min(S, rows)`` rows per operator, so a
    ``neurons_per_layer`` larger than a layer is no longer an error there: it takes the whole layer."""
    model = tiny_mlp()  # 24 -> 40 -> 32 -> 16
    net = build_network(model, neurons_per_layer=100, seed=3)
    assert [b.n_nodes for b in net.blocks] == [24, 40, 32]
    assert [b.n_out for b in net.blocks] == [40, 32, 16]
    full = build_network(model, full=True)
    for b, f in zip(net.blocks, full.blocks):  # every column and row, in the sampler's order
        assert sorted(b.columns.tolist()) == list(range(f.n_nodes))
        assert sorted(b.rows[0].tolist()) == list(range(f.n_out))
    assert net.n_edges == full.n_edges
    assert sorted(net.distances.tolist()) == sorted(full.distances.tolist())
    assert_csr_matches_oracle(model, net)
    # the same GPT-NeoX that the preset refuses (see test_bad_arguments) is clamped on the generic path
    neox = _neox_hidden64_inter64(layers=2)
    gen = build_network(neox, neurons_per_layer=65, architecture="generic")
    assert gen.family == "generic"
    assert [b.n_nodes for b in gen.blocks] == [min(65, b.n_nodes) for b in build_network(neox, full=True).blocks]
    with pytest.raises(ValueError, match=r"Expected `neurons_per_layer` <= 64 \(the hidden size .*\), got 65"):
        build_network(neox, neurons_per_layer=65, architecture="gpt_neox")


def test_one_layer_gpt_neox_uses_the_preset():
    """A one-layer GPT-NeoX is a GPT-NeoX stack of one block: ``auto`` picks the preset, one depth."""
    model = _neox_hidden64_inter64(layers=1)
    net = build_network(model, neurons_per_layer=8)
    assert net.family == "gpt_neox" and net.depth_names == ("gpt_neox.layers.0",)
    with pytest.raises(ValueError, match=r"Expected `neurons_per_layer` <= 32 \(half the MLP intermediate size 64"):
        build_network(model, neurons_per_layer=33)


def test_partition_validates_its_arguments():
    net = build_network(tiny_mlp(), neurons_per_layer=4)
    with pytest.raises(ValueError, match=r"Expected `threshold` > 1, got 0.5"):
        net.partition(threshold=0.5)
    with pytest.raises(ValueError, match=r"Expected `backend` to be one of"):
        net.partition(backend="jax")


@pytest.mark.gpu
def test_cuda_network_copied_to_pinned_cpu_memory():
    """Built on CUDA, copied to CPU without blocking: same CSR and sums as on CPU."""
    model = tiny_gpt_neox(seed=5)
    cpu = build_network(model, neurons_per_layer=8, seed=2)
    gpu = build_network(model.cuda(), neurons_per_layer=8, seed=2)
    assert gpu.device.type == "cuda"
    moved = gpu.to("cpu", non_blocking=True)
    assert moved.blocks[0].weights[0].is_pinned()
    np.testing.assert_array_equal(moved.distances, cpu.distances)
    np.testing.assert_array_equal(gpu.distances, cpu.distances)
    part = gpu.partition(backend="torch", min_neighbours=3, threshold=1000.0)
    np.testing.assert_allclose(part.z, cpu.partition(min_neighbours=3, threshold=1000.0).z, rtol=1e-12)
