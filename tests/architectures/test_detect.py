"""Detection and unwrapping: the same matrices, under the same names, whatever wraps the model."""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from neuromfa_callback import build_network
from neuromfa_callback.architectures import resolve
from tests.architectures._helpers import tiny_gpt2, tiny_gpt_neox, tiny_mlp


class Holder(pl.LightningModule):
    def __init__(self, **modules: torch.nn.Module) -> None:
        super().__init__()
        for k, v in modules.items():
            setattr(self, k, v)


class DirectMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(20, 30), torch.nn.Linear(30, 20)


class FakeLoraModel(torch.nn.Module):  # PEFT's LoraModel: the HF model under `.model`
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model


class FakePeftModel(torch.nn.Module):  # PEFT's PeftModel: `peft_config` + `base_model.model`
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.peft_config = {"default": None}
        self.base_model = FakeLoraModel(model)


class LoraLinear(torch.nn.Module):
    def __init__(self, base: torch.nn.Linear, adapters: bool) -> None:
        super().__init__()
        self.base_layer = base
        if adapters:
            self.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(base.in_features, 2, bias=False)})


def _same_network(a, b) -> None:
    assert [x.names for x in a.blocks] == [x.names for x in b.blocks]
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.distances, b.distances)


@pytest.fixture(scope="module")
def neox():
    return tiny_gpt_neox()


@pytest.mark.parametrize(
    ("wrap", "path"),
    [
        (lambda m: Holder(model=m, loss=torch.nn.CrossEntropyLoss()), "model"),
        (lambda m: torch.compile(m), "_orig_mod"),
        (lambda m: FakePeftModel(m), "base_model.model"),
        (lambda m: torch.nn.DataParallel(m), "module"),
        (lambda m: Holder(inner=torch.compile(m)), "inner._orig_mod"),
    ],
    ids=["lightning", "compile", "peft", "dataparallel", "lightning+compile"],
)
def test_wrappers_are_looked_through(neox, wrap, path):
    wrapped = wrap(neox)
    layout = resolve(wrapped)
    assert (layout.family, layout.path) == ("gpt_neox", path)
    assert layout.model is neox
    _same_network(build_network(wrapped, neurons_per_layer=8, seed=1), build_network(neox, neurons_per_layer=8, seed=1))


def test_lightning_mlp_attribute_and_direct_layers():
    mlp = tiny_mlp()
    layout = resolve(Holder(net=mlp))
    assert (layout.family, layout.path, layout.model) == ("mlp", "net", mlp)
    layout = resolve(DirectMLP())
    assert (layout.family, layout.path, [g.name for g in layout.groups]) == ("mlp", "", ["fc1.weight", "fc2.weight"])


def test_compiled_mlp():
    mlp = tiny_mlp()
    _same_network(build_network(torch.compile(mlp), neurons_per_layer=8), build_network(mlp, neurons_per_layer=8))


def test_several_models_in_a_lightning_module(neox):
    with pytest.raises(ValueError, match=r"several supported models.*student \(gpt_neox\).*teacher \(gpt2\)"):
        resolve(Holder(student=neox, teacher=tiny_gpt2()))


def test_peft_base_layer_is_read_and_unmerged_lora_is_refused():
    model = tiny_gpt_neox(layers=1)
    attn = model.gpt_neox.layers[0].attention
    base = attn.query_key_value
    attn.query_key_value = LoraLinear(base, adapters=False)
    net = build_network(FakePeftModel(model), neurons_per_layer=8)
    assert net.blocks[0].name == "gpt_neox.layers.0.attention.query_key_value.base_layer.weight"
    attn.query_key_value = LoraLinear(base, adapters=True)
    with pytest.raises(
        ValueError, match=r"un-merged LoRA adapter weights \(gpt_neox\.layers\.0\.attention\.query_key_value\.lora_A"
    ):
        build_network(FakePeftModel(model), neurons_per_layer=8)


def test_unsupported_model_lists_what_was_found():
    convnet = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 30 * 30, 10))
    with pytest.raises(ValueError) as err:
        build_network(convnet)
    msg = str(err.value)
    assert "Unsupported model Sequential" in msg
    assert "Conv2d x1" in msg and "Linear x1" in msg
    assert "0 (8, 3, 3, 3)" not in msg and "2 (10, 7200)" in msg  # linear-like = 2-D weights
    assert "not an MLP: weight-bearing modules other than nn.Linear and norms: 0 (Conv2d)" in msg
    for fam in ("gpt_neox", "gpt2", "llama", "bert", "mlp"):
        assert fam in msg


def test_unsupported_hf_model_type():
    class OPTLike(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = SimpleNamespace(model_type="opt")
            self.fc1 = torch.nn.Linear(4, 4)

    with pytest.raises(
        ValueError, match=r"Unsupported model OPTLike .*config.model_type 'opt'.*fc1 \(4, 4\).*supported families"
    ):
        build_network(OPTLike())


def test_mlp_that_does_not_chain():
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"do not chain: 0 \(8->16\) then 1 \(8->4\)"):
        build_network(m)


def test_explicit_architecture():
    mlp = tiny_mlp()
    assert resolve(mlp, "mlp").family == "mlp"
    with pytest.raises(ValueError, match=r"no gpt2 layers found"):
        build_network(mlp, architecture="gpt2")
    with pytest.raises(ValueError, match=r"Expected `architecture` to be one of .* got 'opt'"):
        build_network(mlp, architecture="opt")
    with pytest.raises(TypeError, match=r"Expected `model` to be a torch.nn.Module, got dict"):
        build_network({})
