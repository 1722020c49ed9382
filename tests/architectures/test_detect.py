"""Unwrapping and presets: the same network whatever wraps the model, and presets only where they fit."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from neuromfa_callback import build_network
from neuromfa_callback.architectures import resolve
from tests.architectures._helpers import tiny_gpt_neox, tiny_llama

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


class Holder(pl.LightningModule):
    """A LightningModule holding the model (and a loss), with no forward of its own."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = torch.nn.CrossEntropyLoss()


def _peft(model: torch.nn.Module) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj", "down_proj"]))


# (wrap, module=, expected Layout.path, prefix of every name relative to the wrapper)
WRAPS = {
    "compile": (torch.compile, None, "_orig_mod", ""),
    "peft": (_peft, None, "base_model.model", ""),
    "dataparallel": (torch.nn.DataParallel, None, "module", ""),
    "lightning": (Holder, None, "model", ""),  # a LightningModule holding one model: looked through
    "lightning+module": (Holder, "model", "model", ""),
    "lightning+compile+module": (lambda m: Holder(torch.compile(m)), "model", "model._orig_mod", ""),
}


@pytest.fixture(scope="module")
def llama():
    model = tiny_llama()
    return model, build_network(model, neurons_per_layer=8, seed=1)


def _wrapped(model, case):
    """A fresh copy of ``model`` in the wrapper (PEFT replaces layers in place)."""
    wrap, module, path, prefix = WRAPS[case]
    return wrap(copy.deepcopy(model)), module, path, prefix


@pytest.mark.parametrize("case", list(WRAPS))
def test_same_distances_through_wrappers(llama, case):
    """compile, PEFT (adapters at init: B = 0, so effective = base), DataParallel, a LightningModule (with or
    without module=): the same nodes, out-edges and distances as the bare model, bit for bit."""
    model, plain = llama
    wrapped, module, path, _ = _wrapped(model, case)
    net = build_network(wrapped, neurons_per_layer=8, seed=1, module=module)
    assert [b.columns.tolist() for b in net.blocks] == [b.columns.tolist() for b in plain.blocks]
    np.testing.assert_array_equal(net.indptr, plain.indptr)
    np.testing.assert_array_equal(net.distances, plain.distances)
    assert net.depth_names == plain.depth_names


@pytest.mark.parametrize(
    "case",
    list(WRAPS),
)
def test_layout_path_through_wrappers(llama, case):
    """Layout.path says where the analysed module sits in the object passed (the attribute path)."""
    wrapped, module, path, _ = _wrapped(llama[0], case)
    layout = resolve(wrapped, module=module)
    assert layout.path == path
    assert layout.model is (wrapped.get_submodule(path) if path else wrapped)


@pytest.mark.parametrize(
    "case",
    list(WRAPS),
)
def test_same_node_set_names_through_wrappers(llama, case):
    """Node set names are the bare model's, through every wrapper (a LightningModule holding one model too)."""
    model, plain = llama
    wrapped, module, _, prefix = _wrapped(model, case)
    net = build_network(wrapped, neurons_per_layer=8, seed=1, module=module)
    assert [b.names for b in net.blocks] == [tuple(prefix + n for n in b.names) for b in plain.blocks]


def test_peft_gpt_neox_keeps_the_reference_preset():
    """get_peft_model(pythia, LoraConfig()) (PEFT's default targets: query_key_value) is still analysed with the
    reference's sampling, and at init (B = 0) gives the bare model's network."""
    from peft import LoraConfig, get_peft_model

    model = tiny_gpt_neox()
    plain = build_network(model, neurons_per_layer=8, seed=0)
    pm = get_peft_model(model, LoraConfig(r=2))
    assert resolve(pm).family == "gpt_neox"
    net = build_network(pm, neurons_per_layer=8, seed=0)
    np.testing.assert_array_equal(net.distances, plain.distances)


@pytest.mark.parametrize("wrap", [torch.compile, Holder, torch.nn.DataParallel], ids=["compile", "lightning", "dp"])
def test_gpt_neox_preset_found_through_wrappers(wrap):
    """auto picks the gpt_neox preset for a GPT-NeoX inside any wrapper."""
    assert resolve(wrap(tiny_gpt_neox())).family == "gpt_neox"


def test_gpt_neox_preset_on_llama_is_refused():
    """architecture='gpt_neox' on a Llama raises a ValueError that says why and what to use instead."""
    with pytest.raises(ValueError) as err:
        resolve(tiny_llama(), "gpt_neox")
    msg = str(err.value)
    assert msg.startswith("architecture='gpt_neox':") and "architecture='generic'" in msg and len(msg) < 300
    assert "q_proj" in msg  # names the node set that does not fit


def test_generic_on_gpt_neox_samples_s_rows_per_operator():
    """architecture='generic' on GPT-NeoX: S rows of every operator (qkv too), where the reference preset
    samples 3S qkv rows (t, t+F, t+2F) and 2S rows of dense_h_to_4h."""
    model = tiny_gpt_neox()
    generic = build_network(model, neurons_per_layer=8, seed=0, architecture="generic")
    preset = build_network(model, neurons_per_layer=8, seed=0)
    assert (generic.family, preset.family) == ("generic", "gpt_neox")
    assert [len(b.rows[0]) for b in generic.blocks] == [8] * 8
    assert [len(b.rows[0]) for b in preset.blocks] == [24, 8, 16, 8] * 2
    assert [b.names for b in generic.blocks] == [b.names for b in preset.blocks]


def test_not_a_module():
    """Anything but an nn.Module is a TypeError naming the type."""
    with pytest.raises(TypeError, match=r"Expected `model` to be a torch.nn.Module, got dict"):
        build_network({})
