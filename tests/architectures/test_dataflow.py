"""Node sets from one forward pass: operators that read the same tensor share their input neurons.

The expected groupings are written out from what each model's code feeds to each projection.
"""

from __future__ import annotations

import pytest
import torch

from neuromfa_callback import build_network
from neuromfa_callback.architectures import resolve
from tests.architectures._helpers import (
    lightning_transformer,
    node_set_names,
    tiny_gpt2,
    tiny_gpt_neox,
    tiny_llama,
    tiny_mixtral,
    tiny_resnet,
    tiny_t5,
)


def _w(prefix: str, *names: str) -> list[str]:
    return [f"{prefix}.{n}.weight" for n in names]


def test_llama_projections_reading_one_norm_output_share_nodes():
    """Llama: q/k/v read one RMSNorm output (one node set), gate/up another; o_proj and down_proj alone."""
    layout = resolve(tiny_llama())
    want = []
    for i in range(2):
        p = f"model.layers.{i}"
        want += [_w(f"{p}.self_attn", "q_proj", "k_proj", "v_proj"), _w(f"{p}.self_attn", "o_proj"),
                 _w(f"{p}.mlp", "gate_proj", "up_proj"), _w(f"{p}.mlp", "down_proj")]
    assert node_set_names(layout) == want
    assert [ns.depth for ns in layout.node_sets] == [0] * 4 + [1] * 4
    assert layout.source == "dummy_inputs"


def test_gpt_neox_four_node_sets_per_block():
    """GPT-NeoX: query_key_value, dense, dense_h_to_4h and dense_4h_to_h each read a different tensor."""
    layout = resolve(tiny_gpt_neox(), "generic")
    want = [[f"gpt_neox.layers.{i}.{r}.weight"] for i in range(2)
            for r in ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")]
    assert node_set_names(layout) == want


def test_t5_cross_attention_keys_and_values_of_all_decoder_layers_share_the_encoder_output():
    """T5: every decoder layer's cross-attention k and v read the encoder output, so all of them form ONE node
    set; each cross-attention q reads its own decoder stream and is a node set alone."""
    sets = node_set_names(resolve(tiny_t5()))
    kv = [f"decoder.block.{i}.layer.1.EncDecAttention.{p}.weight" for i in range(2) for p in "kv"]
    assert kv in sets
    for i in range(2):
        assert [f"decoder.block.{i}.layer.1.EncDecAttention.q.weight"] in sets
        assert _w(f"decoder.block.{i}.layer.0.SelfAttention", "q", "k", "v") in sets
        assert _w(f"encoder.block.{i}.layer.0.SelfAttention", "q", "k", "v") in sets
        assert [f"decoder.block.{i}.layer.1.EncDecAttention.o.weight"] in sets
    assert sum(len(s) for s in sets) == 2 * 6 + 2 * 10  # every projection exactly once
    assert len(sets) == 2 * 4 + 2 * 6 + 1


def test_mixtral_router_and_expert_inputs_share_nodes():
    """Mixtral: the router and every expert's gate_up_proj read the same normalised hidden state (one node
    set); each expert's down_proj reads its own activation (a node set alone)."""
    sets = node_set_names(resolve(tiny_mixtral()))
    for i in range(2):
        p = f"model.layers.{i}.mlp"
        assert [f"{p}.gate.weight", *[f"{p}.experts.gate_up_proj[{e}]" for e in range(4)]] in sets
        for e in range(4):
            assert [f"{p}.experts.down_proj[{e}]"] in sets
        assert _w(f"model.layers.{i}.self_attn", "q_proj", "k_proj", "v_proj") in sets
    assert len(sets) == 2 * (2 + 1 + 4)


def test_torch_transformer_self_and_cross_attention():
    """nn.TransformerEncoder/Decoder (Lightning's demo): self-attention q/k/v share one input; in the decoder's
    cross-attention q reads the decoder stream and k/v of every decoder layer read the encoder memory."""
    sets = node_set_names(resolve(lightning_transformer()))
    enc, dec = "transformer.encoder.layers", "transformer.decoder.layers"
    qkv = [f"in_proj_weight[{p}]" for p in "qkv"]
    for i in range(2):
        assert [f"{enc}.{i}.self_attn.{x}" for x in qkv] in sets
        assert [f"{dec}.{i}.self_attn.{x}" for x in qkv] in sets
        assert [f"{dec}.{i}.multihead_attn.in_proj_weight[q]"] in sets
        assert [f"{dec}.{i}.multihead_attn.out_proj.weight"] in sets
    assert [f"{dec}.{i}.multihead_attn.in_proj_weight[{p}]" for i in range(2) for p in "kv"] in sets


class WithUnused(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.spare = torch.nn.Linear(8, 8)  # registered, never called
        self.b = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_operator_never_called_is_kept_grouped_by_structure():
    """An operator the observed forward pass never calls (a tower the first batch did not use) stays in the
    network, after the observed node sets, grouped by structure and marked as such."""
    layout = resolve(WithUnused())
    assert node_set_names(layout) == [["a.weight"], ["b.weight"], ["spare.weight"]]
    assert layout.node_sets[2].reads.startswith("grouped by structure: not called in the observed forward pass")
    assert layout.node_sets[0].reads == "input of a" and layout.skipped == ()


class Mixer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.o = (torch.nn.Linear(16, 16) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(torch.tanh(self.q(x)) * self.k(x))


class Outer(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.pre, self.inner, self.post = torch.nn.Linear(8, 16), inner, torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.inner(torch.relu(self.pre(x))))


def test_compiled_submodule_gives_the_same_node_sets():
    """A torch.compile'd submodule hides its calls from hooks; the recorder replays it eagerly, so the node
    sets equal the uncompiled model's, and the compiled module still computes the same output."""
    torch.manual_seed(0)
    mixer = Mixer()
    plain = resolve(Outer(mixer))
    model = Outer(torch.compile(mixer, backend="eager"))
    x = torch.randn(3, 8)
    compiled = resolve(model)
    want = [["pre.weight"], ["inner.q.weight", "inner.k.weight"], ["inner.o.weight"], ["post.weight"]]
    assert node_set_names(plain) == node_set_names(compiled) == want
    assert compiled.skipped == ()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.post(mixer(torch.relu(model.pre(x)))))


class Broken(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise RuntimeError("this module needs inputs nobody can guess")


class BrokenAttn(Broken):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (torch.nn.Linear(16, 16) for _ in range(4))


class BrokenMlp(Broken):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
        self.chain = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16))


class BrokenModel(Broken):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.mlp = BrokenAttn(), BrokenMlp()


def test_structural_fallback_when_no_forward_runs():
    """No forward runs (the model and every child raise): siblings of equal input width share nodes (q/k/v and,
    as documented, o), siblings of other widths do not, and nn.Sequential children are never grouped."""
    layout = resolve(BrokenModel())
    assert layout.source == "structure (no forward pass ran)"
    assert node_set_names(layout) == [
        _w("attn", "q", "k", "v", "o"),
        ["mlp.up.weight"],
        ["mlp.down.weight"],
        ["mlp.chain.0.weight"],
        ["mlp.chain.1.weight"],
    ]


def test_structural_fallback_never_groups_operators_of_different_widths():
    """nn.MultiheadAttention(16, kdim=8, vdim=12) run on no guessed input: q, k and v are separate node sets and
    the sampled network builds."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2, kdim=8, vdim=12)
    layout = resolve(mha)
    assert all(len({op.n_in for op in ns.operators}) == 1 for ns in layout.node_sets)
    net = build_network(mha, neurons_per_layer=6)
    assert net.n_nodes == 6 + 6 + 6 + 6


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(y)


def test_example_input_is_used_when_given():
    """The guessed input feeds two different tensors to a and b (two node sets); an example_input feeding the
    same tensor twice makes them one node set, and the layout says where its node sets came from."""
    guessed = resolve(TwoInputs())
    assert node_set_names(guessed) == [["a.weight"], ["b.weight"]]
    x = torch.randn(2, 8)
    given = resolve(TwoInputs(), example_input=(x, x))
    assert node_set_names(given) == [["a.weight", "b.weight"]]
    assert given.source == "example_input"
    kw = resolve(TwoInputs(), example_input={"x": x, "y": x})
    assert node_set_names(kw) == [["a.weight", "b.weight"]]


def test_failing_example_input_raises_naming_it():
    """An example_input the model cannot run on is an error naming `example_input` (not a silent fallback)."""
    with pytest.raises(ValueError, match=r"`example_input` did not run through TwoInputs") as err:
        resolve(TwoInputs(), example_input=torch.randn(2, 5))
    assert len(str(err.value)) < 300


class Tower(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(width, 16)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.proj(x))


class TwoTower(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.vision = Tower(12), Tower(20)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return (self.encoder(text) * self.vision(image)).sum(-1)


def test_module_selects_one_part():
    """module='encoder' analyses that tower alone, named relative to it; the other tower is not looked at."""
    torch.manual_seed(0)
    model = TwoTower()
    layout = resolve(model, module="encoder")
    assert layout.model is model.encoder
    assert node_set_names(layout) == [["proj.weight"], ["mlp.0.weight"], ["mlp.2.weight"]]
    assert layout.source.startswith("guessed input: float batch (2, 12)")
    by_callable = resolve(model, module=lambda m: m.vision)
    assert node_set_names(by_callable) == [["proj.weight"], ["mlp.0.weight"], ["mlp.2.weight"]]
    assert by_callable.operators[0].n_in == 20


def test_module_path_is_the_attribute_path():
    """Layout.path of module='encoder' is 'encoder' (describe prints it as where the analysed module sits)."""
    assert resolve(TwoTower(), module="encoder").path == "encoder"


def test_model_without_weight_operator():
    """No weight operator: ValueError under 300 characters saying what was found and how to pick a part."""
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4))
    with pytest.raises(ValueError) as err:
        resolve(model)
    msg = str(err.value)
    assert len(msg) < 300
    assert "no weight operator" in msg and "Embedding" in msg and "LayerNorm" in msg and "`module=`" in msg


def _long_named_norms() -> torch.nn.Module:
    root = type("SomeRatherLongModelNameForConditionalGeneration", (torch.nn.Module,), {})()
    for i in range(6):
        kind = type(f"CustomScalingNormalisationLayerNumber{i}", (torch.nn.Module,), {})
        child = kind()
        child.scale = torch.nn.Parameter(torch.ones(4))
        root.add_module(f"n{i}", child)
    return root


def test_model_without_weight_operator_keeps_the_remedy_with_long_type_names():
    """However long the type names, the message stays under 300 characters AND keeps its remedy."""
    with pytest.raises(ValueError) as err:
        resolve(_long_named_norms())
    msg = str(err.value)
    assert len(msg) < 300 and "`module=`" in msg


class ManyChildren(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for i in range(30):
            self.add_module(f"a_fairly_long_child_name_{i}", torch.nn.Linear(4, 4))


ERRORS = {
    "no-operator": (lambda: resolve(torch.nn.LayerNorm(4)), ValueError),
    "bad-example-input": (lambda: resolve(TwoInputs(), example_input=torch.randn(2, 5)), ValueError),
    "bad-module-path": (lambda: resolve(TwoTower(), module="text_tower"), ValueError),
    "bad-module-path-many-children": (lambda: resolve(ManyChildren(), module="nope"), ValueError),
    "module-callable-returns-non-module": (lambda: resolve(TwoTower(), module=lambda m: 3), TypeError),
    "not-a-module": (lambda: resolve({"w": 1}), TypeError),
    "bad-architecture": (lambda: resolve(TwoTower(), "opt"), ValueError),
    "gpt_neox-on-llama": (lambda: resolve(tiny_llama(), "gpt_neox"), ValueError),
    "gpt_neox-on-resnet": (lambda: resolve(tiny_resnet(), "gpt_neox"), ValueError),
    "sample-too-large-for-preset": (lambda: build_network(tiny_gpt_neox(), neurons_per_layer=200), ValueError),
}




@pytest.mark.parametrize(
    "case", list(ERRORS)
)
def test_every_error_message_is_short(case):
    """Every error of resolve/build_network is raised with a message under 300 characters."""
    call, kind = ERRORS[case]
    with pytest.raises(kind) as err:
        call()
    assert 0 < len(str(err.value)) < 300


def test_resolve_leaves_the_model_as_it_was():
    """The observation forward pass changes nothing: parameters, BatchNorm statistics, training flags, hooks."""
    model = tiny_resnet()
    model.train()
    model.layer1[0].bn1.eval()
    params = {n: p.detach().clone() for n, p in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    resolve(model)
    assert {n: m.training for n, m in model.named_modules()} == flags
    for n, v in model.state_dict().items():
        assert torch.equal(v, params[n]), n
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


class _WrapsGpt2(torch.nn.Module):
    """A model whose own forward no guessed input drives (it needs a ``mode``), holding a GPT-2 and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(48, 4)
        self.lm = tiny_gpt2()

    def forward(self, input_ids: torch.Tensor, mode: str) -> torch.Tensor:
        raise RuntimeError(f"unknown mode {mode}")


def test_fused_projection_pieces_survive_child_by_child_observation():
    """When only the children run (observed one by one and merged), GPT-2's fused c_attn is still sampled
    per piece (q, k, v), as in the GPT-2 observed on its own. Before the fix the merge dropped the pieces."""
    alone = {op.name: op.pieces for ns in resolve(tiny_gpt2()).node_sets for op in ns.operators}
    layout = resolve(_WrapsGpt2())
    wrapped = {op.name.removeprefix("lm."): op.pieces for ns in layout.node_sets for op in ns.operators}
    assert alone["transformer.h.0.attn.c_attn.weight"] == (48, 48, 48)
    assert wrapped == {**alone, "head.weight": None}
