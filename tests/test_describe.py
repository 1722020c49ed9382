"""describe(): which parameters are network matrices, and why the others are not."""

from __future__ import annotations

import pytest
import torch

from neuromfa_callback import describe
from tests.architectures._helpers import tiny_bert, tiny_gpt2, tiny_gpt_neox, tiny_llama, tiny_mlp


def _by_name(d):
    return {m.name: m for m in d}


def test_gpt_neox_table():
    model = tiny_gpt_neox()
    d = describe(torch.compile(model))
    assert d.family == "gpt_neox" and d.path == "_orig_mod"
    assert [m.name for m in d] == [n for n, _ in model.named_parameters()]
    info = _by_name(d)
    qkv = info["gpt_neox.layers.1.attention.query_key_value.weight"]
    assert (qkv.used, qkv.layer, qkv.role, qkv.shape) == (True, 1, "attention_in", (192, 64))
    assert len(d.used) == 8
    expected = {
        "gpt_neox.embed_in.weight": "embedding",
        "gpt_neox.layers.0.attention.query_key_value.bias": "bias",
        "gpt_neox.layers.0.input_layernorm.weight": "norm",
        "gpt_neox.final_layer_norm.weight": "norm",
        "lm_head.weight": "unembedding",
    }
    for name, reason in expected.items():
        assert (info[name].used, info[name].reason) == (False, reason)
    table = str(d)
    assert table.splitlines()[0] == "gpt_neox model at `_orig_mod`: 8 of 28 parameters are network matrices"
    rows = {line.split()[0]: line.split()[1:5] for line in table.splitlines()[3:]}
    assert rows["gpt_neox.layers.0.mlp.dense_4h_to_h.weight"] == ["64x256", "yes", "0", "mlp_out"]
    assert rows["lm_head.weight"] == ["64x64", "no", "unembedding"]
    assert len(rows) == 28


@pytest.mark.parametrize(
    ("build", "used", "skipped"),
    [
        (
            tiny_gpt2,
            8,
            {
                "transformer.wpe.weight": "embedding",
                "lm_head.weight": "unembedding (tied to transformer.wte.weight)",
                "transformer.h.0.ln_1.bias": "bias",
            },
        ),
        (
            tiny_llama,
            14,
            {"model.norm.weight": "norm", "model.embed_tokens.weight": "embedding", "lm_head.weight": "unembedding"},
        ),
        (
            tiny_bert,
            12,
            {
                "pooler.dense.weight": "pooler (task head)",
                "embeddings.LayerNorm.weight": "norm",
                "encoder.layer.0.attention.output.LayerNorm.bias": "bias",
            },
        ),
        (tiny_mlp, 3, {"0.bias": "bias"}),
    ],
    ids=["gpt2", "llama", "bert", "mlp"],
)
def test_skip_reasons(build, used, skipped):
    d = describe(build())
    assert len(d.used) == used
    info = _by_name(d)
    for name, reason in skipped.items():
        assert (info[name].used, info[name].reason) == (False, reason)
    assert all(m.reason.startswith("node set ") for m in d.used)
    assert "not in the" not in str(d)  # every skipped parameter gets a specific reason


def test_fused_groups_share_a_node_set():
    d = _by_name(describe(tiny_llama()))
    k = d["model.layers.0.self_attn.k_proj.weight"]
    assert k.reason == "node set model.layers.0.self_attn.{q_proj,k_proj,v_proj}.weight"
    assert str(k) == f"model.layers.0.self_attn.k_proj.weight 16x64: layer 0 attention_in ({k.reason})"


def test_unsupported_model_raises_the_same_error():
    with pytest.raises(ValueError, match="Unsupported model Conv2d"):
        describe(torch.nn.Conv2d(1, 1, 3))
