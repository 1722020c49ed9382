"""The tiny-model zoo builder (tests/_zoo.py) on a few known model types."""

from __future__ import annotations

import pytest
import torch

from tests._zoo import MAPPINGS, MAX_PARAMS, ZooSkip, build, cases, example_input, tiny_config


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: extra torch threads only spin (several times slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


KNOWN = [
    ("causal_lm", "gpt_neox", "GPTNeoXForCausalLM"),
    ("masked_lm", "bert", "BertForMaskedLM"),
    ("seq2seq", "t5", "T5ForConditionalGeneration"),
    ("image_classification", "vit", "ViTForImageClassification"),
    ("causal_lm", "mixtral", "MixtralForCausalLM"),
]


def test_cases_cover_every_mapping_entry():
    all_cases = cases()
    assert len(all_cases) == sum(len(m) for m in MAPPINGS.values())
    assert set(KNOWN) <= set(all_cases)
    classes = {(m, t): c for m, t, c in all_cases}
    assert classes["image_classification", "deit"] == "DeiTForImageClassification"  # first of a tuple


@pytest.mark.parametrize("mapping,model_type,class_name", KNOWN, ids=[k[1] for k in KNOWN])
def test_build_runs_small(mapping, model_type, class_name):
    model, inp = build(model_type, class_name)
    assert type(model).__name__ == class_name
    n = sum(p.numel() for p in model.parameters())
    assert 0 < n < min(MAX_PARAMS, 1_000_000)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    with torch.no_grad():
        out = model(**inp)
    logits = out.logits
    assert torch.isfinite(logits).all()
    if mapping == "image_classification":
        assert logits.shape == (inp["pixel_values"].shape[0], model.config.num_labels)
    else:
        assert logits.shape[-1] == model.config.vocab_size


def test_tiny_config_is_small():
    cfg = tiny_config("llama")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim) == (64, 2, 4, 16)
    assert cfg.num_key_value_heads == 4 and cfg.intermediate_size == 128 and cfg.vocab_size == 256
    t5 = tiny_config("t5")
    assert (t5.d_model, t5.num_layers, t5.num_decoder_layers, t5.d_ff) == (64, 2, 2, 128)
    assert max(t5.pad_token_id, t5.eos_token_id) < t5.vocab_size


def test_seeded_and_inputs_in_vocabulary():
    a, inp = build("gpt_neox", "GPTNeoXForCausalLM", seed=3)
    b, _ = build("gpt_neox", "GPTNeoXForCausalLM", seed=3)
    c, _ = build("gpt_neox", "GPTNeoXForCausalLM", seed=4)
    wa, wb, wc = (m.gpt_neox.layers[0].attention.query_key_value.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert int(inp["input_ids"].max()) < a.config.vocab_size
    assert example_input(a, seed=3)["input_ids"].shape == inp["input_ids"].shape


def test_moe_experts_are_3d_parameters():
    model, _ = build("mixtral", "MixtralForCausalLM")
    experts = model.model.layers[0].mlp.experts
    assert experts.gate_up_proj.ndim == 3 and experts.gate_up_proj.shape[0] == model.config.num_local_experts == 4
    assert model.config.num_experts_per_tok == 2


def test_skips_say_why():
    with pytest.raises(ZooSkip, match="drafter"):
        build("gemma4_assistant", "Gemma4AssistantForCausalLM")
    with pytest.raises(ZooSkip, match="import"):
        build("gpt2", "NoSuchModelForCausalLM")
