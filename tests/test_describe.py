"""describe(): the node sets with their depths and sizes, every parameter (analysed or why not), the coverage."""

from __future__ import annotations

import re

import pytest
import torch

from neuromfa_callback import describe
from tests.architectures._helpers import (
    lightning_transformer,
    tiny_bert,
    tiny_gpt2,
    tiny_gpt_neox,
    tiny_llama,
    tiny_mixtral,
    tiny_nanogpt,
    tiny_resnet,
    tiny_t5,
)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)


def _by_name(d):
    return {m.name: m for m in d}


def _table_rows(text: str) -> list[list[str]]:
    """The node-set table of str(describe(...)): cells split on runs of 2+ spaces."""
    lines = text.splitlines()
    start = lines.index("") + 2  # header line, blank line, column titles
    stop = lines.index("", start)
    return [re.split(r"\s{2,}", line) for line in lines[start:stop]]


def test_every_parameter_listed_in_order_under_its_own_name():
    """describe lists every parameter of the (unwrapped) model once, in named_parameters order, with the names
    of the bare model even through torch.compile."""
    model = tiny_llama()
    d = describe(torch.compile(model))
    assert d.path == "_orig_mod"
    assert [m.name for m in d] == [n for n, _ in model.named_parameters()]
    assert [m.shape for m in d] == [tuple(p.shape) for p in model.parameters()]


def test_analysed_parameters_carry_depth_and_node_set():
    """A projection that shares its input with others is listed with its depth and the fused node-set name."""
    info = _by_name(describe(tiny_llama()))
    k = info["model.layers.1.self_attn.k_proj.weight"]
    assert (k.used, k.depth, k.shape) == (True, 1, (16, 64))
    assert k.node_set == "model.layers.1.self_attn.{q_proj,k_proj,v_proj}.weight"
    assert str(k) == f"model.layers.1.self_attn.k_proj.weight 16x64: depth 1 (node set {k.node_set})"
    down = info["model.layers.0.mlp.down_proj.weight"]
    assert (down.used, down.depth, down.node_set) == (True, 0, "model.layers.0.mlp.down_proj.weight")


@pytest.mark.parametrize(
    ("build", "skipped"),
    [
        (tiny_gpt2, {"transformer.wpe.weight": "embedding", "lm_head.weight": "unembedding (output embedding)",
                     "transformer.h.0.ln_1.bias": "bias", "transformer.h.0.attn.c_attn.bias": "bias"}),
        (tiny_llama, {"model.norm.weight": "norm", "model.embed_tokens.weight": "embedding",
                      "lm_head.weight": "unembedding (output embedding)"}),
        (tiny_bert, {"embeddings.LayerNorm.weight": "norm", "embeddings.word_embeddings.weight": "embedding",
                     "encoder.layer.0.attention.output.LayerNorm.bias": "bias"}),
        (tiny_nanogpt, {"lm_head.weight": "unembedding (tied to wte.weight)", "wpe.weight": "embedding",
                        "h.0.0.weight": "norm"}),
    ],
    ids=["gpt2", "llama", "bert", "nanogpt"],
)
def test_skip_reasons(build, skipped):
    """Every parameter not analysed carries a specific reason (bias, norm, embedding, unembedding ...)."""
    d = describe(build())
    info = _by_name(d)
    for name, reason in skipped.items():
        assert (info[name].used, info[name].reason, info[name].depth) == (False, reason, None)
    assert all(m.reason == f"node set {m.node_set}" for m in d.used)


def test_node_set_table_lists_depth_name_and_sizes():
    """The table has one row per node set: its depth (index and block), its name, its input neurons and its
    out-edge slots per node (the out-dimensions of its operators, summed), computed here from the parameters."""
    model = tiny_llama()
    d = describe(model)
    rows = _table_rows(str(d))
    assert len(rows) == len(d.node_sets) == 8
    p = dict(model.named_parameters())
    for row, ns in zip(rows, d.node_sets):
        first = p[ns.names[0]]
        want_out = sum(p[n].shape[0] for n in ns.names)
        assert row == [f"{ns.depth} model.layers.{ns.depth}", ns.name, str(first.shape[1]), str(want_out)]
    assert rows[0] == ["0 model.layers.0", "model.layers.0.self_attn.{q_proj,k_proj,v_proj}.weight", "64", "96"]


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt_neox], ids=["llama", "gpt_neox"])
def test_full_coverage_of_decoders(build):
    """Every >= 2-D weight of a Llama / GPT-NeoX but the embeddings and the unembedding is analysed: coverage
    1.0, over exactly those elements (counted here from the parameters)."""
    model = build()
    d = describe(model)
    head = model.get_output_embeddings().weight
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    considered = sum(p.numel() for p in model.parameters() if p.ndim >= 2 and id(p) not in embeds and p is not head)
    assert d.considered_elements == considered
    assert d.coverage == 1.0


class WithUnused(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.spare = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_an_operator_the_forward_pass_never_calls_is_covered_and_reported():
    """An operator the observed forward pass never calls is still analysed (grouped by structure): coverage 1.0,
    and the report says how many node sets were grouped that way and how to observe them."""
    d = describe(WithUnused())
    assert d.coverage == 1.0
    spare = _by_name(d)["spare.weight"]
    assert spare.used and spare.reason == "node set spare.weight"
    assert "1 node sets were not called in the observed forward pass" in str(d) and "example_input=" in str(d)


class Raw(torch.nn.Module):
    """A layer holding a raw 3-D weight (XLNet-style): not a weight operator, so not covered."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.w = torch.nn.Parameter(torch.randn(8, 2, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,ihd->bhd", self.a(x), self.w).flatten(1)


def test_coverage_below_one_for_weights_no_operator_reads():
    """A raw weight no operator type reads: coverage = used / considered elements (64 of 128), with the reason."""
    d = describe(Raw())
    assert d.coverage == pytest.approx(64 / 128)
    raw = _by_name(d)["w"]
    assert (raw.used, raw.reason) == (False, "not a weight operator (Raw)")


TYPICAL = {
    "llama": tiny_llama,
    "gpt_neox": tiny_gpt_neox,
    "gpt2": tiny_gpt2,
    "bert": tiny_bert,
    "t5": tiny_t5,
    "mixtral": tiny_mixtral,
    "resnet": tiny_resnet,
    "torch-transformer": lightning_transformer,
}


@pytest.fixture(scope="module")
def reports() -> dict[str, str]:
    return {k: str(describe(build())) for k, build in TYPICAL.items()}


@pytest.mark.parametrize(
    "case",
    [
        c
        if c == "torch-transformer" else c
        for c in TYPICAL
    ],
)
def test_table_lines_fit_120_columns(reports, case):
    """Every table line of the report (node sets and skipped parameters) fits 120 columns for typical models."""
    lines = reports[case].splitlines()[1:]
    assert len(lines) > 5
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)


@pytest.mark.parametrize("case", ["llama", "gpt_neox"])
def test_header_fits_120_columns(reports, case):
    """The report's header fits 120 columns too."""
    assert all(len(line) <= 120 for line in reports[case].splitlines())


class LongNames(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.ModuleDict({LONG: torch.nn.Linear(8, 8)}) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer[LONG](x))
        return x


LONG = "a_projection_with_a_name_long_enough_to_overflow_its_column_of_the_table"


def test_long_names_are_truncated_at_72_characters():
    """A node-set name longer than 72 characters is cut to 69 + '...' in its column; the row fits 120."""
    d = describe(LongNames())
    full = f"layers.0.{LONG}.weight"
    assert len(full) > 72 and d.node_sets[0].name == full
    rows = _table_rows(str(d))
    assert rows[0] == ["0 layers.0", full[:69] + "...", "8", "8"]
    assert all(len(line) <= 120 for line in str(d).splitlines()[2:])


def test_module_selection_names_relative_to_the_part():
    """describe(module=...) lists the parameters of that part only, named relative to it."""
    model = tiny_t5()
    d = describe(model, module="encoder")
    assert [m.name for m in d] == [n for n, _ in model.encoder.named_parameters()]
    assert {m.depth for m in d.used} == {0, 1}


def test_no_weight_operator_raises():
    """describe raises the same ValueError as build_network on a model without a weight operator."""
    with pytest.raises(ValueError, match="has no weight operator"):
        describe(torch.nn.LayerNorm(4))
