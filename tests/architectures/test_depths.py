"""Depths (the block every node set belongs to, in forward order) and what is left out (unembeddings, ties)."""

from __future__ import annotations

import torch

from neuromfa_callback.architectures import resolve
from tests.architectures._helpers import (
    MoeStack,
    tiny_gpt2,
    tiny_gpt_neox,
    tiny_llama,
    tiny_mixtral,
    tiny_nanogpt,
    tiny_resnet,
    tiny_t5,
)


def _depth_of_each_operator(layout) -> dict[str, str]:
    return {op.name: layout.depth_names[ns.depth] for ns in layout.node_sets for op in ns.operators}


def _block(name: str, prefixes: tuple[str, ...]) -> str:
    """The oracle: the longest of ``prefixes`` that ``name`` lies under."""
    return max((p for p in prefixes if name.startswith(p + ".")), key=len)


def test_decoder_blocks_are_depths():
    """Llama: every node set of model.layers.N is at depth N."""
    layout = resolve(tiny_llama())
    assert layout.depth_names == ("model.layers.0", "model.layers.1")
    for name, block in _depth_of_each_operator(layout).items():
        assert block == _block(name, layout.depth_names)


def test_encoder_decoder_depths_in_forward_order():
    """T5: encoder.block.0, encoder.block.1, then decoder.block.0, decoder.block.1 (the order they run); each
    node set sits in the block of its first operator."""
    layout = resolve(tiny_t5())
    blocks = ("encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1")
    assert layout.depth_names == blocks
    for ns in layout.node_sets:
        assert layout.depth_names[ns.depth] == _block(ns.operators[0].name, blocks)
    assert [ns.depth for ns in layout.node_sets] == sorted(ns.depth for ns in layout.node_sets)


class Reversed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            x = torch.relu(layer(x))
        return x


def test_depths_follow_the_forward_pass_not_registration():
    """Blocks called in reverse registration order are numbered in the order they run."""
    layout = resolve(Reversed())
    assert layout.depth_names == ("layers.2", "layers.1", "layers.0")
    assert [ns.name for ns in layout.node_sets] == ["layers.2.weight", "layers.1.weight", "layers.0.weight"]


def test_resnet_depths_are_stem_blocks_and_head():
    """A ResNet: the stem conv, every block of layer1/layer2 (children of the repeated-block containers), the
    head; the 1x1 downsample conv belongs to its block."""
    layout = resolve(tiny_resnet())
    assert layout.depth_names == ("conv1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "fc")
    by_op = _depth_of_each_operator(layout)
    assert by_op["layer2.0.downsample.0.weight"] == "layer2.0"
    assert by_op["layer1.1.conv2.weight"] == "layer1.1"
    assert by_op["conv1.weight"] == "conv1" and by_op["fc.weight"] == "fc"


def test_sequential_mlp_one_depth_per_linear():
    """An nn.Sequential MLP: every Linear is a depth of its own."""
    mlp = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    )
    layout = resolve(mlp)
    assert layout.depth_names == ("0", "2", "4")
    assert [(ns.name, ns.depth) for ns in layout.node_sets] == [("0.weight", 0), ("2.weight", 1), ("4.weight", 2)]


def test_moe_experts_belong_to_their_layer():
    """Experts stored as 3-D parameters inside layers.N (hand-written and Mixtral) are at depth N."""
    for model, prefix in ((MoeStack(layers=2), "layers"), (tiny_mixtral(), "model.layers")):
        layout = resolve(model)
        assert layout.depth_names == (f"{prefix}.0", f"{prefix}.1")
        experts = [(op.name, ns.depth) for ns in layout.node_sets for op in ns.operators if op.kind == "expert"]
        assert len(experts) == 2 * 2 * (3 if prefix == "layers" else 4)
        for name, depth in experts:
            assert name.startswith(f"{prefix}.{depth}.")


def test_hf_output_embeddings_are_unembeddings():
    """get_output_embeddings() (Llama's lm_head, GPT-NeoX's head, GPT-2's lm_head tied to wte) is left out as
    the unembedding; every other 2-D weight that is not an embedding's is analysed."""
    for model in (tiny_llama(), tiny_gpt_neox(), tiny_gpt2()):
        head = model.get_output_embeddings()
        layout = resolve(model)
        assert dict(layout.skipped) == {"lm_head.weight": "unembedding (output embedding)"}
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        mats = {
            n for n, p in model.named_parameters() if p.ndim == 2 and id(p) not in embeddings and p is not head.weight
        }
        assert {op.params[0] for op in layout.operators} == mats


def test_weight_tied_to_an_embedding_is_an_unembedding():
    """nanoGPT (self.lm_head.weight = self.wte.weight, no HF config): lm_head is skipped as a tied unembedding."""
    model = tiny_nanogpt()
    assert model.lm_head.weight is model.wte.weight
    layout = resolve(model)
    assert dict(layout.skipped) == {"lm_head.weight": "unembedding (tied to wte.weight)"}
    assert [op.name for op in layout.operators] == [f"h.{i}.{k}.weight" for i in range(2) for k in (1, 3)]


class SharedWeights(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_matrix_shared_by_two_layers_is_analysed_once():
    """Two Linear layers holding one parameter: the first is analysed, the second skipped as tied to it."""
    layout = resolve(SharedWeights())
    assert [op.name for op in layout.operators] == ["a.weight"]
    assert layout.skipped == (("b.weight", "tied to a.weight"),)


def test_embeddings_norms_and_biases_of_a_model_are_not_read():
    """No operator of a Llama reads an embedding, a norm weight or a bias."""
    layout = resolve(tiny_llama())
    read = {p for op in layout.operators for p in op.params}
    assert not any("embed" in p or "norm" in p or p.endswith("bias") for p in read)
    assert len(read) == 2 * 7
