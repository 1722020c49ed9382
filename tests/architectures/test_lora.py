"""PEFT LoRA / DoRA layers: the operator is the effective weight, equal to what ``merge_and_unload()`` merges.

The oracle is a deep copy of the PEFT model merged by PEFT itself; the analysed model is never merged.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from neuromfa_callback import build_network
from neuromfa_callback.architectures import resolve
from tests.architectures._helpers import conv_oracle, randomize_lora, tiny_gpt2, tiny_llama

peft = pytest.importorskip("peft")
LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.fc = torch.nn.Linear(6, 5)
        self.head = torch.nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.conv(x).mean((2, 3)))))


def conv_net(seed: int = 0) -> ConvNet:
    torch.manual_seed(seed)
    return ConvNet()


def _peft(model: torch.nn.Module, **cfg):
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, **cfg))
    randomize_lora(pm)
    return pm


def _merged_oracle(pm, op) -> torch.Tensor:
    """The operator's matrix (rows x n_in) from a deep copy that PEFT merged itself."""
    merged = copy.deepcopy(pm).merge_and_unload()
    name = op.name.replace(".base_layer", "")
    owner = merged.get_submodule(name.rsplit(".", 1)[0])
    w = merged.get_parameter(name).detach()
    if isinstance(owner, torch.nn.Conv2d):
        return conv_oracle(w, owner.groups)
    return w.t() if type(owner).__name__ == "Conv1D" else w


def _base(op) -> torch.Tensor:
    return op._lora.base.weight.detach().clone()


def _lora_ops(pm):
    return [op for op in resolve(pm).operators if op.kind == "lora"]


CASES = {
    "linear": (conv_net, {"target_modules": ["fc"]}, 1),
    "conv2d": (conv_net, {"target_modules": ["conv"]}, 1),
    "gpt2-conv1d": (tiny_gpt2, {"target_modules": ["c_attn", "c_fc"], "fan_in_fan_out": True}, 4),
    "llama-dora": (tiny_llama, {"target_modules": ["q_proj", "down_proj"], "use_dora": True}, 4),
}


@pytest.mark.parametrize("case", list(CASES))
def test_effective_weight_equals_peft_merge(case):
    """Every LoRA operator reads W + sum s B A (DoRA: rescaled rows) exactly as PEFT's merge_and_unload merges
    it, and that differs from the base weight (the adapters are not zero)."""
    build, cfg, n = CASES[case]
    pm = _peft(build(), **cfg)
    ops = _lora_ops(pm)
    assert len(ops) == n
    for k, op in enumerate(ops):
        oracle = _merged_oracle(pm, op)
        assert not torch.allclose(oracle, _base_view(op), atol=1e-4)
        torch.testing.assert_close(op.columns(0, op.n_in), oracle, rtol=1e-5, atol=1e-6)
        rs = np.random.RandomState(k)
        rows = rs.choice(op.n_rows, min(5, op.n_rows), replace=False)
        cols = rs.choice(op.n_in, min(3, op.n_in), replace=False)
        want = oracle[torch.as_tensor(rows)][:, torch.as_tensor(cols)]
        torch.testing.assert_close(op.gather(rows, cols), want, rtol=1e-5, atol=1e-6)


def _base_view(op) -> torch.Tensor:
    """The base layer's weight as the operator's rows x n_in (oracle layout)."""
    base = op._lora.base
    w = base.weight.detach()
    if isinstance(base, torch.nn.Conv2d):
        return conv_oracle(w, base.groups)
    return w.t() if type(base).__name__ == "Conv1D" else w


class _LargestTensor(TorchFunctionMode):
    """Records the largest tensor with storage of its own (not a view of a parameter) that any torch function
    returns while active."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.untyped_storage().data_ptr() not in self.params:
            self.largest = max(self.largest, out.numel())
        return out


@pytest.mark.parametrize("dora", [False, True])
def test_sampled_entries_are_computed_without_the_full_matrix(dora):
    """gather(rows, cols) builds only the sampled block: no tensor as large as the full effective matrix is
    ever produced (DoRA needs the sampled rows' norms: at most rows x n_in)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96))
    pm = _peft(model, target_modules=["0"], use_dora=dora)
    (op,) = _lora_ops(pm)
    rows, cols = np.array([3, 50, 7, 90]), np.array([1, 60, 33])
    spy = _LargestTensor(pm)
    with spy:
        got = op.gather(rows, cols)
    assert tuple(got.shape) == (4, 3)
    assert spy.largest <= (4 * 64 if dora else 96) < 96 * 64
    torch.testing.assert_close(got, _merged_oracle(pm, op)[rows][:, cols], rtol=1e-5, atol=1e-6)


def test_nothing_is_merged_into_the_model():
    """Building the network leaves the base weights, the merge state and the model's output unchanged."""
    pm = _peft(tiny_llama(), target_modules=["q_proj", "v_proj"])
    ids = torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before_out = pm(input_ids=ids).logits
    layer = pm.base_model.model.model.layers[0].self_attn.q_proj
    before = layer.base_layer.weight.detach().clone()
    build_network(pm, neurons_per_layer=8)
    build_network(pm, full=True).n_edges  # noqa: B018 - reads every effective weight
    assert torch.equal(layer.base_layer.weight, before) and not layer.merged
    with torch.no_grad():
        torch.testing.assert_close(pm(input_ids=ids).logits, before_out, rtol=0, atol=0)


def test_merged_adapters_are_not_added_twice():
    """After merge_adapter() the base weight already holds the adapter: the operator equals the merged weight
    (not base + 2 s B A); after unmerge_adapter() it still does."""
    pm = _peft(conv_net(), target_modules=["fc"])
    (op,) = _lora_ops(pm)
    oracle = _merged_oracle(pm, op)
    pm.merge_adapter()
    assert op._lora.layer.merged
    torch.testing.assert_close(op.columns(0, op.n_in), oracle, rtol=1e-5, atol=1e-6)
    pm.unmerge_adapter()
    torch.testing.assert_close(op.columns(0, op.n_in), oracle, rtol=1e-5, atol=1e-6)


def test_disabled_adapters_read_the_base_weight():
    """Inside disable_adapter() the model runs the base layer alone, and the operator reads the base weight."""
    model = conv_net()
    base = model.fc.weight.detach().clone()
    pm = _peft(model, target_modules=["fc"])
    (op,) = _lora_ops(pm)
    with pm.disable_adapter():
        torch.testing.assert_close(op.columns(0, op.n_in), base, rtol=0, atol=0)
    assert not torch.allclose(op.columns(0, op.n_in), base, atol=1e-4)


def test_network_of_peft_model_equals_network_of_merged_copy():
    """End to end: the sampled network of a LoRA model has the distances of its merged copy (same seed)."""
    pm = _peft(tiny_llama(), target_modules=["q_proj", "up_proj", "o_proj"])
    merged = copy.deepcopy(pm).merge_and_unload()
    a = build_network(pm, neurons_per_layer=8, seed=2)
    b = build_network(merged, neurons_per_layer=8, seed=2)
    assert [x.columns.tolist() for x in a.blocks] == [x.columns.tolist() for x in b.blocks]
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-5)


@pytest.mark.parametrize(
    ("cfg", "variant"),
    [
        ({"target_modules": ["conv"], "use_dora": True}, "DoraConv2dVariant"),
        ({"target_modules": ["fc"], "alora_invocation_tokens": [1, 2]}, "ALoraLinearVariant"),
    ],
    ids=["dora-conv2d", "alora-linear"],
)
def test_unsupported_adapter_variant_is_a_clear_error(cfg, variant):
    """An adapter variant without an effective-weight rule raises ValueError naming it and the remedy."""
    pm = get_peft_model(conv_net(), LoraConfig(r=2, **cfg))
    with pytest.raises(ValueError) as err:
        resolve(pm)
    msg = str(err.value)
    assert variant in msg and "not supported" in msg and "merge_and_unload" in msg and len(msg) < 300


def test_lora_on_an_embedding_is_skipped_as_an_embedding():
    """LoRA on embed_tokens (a common PEFT target) leaves the embedding out, as without PEFT."""
    pm = _peft(tiny_llama(), target_modules=["embed_tokens", "q_proj"])
    layout = resolve(pm)
    assert all("embed_tokens" not in op.name for op in layout.operators)
    assert len(layout.node_sets) == 8
