"""Full mode: every input neuron of the same node sets, all its out-edges; streamed sums equal the CSR's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from neuromfa_callback import build_network
from tests.architectures._helpers import (
    assert_partition_matches_csr,
    conv_oracle,
    randomize_lora,
    tiny_llama,
    tiny_resnet,
    zero_some,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _matrix(model: torch.nn.Module, name: str) -> torch.Tensor:
    """Operator ``name`` as rows x n_in, from the parameter (convolutions by the hand-built rule)."""
    owner = model.get_submodule(name.rsplit(".", 1)[0])
    w = model.get_parameter(name).detach()
    return conv_oracle(w, owner.groups) if isinstance(owner, torch.nn.Conv2d) else w


def _node_lists(model: torch.nn.Module, names_per_set: list[tuple[str, ...]]) -> list[np.ndarray]:
    """Sorted distances 1/|w| (float64 of the stored value, zeros dropped) of every node, set by set."""
    out = []
    for names in names_per_set:
        mats = [_matrix(model, n).double() for n in names]
        for j in range(mats[0].shape[1]):
            w = torch.cat([m[:, j] for m in mats]).abs().numpy()
            out.append(np.sort(1.0 / w[w != 0]))
    return out


def _check_full(net, lists: list[np.ndarray]) -> None:
    assert net.indptr.tolist() == np.cumsum([0] + [x.size for x in lists]).tolist()
    for k, want in enumerate(lists):
        got = np.sort(net.distances[net.indptr[k] : net.indptr[k + 1]])
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert net.n_edges == net.distances.size == sum(x.size for x in lists)
    assert_partition_matches_csr(net)


def test_full_llama():
    """Full Llama: the sampled mode's node sets with every neuron; n_edges is the number of nonzero entries of
    all operators (exact zeros are no edge); the streamed partition equals the materialised CSR's."""
    model = tiny_llama(seed=3)
    sampled = build_network(model, neurons_per_layer=8)
    names = [b.names for b in sampled.blocks]
    zeroed = zero_some(model, [n for ns in names for n in ns])
    assert zeroed > 0
    net = build_network(model, full=True)
    assert [b.names for b in net.blocks] == names
    total = sum(int(torch.count_nonzero(model.get_parameter(n))) for ns in names for n in ns)
    assert net.n_edges == total
    assert [b.n_nodes for b in net.blocks] == [model.get_parameter(ns[0]).shape[1] for ns in names]
    _check_full(net, _node_lists(model, names))


def test_full_cnn_counts_every_conv_weight_once():
    """Full ResNet: by the conv rule every conv weight element is exactly one edge, so n_edges is the number of
    nonzero weight elements; nodes are input channels; the partition equals the CSR's."""
    model = tiny_resnet(seed=1)
    convs = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zero_some(model, [f"{n}.weight" for n in convs], count=5)
    net = build_network(model, full=True)
    names = [b.names for b in net.blocks]
    assert sorted(n for ns in names for n in ns) == sorted(f"{n}.weight" for n in convs)
    assert net.n_edges == sum(int(torch.count_nonzero(model.get_submodule(n).weight)) for n in convs)
    assert net.n_nodes == sum(model.get_parameter(ns[0]).shape[1] for ns in names)
    _check_full(net, _node_lists(model, names))


def test_full_lora_model_is_the_merged_models_network():
    """Full network of a LoRA model: the node sets and edges of its merged copy (PEFT's own merge), distances
    equal to float32 rounding; the partition equals the CSR's."""
    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(tiny_llama(seed=4), LoraConfig(r=2, target_modules=["q_proj", "gate_proj", "o_proj"]))
    randomize_lora(pm)
    merged = copy.deepcopy(pm).merge_and_unload()
    zero_some(merged, ["model.layers.0.mlp.down_proj.weight"])  # zeros in a non-LoRA matrix of both models
    with torch.no_grad():
        pm.get_parameter("base_model.model.model.layers.0.mlp.down_proj.weight").copy_(
            merged.model.layers[0].mlp.down_proj.weight
        )
    net = build_network(pm, full=True)
    plain = build_network(merged, full=True)
    assert [len(b.names) for b in net.blocks] == [len(b.names) for b in plain.blocks]
    assert net.n_edges == plain.n_edges
    _check_full(net, _node_lists(merged, [b.names for b in plain.blocks]))
