"""Operators by module type: every weight seen as ``rows x n_in``, column ``j`` = input neuron ``j``'s out-edges.

Each oracle is read straight from the module's parameters (or from its forward pass), never through
:class:`~neuromfa_callback.architectures.Operator`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback.architectures import DataflowRecorder, find_operators, resolve
from tests.architectures._helpers import (
    MoeBlock,
    conv_oracle,
    conv_transpose_oracle,
    tiny_gpt2,
    tiny_mixtral,
)


def _ops(model: torch.nn.Module, *inputs: torch.Tensor):
    """``{operator name: operator}`` of ``model``, oriented by one observed forward pass on ``inputs``."""
    rec = DataflowRecorder(model)
    with torch.no_grad():
        model(*inputs)
    obs = rec.detach()
    return {op.name: op for _, _, ops in find_operators(model, obs.widths) for op in ops}


def _check_reads(op, oracle: torch.Tensor, seed: int = 0) -> None:
    """``columns`` and ``gather`` (sampled rows/cols and all rows) return exactly the oracle's entries."""
    assert (op.n_rows, op.n_in) == tuple(oracle.shape)
    torch.testing.assert_close(op.columns(0, op.n_in), oracle, rtol=0, atol=0)
    torch.testing.assert_close(op.columns(1, op.n_in - 1), oracle[:, 1:-1], rtol=0, atol=0)
    rs = np.random.RandomState(seed)
    rows = rs.choice(op.n_rows, min(5, op.n_rows), replace=False)
    cols = rs.choice(op.n_in, min(3, op.n_in), replace=False)
    want = oracle[torch.as_tensor(rows)][:, torch.as_tensor(cols)]
    torch.testing.assert_close(op.gather(rows, cols), want, rtol=0, atol=0)
    torch.testing.assert_close(op.gather(None, cols), oracle[:, torch.as_tensor(cols)], rtol=0, atol=0)


def _response_columns(module: torch.nn.Module, n_in: int) -> torch.Tensor:
    """Column ``j`` = ``f(e_j) - f(0)``: what input neuron ``j`` sends to every output (a linear map's weights)."""
    with torch.no_grad():
        return (module(torch.eye(n_in)) - module(torch.zeros(1, n_in))).t()


def test_linear_column_is_the_input_neurons_out_edges():
    """nn.Linear: column j of the operator is W[:, j], the change of every output when input j is 1."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(7, 5)
    (op,) = _ops(lin, torch.randn(2, 7)).values()
    assert (op.kind, op.name, op.params) == ("linear", "weight", ("weight",))
    _check_reads(op, lin.weight.detach())
    torch.testing.assert_close(op.columns(0, 7), _response_columns(lin, 7))


def test_gpt2_conv1d_is_read_transposed():
    """transformers Conv1D stores in x out (y = x @ W + b): input neuron j's out-edges are the stored row W[j]."""
    model = tiny_gpt2()
    c_attn = model.transformer.h[0].attn.c_attn
    assert tuple(c_attn.weight.shape) == (48, 144)
    (_, _, ops), *_ = [f for f in find_operators(model) if f[0] == "transformer.h.0.attn.c_attn"]
    (op,) = ops
    assert op.kind == "conv1d_hf" and op.name == "transformer.h.0.attn.c_attn.weight"
    _check_reads(op, c_attn.weight.detach().t())
    torch.testing.assert_close(op.columns(0, 48), _response_columns(c_attn, 48))


def test_multihead_attention_packed_in_proj():
    """nn.MultiheadAttention with one in_proj_weight: q, k, v are its three row blocks, reading query, key and
    value (input slots 0, 1, 2); out_proj is an operator of its own that reads an internal activation."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2)
    x = torch.randn(4, 2, 16)
    ops = _ops(mha, x, x, x)
    assert list(ops) == ["in_proj_weight[q]", "in_proj_weight[k]", "in_proj_weight[v]", "out_proj.weight"]
    w = mha.in_proj_weight.detach()
    for k, piece in enumerate("qkv"):
        op = ops[f"in_proj_weight[{piece}]"]
        assert (op.kind, op.input_slot, op.params) == ("mha", k, ("in_proj_weight",))
        _check_reads(op, w[16 * k : 16 * (k + 1)], seed=k)
    out = ops["out_proj.weight"]
    assert out.input_slot is None and out.module is mha.out_proj
    _check_reads(out, mha.out_proj.weight.detach())


def test_multihead_attention_separate_projections():
    """kdim/vdim != embed_dim: q_proj_weight (E x E), k_proj_weight (E x kdim), v_proj_weight (E x vdim)."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2, kdim=8, vdim=12)
    ops = _ops(mha, torch.randn(3, 2, 16), torch.randn(5, 2, 8), torch.randn(5, 2, 12))
    assert list(ops) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]
    for k, (piece, width) in enumerate(zip("qkv", (16, 8, 12))):
        op = ops[f"{piece}_proj_weight"]
        assert (op.input_slot, op.n_in, op.n_rows) == (k, width, 16)
        _check_reads(op, getattr(mha, f"{piece}_proj_weight").detach(), seed=k)
    _check_reads(ops["out_proj.weight"], mha.out_proj.weight.detach())


CONVS = {
    "conv1d": (lambda: torch.nn.Conv1d(4, 6, 3), (1, 4, 20)),
    "conv2d": (lambda: torch.nn.Conv2d(4, 6, (3, 2)), (1, 4, 9, 9)),
    "conv3d": (lambda: torch.nn.Conv3d(4, 6, (2, 3, 2)), (1, 4, 5, 6, 5)),
    "conv2d-grouped": (lambda: torch.nn.Conv2d(4, 6, 3, groups=2), (1, 4, 9, 9)),
    "conv1d-grouped": (lambda: torch.nn.Conv1d(6, 9, 2, groups=3), (1, 6, 20)),
    "conv2d-depthwise": (lambda: torch.nn.Conv2d(4, 4, 3, groups=4), (1, 4, 9, 9)),
    "conv2d-depthwise-x2": (lambda: torch.nn.Conv2d(4, 8, 3, groups=4), (1, 4, 9, 9)),
    "conv3d-grouped": (lambda: torch.nn.Conv3d(4, 4, 2, groups=2), (1, 4, 5, 5, 5)),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_convolution_rule(case):
    """Node = input channel; its out-edges are its weights to every output channel of its group at every kernel
    tap: (C_out/g) * prod(k) rows, equal entry by entry to a hand-built oracle from conv.weight."""
    torch.manual_seed(0)
    make, shape = CONVS[case]
    conv = make()
    (op,) = _ops(conv, torch.randn(shape)).values()
    taps = int(np.prod(conv.kernel_size))
    assert op.kind == "conv"
    assert (op.n_in, op.n_rows) == (conv.in_channels, conv.out_channels // conv.groups * taps)
    _check_reads(op, conv_oracle(conv.weight, conv.groups))


def test_convolution_slot_counts_as_documented():
    """A 3x3 conv with 64 output channels gives every input channel 576 slots; a depthwise 3x3 conv only 9."""
    (op,) = find_operators(torch.nn.Conv2d(8, 64, 3))[0][2]
    (dw,) = find_operators(torch.nn.Conv2d(8, 8, 3, groups=8))[0][2]
    assert (op.n_in, op.n_rows, dw.n_in, dw.n_rows) == (8, 576, 8, 9)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose(groups):
    """nn.ConvTranspose2d (weight C_in x C_out/g x k...): input channel j's out-edges are W[j] flattened."""
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(4, 6, (3, 2), groups=groups)
    (op,) = _ops(conv, torch.randn(1, 4, 5, 5)).values()
    assert op.kind == "conv_transpose"
    assert (op.n_in, op.n_rows) == (4, 6 // groups * 6)
    _check_reads(op, conv_transpose_oracle(conv.weight))


def test_moe_experts_stored_out_by_in():
    """3-D experts used with F.linear (E x out x in): one operator per expert and parameter, W[e][:, j] is
    input neuron j's out-edges; the input projection reads the block input, the down projection does not."""
    torch.manual_seed(0)
    block = MoeBlock(hidden=16, inter=24, experts=3, x_at_w=False)
    ops = _ops(block, torch.randn(2, 5, 16))
    ex = block.experts
    expected = [f"experts.{p}[{e}]" for p in ("gate_up", "down") for e in range(3)]
    assert [n for n in ops if n.startswith("experts")] == expected
    for e in range(3):
        up, down = ops[f"experts.gate_up[{e}]"], ops[f"experts.down[{e}]"]
        assert (up.kind, up.expert, up.input_slot, down.input_slot) == ("expert", e, 0, None)
        _check_reads(up, ex.gate_up[e].detach(), seed=e)  # 48 x 16
        _check_reads(down, ex.down[e].detach(), seed=e)  # 16 x 24
    _check_reads(ops["router.weight"], block.router.weight.detach())


def test_moe_experts_stored_in_by_out():
    """3-D experts used as x @ W (E x in x out): orientation from the observed input width, so W[e][j, :] is
    input neuron j's out-edges; gate_up reads the block input, down (E x I x H) reads the internal activation."""
    torch.manual_seed(0)
    block = MoeBlock(hidden=16, inter=24, experts=3, x_at_w=True)
    ops = _ops(block, torch.randn(2, 5, 16))
    ex = block.experts
    for e in range(3):
        up, down = ops[f"experts.gate_up[{e}]"], ops[f"experts.down[{e}]"]
        assert (up.input_slot, down.input_slot) == (0, None)
        _check_reads(up, ex.gate_up[e].detach().t(), seed=e)  # 48 x 16
        _check_reads(down, ex.down[e].detach().t(), seed=e)  # 16 x 24


def test_moe_experts_stored_in_by_out_single_parameter():
    """A single 3-D parameter E x H x O used as x @ W (H = observed width != O) is read transposed."""

    class Experts(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 16, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(x @ self.w[e] for e in range(3))

    torch.manual_seed(0)
    m = Experts()
    ops = _ops(m, torch.randn(2, 16))
    assert list(ops) == ["w[0]", "w[1]", "w[2]"]
    for e in range(3):
        assert ops[f"w[{e}]"].transposed and ops[f"w[{e}]"].input_slot == 0
        _check_reads(ops[f"w[{e}]"], m.w[e].detach().t(), seed=e)


def test_moe_down_projection_with_intermediate_equal_to_hidden():
    """E x 2H x H gate_up and E x H x H down (F.linear): down still reads the internal activation, not the input."""
    torch.manual_seed(0)
    block = MoeBlock(hidden=16, inter=16, experts=3, x_at_w=False)
    ops = _ops(block, torch.randn(2, 5, 16))
    assert [ops[f"experts.down[{e}]"].input_slot for e in range(3)] == [None] * 3
    assert [ops[f"experts.gate_up[{e}]"].input_slot for e in range(3)] == [0] * 3


def test_mixtral_experts_and_router():
    """transformers' Mixtral: gate_up_proj (E x 2I x H) and down_proj (E x H x I) give one operator per expert
    and parameter, each equal to the parameter's slice; the router (one 2-D weight) is an operator too."""
    model = tiny_mixtral()
    layout = resolve(model)
    ops = {op.name: op for op in layout.operators}
    moe = model.model.layers[1].mlp
    for e in range(4):
        up = ops[f"model.layers.1.mlp.experts.gate_up_proj[{e}]"]
        down = ops[f"model.layers.1.mlp.experts.down_proj[{e}]"]
        assert not up.transposed and not down.transposed
        _check_reads(up, moe.experts.gate_up_proj[e].detach(), seed=e)  # 96 x 64
        _check_reads(down, moe.experts.down_proj[e].detach(), seed=e)  # 64 x 48
    router = ops["model.layers.1.mlp.gate.weight"]
    assert router.kind == "linear_like"
    _check_reads(router, moe.gate.weight.detach())


def test_unknown_module_with_one_matrix_oriented_by_its_input():
    """A custom module holding one 2-D weight used as x @ W (in x out) is an operator once seen reading width in."""

    class XW(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(8, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

    torch.manual_seed(0)
    m = XW()
    assert find_operators(m) == []  # its type alone does not make it an operator
    (op,) = _ops(m, torch.randn(3, 8)).values()
    assert (op.kind, op.transposed) == ("linear_like", True)
    _check_reads(op, m.w.detach().t())
    torch.testing.assert_close(op.columns(0, 8), _response_columns(m, 8))


def test_embeddings_norms_and_biases_are_not_operators():
    """Only weight matrices are operators: nn.Embedding, LayerNorm, BatchNorm, RMSNorm and every bias are not."""
    model = torch.nn.ModuleDict(
        {
            "emb": torch.nn.Embedding(10, 8),
            "ln": torch.nn.LayerNorm(8),
            "bn": torch.nn.BatchNorm1d(8),
            "rms": torch.nn.RMSNorm(8),
            "fc": torch.nn.Linear(8, 4),
        }
    )
    found = find_operators(model)
    assert [(path, [op.params for op in ops]) for path, _, ops in found] == [("fc", [("fc.weight",)])]


@pytest.mark.parametrize("kind, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_layers_give_their_input_and_hidden_weights_per_gate(kind, gates):
    """nn.LSTM/GRU/RNN: weight_ih_l*/weight_hh_l* (both directions) are operators, sampled per gate; the
    first layer's input weights read the module's input, the others read internal state; values are the
    parameters' own entries."""
    from neuromfa_callback.architectures import resolve

    torch.manual_seed(0)
    rnn = getattr(torch.nn, kind)(12, 16, num_layers=2, bidirectional=True, batch_first=True)
    ((_, _, ops),) = find_operators(rnn)
    names = [op.name for op in ops]
    assert names == [n for n, p in rnn.named_parameters() if n.startswith("weight_")]
    for op in ops:
        w = getattr(rnn, op.name)
        assert (op.n_rows, op.n_in) == tuple(w.shape)
        assert op.pieces == ((16,) * gates if gates > 1 else None)
        assert op.input_slot == (0 if op.name.startswith("weight_ih_l0") else None)
        rows, cols = np.array([0, 5, 17]) % w.shape[0], np.array([1, 3])
        assert torch.equal(op.gather(rows, cols), w.detach()[rows][:, cols])
    layout = resolve(rnn, example_input=torch.randn(2, 5, 12))
    first = [ns for ns in layout.node_sets if ns.reads.startswith("input of")]
    assert [ns.name for ns in first] == ["{weight_ih_l0,weight_ih_l0_reverse}"]  # both directions read the input
