"""A zoo of tiny transformers models, built from configs (no hub), for the analysis tests.

``cases()`` lists (mapping, model_type, class_name) over four auto-model mappings; ``build(model_type,
class_name, seed)`` returns ``(model, example_input)`` with ``model(**example_input)`` known to run, or
raises ``ZooSkip(reason)``. ``python -m tests._zoo [--json PATH] [--only NAME ...]`` builds them all.

Shrinking (``tiny_config``): ``AutoConfig.for_model(model_type)`` gives the full-size default config;
configs are dataclasses in transformers 5, so it is rebuilt field by field, recursively on sub-configs:

* integer fields named in ``_GROUPS`` (widths, layers, heads, FFN, positions, experts, ranks, windows,
  vocabularies, image size) are capped at small values;
* per-layer lists (``layer_types``, ``mlp_layer_types`` ...) keep the layers holding the first two of each
  distinct entry, the same layers for every list, and the layer count follows (hybrid models keep one of
  each block kind); lists of layer indices are renumbered; per-stage lists of vision models (``depths``,
  ``hidden_sizes``, ``num_heads``) are scaled stage by stage;
* fields whose class default is ``None`` but which ``__post_init__`` derived (``head_dim``,
  ``rope_parameters`` ...) are reset so they are derived again from the small sizes (kept when not);
* a few relations are restored (Mamba heads x head size = expand x hidden, MLA head_dim = RoPE part,
  KV-sharing layouts), sizes some defaults leave to a checkpoint (``None``) get small values, and special
  token ids above the small vocabulary move to its top;
* ``OVERRIDES[model_type]`` patches what the generic rules get wrong (as fields or ``__post_init__``
  keywords; ``"text_config.x"`` reaches a sub-config).

Building (``build``): the parameters are counted on the meta device first (``ZooSkip`` above
``MAX_PARAMS``), then the model is built on the CPU after ``torch.manual_seed(seed)`` and run on, in turn,
its own ``dummy_inputs`` (where the class defines them), inputs made from ``main_input_name`` and the config
(``example_input``), the same without cache, or with audio features, until one runs.
"""

from __future__ import annotations

import dataclasses
import time

import torch

MAX_PARAMS = 5_000_000
BATCH, SEQ = 2, 16


class ZooSkip(Exception):
    """A case that cannot be built or run on this CPU (the message says why, on one line)."""


def _mappings() -> dict[str, dict]:
    from transformers.models.auto import modeling_auto as ma

    return {
        "causal_lm": ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        "masked_lm": ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        "seq2seq": ma.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
        "image_classification": ma.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    }


MAPPINGS = _mappings()


def cases() -> list[tuple[str, str, str]]:
    """(mapping, model_type, class_name) of every entry (first class of a tuple)."""
    out = []
    for mapping, names in MAPPINGS.items():
        for model_type, cls in names.items():
            out.append((mapping, model_type, cls[0] if isinstance(cls, (tuple, list)) else cls))
    return out


# ----------------------------------------------------------------------------------------- config
_GROUPS = [  # (small value, the config fields that get it: capped, never grown)
    (64, (  # widths
        "hidden_size d_model n_embd embed_dim dim emb_dim embedding_dim word_embed_proj_dim true_hidden_size "
        "embedding_size input_embedding_size output_embedding_size hidden_size_global attention_hidden_size "
        "lru_width projection_dim projection_size d_latents cross_attention_hidden_size out_hidden_size "
        "backbone_hidden_size vision_output_dim projector_input_dim projector_output_dim encoder_hidden_size "
        "output_dim input_dim audio_hidden_size adapter_in_dim adapter_out_dim adapter_input_size "
        "hidden_size_per_layer_input ple_embed_dim router_hidden_size pooler_hidden_size pooler_output_size "
        "unit_embed_dim lang_embed_dim spkr_embed_dim entity_emb_size prediction_head_size intra_bottleneck_size "
        "decoder_hidden_size ext_pw_out_channel depthwise_separable_out_channel nemo_conv_channels "
        "num_position_embeddings"
    )),
    (2, (  # depths
        "num_hidden_layers num_layers n_layer n_layers encoder_layers decoder_layers num_encoder_layers "
        "num_decoder_layers speech_encoder_layers t2u_encoder_layers t2u_decoder_layers depth num_blocks "
        "num_layers_per_stack num_self_attends_per_block"
    )),
    (4, (  # heads
        "num_attention_heads n_head n_heads encoder_attention_heads decoder_attention_heads num_heads "
        "attention_heads num_encoder_attention_heads num_decoder_attention_heads swa_num_attention_heads "
        "speech_encoder_attention_heads t2u_encoder_attention_heads t2u_decoder_attention_heads index_n_heads "
        "linear_num_heads linear_num_key_heads linear_num_value_heads num_filters"
    )),
    ('kv', "num_key_value_heads num_kv_heads swa_num_key_value_heads"),  # 4, or 2 where the config had GQA
    (16, (  # per head, state sizes
        "head_dim d_head d_kv dim_head attention_head_dim attention_head_size kv_channels swa_head_dim "
        "linear_key_head_dim linear_value_head_dim linear_head_dim index_head_dim mamba_d_head mamba_head_dim "
        "mamba_headdim qk_nope_head_dim v_head_dim state_size mamba_d_state ssm_state_size kv_lora_rank "
        "o_lora_rank sliding_window_size chunk_size mamba_chunk_size num_patches"
    )),
    (128, (  # FFN widths, positions
        "intermediate_size d_ff ffn_dim encoder_ffn_dim decoder_ffn_dim n_inner dim_ff dff d_inner "
        "feed_forward_size ffn_hidden_size intermediate_size_mlp mlp_dim speech_encoder_intermediate_size "
        "t2u_encoder_ffn_dim t2u_decoder_ffn_dim dense_intermediate_size shared_intermediate_size hidden_dim "
        "max_position_embeddings n_positions n_ctx max_seq_len max_target_positions context_length "
        "max_encoder_position_embeddings max_decoder_position_embeddings t2u_max_position_embeddings "
        "left_max_position_embeddings max_2d_position_embeddings max_source_positions"
    )),
    (4, "num_experts num_local_experts n_routed_experts moe_num_experts"),  # mixtures of experts
    (2, (  # experts per token, sparse-layer steps
        "num_experts_per_tok moe_topk num_experts_per_token top_k moe_k zero_expert_num encoder_sparse_step "
        "decoder_sparse_step"
    )),
    (1, (  # expert groups, dense layers before the MoE ones
        "n_group topk_group first_k_dense_replace num_dense_layers num_sparse_encoder_layers "
        "num_sparse_decoder_layers n_input_layers n_output_layers"
    )),
    (32, (  # expert and LoRA widths
        "moe_intermediate_size expert_ffn_hidden_size shared_expert_intermediate_size expert_intermediate_size "
        "moe_shared_expert_intermediate_size shared_experts_intermediate_size q_lora_rank downsample_hidden_size"
    )),
    (8, (  # ranks, windows
        "qk_rope_head_dim time_step_rank mamba_dt_rank laurel_rank embedding_rank adapter_rank hc_lowrank "
        "gated_norm_rank loop_gate_rank sliding_window attention_window attention_chunk_size local_attention "
        "rotary_dim index_topk num_latents local_attention_window_len"
    )),
    (256, (  # vocabularies
        "vocab_size decoder_vocab_size src_vocab_size tgt_vocab_size t2u_vocab_size char_vocab_size "
        "audio_vocab_size unit_hifi_gan_vocab_size vocab_size_per_layer_input unpadded_vocab_size "
        "entity_vocab_size pronunciation_vocab_size shape_vocab_size encoder_hash_byte_group_vocab"
    )),
    (32, "image_size"),  # pixels
]
SMALL = {name: v for v, names in _GROUPS for name in names.split()}
LAYER_COUNTS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "decoder_layers", "encoder_layers")
STAGE_LISTS = {
    "depths", "depth", "hidden_sizes", "num_heads", "num_attention_heads", "embed_dims", "embed_dim", "conv_dim",
}
INDEX_LISTS = {
    "cross_attention_layers", "full_attn_idxs", "hybrid_layer_ids", "moe_layers", "mlp_only_layers",
    "attn_layer_indices",
}
TOKEN_SUFFIXES = ("token_id", "token_index", "token_ids")

# model types that cannot run alone
SKIP = {
    "gemma4_assistant": "drafter: its forward needs the target model's shared KV states",
    "gemma4_unified_assistant": "drafter: its forward needs the target model's shared KV states",
}
# per model_type: "field" or "sub_config.field" -> value (a field, or a keyword __post_init__ reads), applied
# after the generic shrinking, where it gets a model wrong
_SWIN = {"patch_size": 2, "window_size": 2}
_ROPE = {"rope_type": "default", "rope_theta": 10000.0}
OVERRIDES: dict[str, dict] = {
    "bamba": {"attn_layer_indices": [1]},  # else no attention layer
    "bit": {"num_groups": 4},  # group norms of the narrow stages
    "cohere_compass_text": {"rope_parameters": {"full_attention": _ROPE}},  # default config: none
    "cvt": {"depth": [1, 2, 3], "embed_dim": [16, 32, 64], "num_heads": [1, 2, 4]},  # stage i needs depth > i
    "dbrx": {"attn_config.rope_theta": 10000.0, "attn_config.clip_qkv": 8.0},  # default config: none
    "doge": {"is_moe": True},  # exercise its expert embeddings
    "donut-swin": _SWIN,
    "dots3_note_text": {
        "swa_num_attention_heads": 4, "swa_num_key_value_heads": 4, "swa_q_lora_rank": 32, "swa_kv_lora_rank": 16,
        "swa_head_dim": 24, "swa_qk_nope_head_dim": 16, "swa_qk_rope_head_dim": 8,
    },
    "efficientnet": {
        "kernel_sizes": [3, 3, 5], "in_channels": [32, 16, 24], "out_channels": [16, 24, 40], "strides": [1, 2, 2],
        "num_block_repeats": [1, 1, 2], "expand_ratios": [1, 6, 6], "width_coefficient": 0.25,
        "depth_coefficient": 1.0, "hidden_dim": 320,
    },
    "esm": {"pad_token_id": 1, "mask_token_id": 2},  # default config: none
    "gemma4_assistant": {"text_config.hidden_size_per_layer_input": 0, "text_config.vocab_size_per_layer_input": 0},
    "gemma4_text": {"global_head_dim": 32},
    "gemma4_unified_text": {"global_head_dim": 32},
    "got_ocr2": {"vision_config.output_channels": 64},
    "gpt_neo": {"attention_types": [[["global", "local"], 1]], "num_layers": 2},  # types x repeats = layers
    "granitemoehybrid": {"layer_types": ["linear_attention", "full_attention"]},  # default: Mamba only
    "hgnet_v2": {
        "stem_channels": [3, 8, 8], "stage_in_channels": [8, 16, 32, 64], "stage_mid_channels": [8, 16, 32, 64],
        "stage_out_channels": [16, 32, 64, 128], "stage_num_blocks": [1, 1, 1, 1], "stage_numb_of_layers": [2] * 4,
        "hidden_sizes": [16, 32, 64, 128],
    },
    "lfm2_moe": {"layer_types": ["conv", "full_attention", "conv"], "num_hidden_layers": 3},  # default: none
    "mobilebert": {"embedding_size": 32, "intra_bottleneck_size": 32, "true_hidden_size": 32},  # < hidden
    "mobilenet_v1": {"depth_multiplier": 0.25},
    "mobilenet_v2": {"depth_multiplier": 0.25},
    "mobilevit": {"neck_hidden_sizes": [8, 16, 24, 32, 40, 48, 64]},
    "mobilevitv2": {"image_size": 64, "width_multiplier": 0.25},  # 32 px vanish before the last stage
    "pp_lcnet": {"scale": 0.25, "class_expand": 64},
    "qwen4_exp_text": {  # default config: no sparse-attention indexer sizes
        "indexer_n_heads": 4, "indexer_kv_heads": 1, "indexer_head_dim": 16, "indexer_budget": 8,
        "indexer_compress_ratio": 4,
    },
    "recurrent_gemma": {"num_hidden_layers": 3},  # block pattern recurrent, recurrent, attention
    "reformer": {
        "axial_pos_shape": [4, 4], "axial_pos_embds_dim": [32, 32], "local_attn_chunk_length": 4,
        "lsh_attn_chunk_length": 4, "num_buckets": 2,
    },
    "shieldgemma2": {"yes_token_index": 10, "no_token_index": 11},  # read with getattr defaults > vocab
    "swin": _SWIN,
    "swinv2": _SWIN,
    "textnet": {"hidden_sizes": [8, 8, 16, 32, 64], "stem_out_channels": 8, "image_size": [32, 32]},
}
for _vlm in ("qwen4_exp", "dots3_note", "gemma4", "gemma4_unified"):
    OVERRIDES[_vlm] = {f"text_config.{k}": v for k, v in OVERRIDES[_vlm + "_text"].items()}


def _get(cfg, name, default=None):
    try:
        return getattr(cfg, name)
    except Exception:  # missing, or per-layer (heterogeneous) attributes that refuse global access
        return getattr(cfg, "__dict__", {}).get(name, default)


def _small(name: str, v, heads: int | None):
    """The small value of field ``name`` (``v`` unchanged when the table does not know it)."""
    if isinstance(v, bool) or not isinstance(v, int) or name not in SMALL:
        return v
    t = SMALL[name]
    if t == "kv":
        return 4 if heads is None or v >= heads else 2
    if t == 4 and v == 3:
        return 4
    return min(v, t)


def _shrink_stages(name: str, v: list) -> list:
    """Per-stage lists of vision models: 1 block per stage, widths / 2^k, heads from 1."""
    if name.startswith("depth"):
        return [1] * len(v)
    if name.startswith(("hidden_size", "embed_dim", "conv_dim")):
        s = max(1, max(v) // 64)
        return [max(8, x // s) for x in v]
    return [max(1, x // v[0]) for x in v]


def _layer_plan(cfg, fields) -> tuple[int | None, list[int]]:
    """(old number of layers, the layers kept: the first two of each distinct per-layer entry, <= 8)."""
    if isinstance(_get(cfg, "depths"), (list, tuple)):  # a staged vision model: its lists are per stage
        return None, []
    old = next((v for k in LAYER_COUNTS if isinstance(v := _get(cfg, k), int) and not isinstance(v, bool)), None)
    if not old or old <= 2:
        return old, list(range(old or 0))
    first, second = [0], [1]
    for f in fields:
        v = _get(cfg, f.name)
        if isinstance(v, (list, tuple)) and len(v) == old and f.name not in INDEX_LISTS | STAGE_LISTS:
            seen: dict[str, int] = {}
            for i, x in enumerate(v):
                seen[repr(x)] = seen.get(repr(x), 0) + 1
                if seen[repr(x)] <= 2:
                    (first if seen[repr(x)] == 1 else second).append(i)
        elif f.name in INDEX_LISTS and isinstance(v, (list, tuple)) and v:
            first.append(min(v))
        elif f.name == "per_layer_config" and isinstance(v, dict) and v:
            first.append(min(int(i) for i in v))
    keep = list(dict.fromkeys(first + second))[:8]
    return old, sorted(keep)


def _shrink(cfg, moved: dict, overrides: dict):
    """A new config of the same class with small sizes (recursive on sub-configs)."""
    from transformers import PretrainedConfig

    cls = type(cfg)
    fields = dataclasses.fields(cls)
    old_layers, keep = _layer_plan(cfg, fields)
    heads = _get(cfg, "num_attention_heads")
    heads = heads if isinstance(heads, int) else None
    kw: dict = {}
    reset: dict = {}
    for f in fields:
        name, v = f.name, _get(cfg, f.name, dataclasses.MISSING)
        if v is dataclasses.MISSING:
            continue
        per_layer = isinstance(v, (list, tuple)) and old_layers and old_layers > 2 and len(v) == old_layers
        if isinstance(v, PretrainedConfig):
            sub = {k[len(name) + 1 :]: x for k, x in overrides.items() if k.startswith(name + ".")}
            v = _shrink(v, moved, sub)
        elif isinstance(v, (list, tuple)) and v and name in STAGE_LISTS and all(isinstance(x, int) for x in v):
            v = type(v)(_shrink_stages(name, list(v)))
        elif per_layer:
            v = type(v)(_small(name, v[i], heads) for i in keep)
        elif name == "embed_dim" and isinstance(v, int) and old_layers is None and keep == []:
            v = min(v, 16)  # staged vision models: widths double at every stage
        elif name in INDEX_LISTS and isinstance(v, (list, tuple)):
            v = type(v)(j for j, i in enumerate(keep) if i in v)
        elif name == "per_layer_config" and isinstance(v, dict):
            v = {j: {k: _small(k, x, heads) for k, x in v[i].items()} for j, i in enumerate(keep) if i in v}
        elif f.default is None and v is not None:
            reset[name] = _small(name, v, heads)  # derived in __post_init__: derive it again if it can
            v = None
        else:
            v = _small(name, v, heads)
        kw[name] = v
    for k in LAYER_COUNTS:
        if old_layers and old_layers > 2 and kw.get(k) == min(old_layers, SMALL[k]):
            kw[k] = len(keep)
            break
    kw.update({k: v for k, v in overrides.items() if "." not in k})  # fields, or kwargs __post_init__ reads
    _consistent(kw)
    _fix_token_ids(kw, moved)
    new = cls(**kw)
    again = {k: v for k, v in reset.items() if _get(new, k) is None}
    if again:  # not derived after all: keep the (shrunk) value
        _fix_token_ids(again, moved)
        new = cls(**{**kw, **again})
    _fill_missing(new)
    _fix_token_ids(new, moved)  # again: __post_init__ may have derived large ones (lists of EOS ids)
    return new


def _consistent(kw: dict) -> None:
    """Relations between sizes that configs validate (Mamba heads, hybrid layer periods)."""
    hidden = kw.get("hidden_size")
    if isinstance(kw.get("mamba_n_heads"), int) and isinstance(kw.get("mamba_d_head"), int):
        inner = kw.get("mamba_expand", 2) * hidden
        kw["mamba_n_heads"] = inner // kw["mamba_d_head"]
        if isinstance(kw.get("mamba_d_ssm"), int):
            kw["mamba_d_ssm"] = inner
    if all(isinstance(kw.get(k), int) for k in ("num_heads", "head_dim", "expand")) and "n_groups" in kw:
        kw["num_heads"] = kw["expand"] * hidden // kw["head_dim"]  # Mamba-2
    if all(isinstance(kw.get(k), int) for k in ("qk_rope_head_dim", "qk_nope_head_dim", "head_dim")):
        kw["head_dim"] = kw["qk_rope_head_dim"]  # multi-head latent attention: RoPE on the rope part only
        if isinstance(kw.get("qk_head_dim"), int):
            kw["qk_head_dim"] = kw["qk_rope_head_dim"] + kw["qk_nope_head_dim"]
    n = next((kw[k] for k in LAYER_COUNTS if isinstance(kw.get(k), int)), None)
    for p in ("attn_layer", "expert_layer"):
        if isinstance(kw.get(p + "_offset"), int) and n and kw[p + "_offset"] >= n:
            kw[p + "_period"], kw[p + "_offset"] = 2, 1
    types, shared = kw.get("layer_types"), kw.get("num_kv_shared_layers")
    if isinstance(shared, int) and 0 < shared < 1000 and isinstance(types, list) and shared != n:
        distinct = list(dict.fromkeys(types))  # KV sharing: the last layers reuse the caches of earlier ones
        if len(types) >= 2 * len(distinct):
            kw["layer_types"] = (distinct * len(types))[: len(types)]
            kw["num_kv_shared_layers"] = len(distinct)


def _fill_missing(cfg) -> None:
    """Sizes some default configs leave to the checkpoint (``None``): give them small values."""
    hidden, heads = _get(cfg, "hidden_size"), _get(cfg, "num_attention_heads")
    fills = {"vocab_size": 256}
    if isinstance(hidden, int) and isinstance(heads, int):
        fills |= {"head_dim": hidden // heads, "num_key_value_heads": heads}
    if any(isinstance(_get(cfg, k), int) for k in ("moe_intermediate_size", "n_routed_experts", "num_experts")):
        fills |= {"num_experts_per_tok": 2, "n_routed_experts": 4, "n_shared_experts": 1}
    for k, v in fills.items():
        if _get(cfg, k, dataclasses.MISSING) is None:
            setattr(cfg, k, v)


def _fix_token_ids(kw, moved: dict) -> None:
    """Special token ids above the small vocabulary move to its top (the same id everywhere)."""
    cfg = None if isinstance(kw, dict) else kw
    if cfg is not None:
        kw = {f.name: _get(cfg, f.name) for f in dataclasses.fields(cfg)}
    vocab = kw.get("vocab_size") if isinstance(kw.get("vocab_size"), int) else SMALL["vocab_size"]

    def move(x):
        if isinstance(x, int) and not isinstance(x, bool) and x >= vocab:
            return moved.setdefault(x, SMALL["vocab_size"] - 1 - len(moved))
        return x

    for k, v in kw.items():
        if k.endswith(TOKEN_SUFFIXES):
            new = type(v)(move(x) for x in v) if isinstance(v, (list, tuple)) else move(v)
            if new != v and cfg is not None:
                setattr(cfg, k, new)
            kw[k] = new


def tiny_config(model_type: str):
    """A small config of ``model_type``: the default config, shrunk (see the module docstring)."""
    from transformers import AutoConfig

    _quiet()
    over = OVERRIDES.get(model_type, {})
    try:
        try:
            base = AutoConfig.for_model(model_type)
        except Exception:  # a default config that does not validate: with the overrides, it may
            kwargs: dict = {}
            for k, v in over.items():
                sub, _, name = k.rpartition(".")
                (kwargs.setdefault(sub, {}) if sub else kwargs)[name] = v
            base = AutoConfig.for_model(model_type, **kwargs)
        return _shrink(base, {}, over)
    except Exception as e:
        raise ZooSkip(f"config: {_oneline(e)}") from e


# ------------------------------------------------------------------------------------------ model
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()  # transformers' own warnings (Python ones: ``build`` ignores them)
    logging.disable_progress_bar()


def _config_for(cls, cfg):
    """The config the class takes: ``cfg`` or one of its sub-configs (a text model of a VLM config)."""
    want = getattr(cls, "config_class", None)
    if want is None or isinstance(cfg, want):
        return cfg
    for k in getattr(cfg, "sub_configs", {}) or {}:
        if isinstance(sub := _get(cfg, k), want):
            return sub
    return cfg


def _oneline(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}"[:160]


def _model_class(class_name: str):
    import transformers

    try:
        return getattr(transformers, class_name)
    except Exception as e:
        raise ZooSkip(f"import: {_oneline(e)}") from e


def _special_ids(cfg, out: set) -> set:
    from transformers import PretrainedConfig

    for f in dataclasses.fields(cfg):
        v = _get(cfg, f.name)
        if isinstance(v, PretrainedConfig):
            _special_ids(v, out)
        elif f.name.endswith(TOKEN_SUFFIXES):
            out.update(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, int))
    return out


def _vocab(cfg) -> int:
    for c in (cfg, _get(cfg, "text_config"), _get(cfg, "decoder"), _get(cfg, "encoder")):
        v = _get(c, "vocab_size") if c is not None else None
        if isinstance(v, int):
            return v
    return 256


def example_input(model, seed: int = 0) -> dict:
    """Inputs for ``model(**...)`` built from ``main_input_name`` and the config."""
    cfg, kind = model.config, type(model).__name__
    g = torch.Generator().manual_seed(seed)
    name = model.main_input_name
    if name == "pixel_values" or (name == "inputs" and "Image" in kind):
        vc = _get(cfg, "vision_config") or cfg
        size, ch, patch = _get(vc, "image_size", 32), _get(vc, "num_channels", 3), _get(vc, "patch_size", 4)
        size = size[0] if isinstance(size, (list, tuple)) else size
        if isinstance(_get(vc, "num_patches"), int):  # NaFlex (SigLIP-2): pre-cut patches and their grid
            side = int(_get(vc, "num_patches") ** 0.5)
            return {
                "pixel_values": torch.randn(BATCH, side * side, ch * patch * patch, generator=g),
                "pixel_attention_mask": torch.ones(BATCH, side * side, dtype=torch.long),
                "spatial_shapes": torch.tensor([[side, side]] * BATCH),
            }
        return {name: torch.randn(BATCH, ch, size, size, generator=g)}
    vocab = _vocab(cfg)
    specials = _special_ids(cfg, set())
    allowed = torch.tensor([i for i in range(3, vocab) if i not in specials])
    rows = BATCH * _get(cfg, "num_codebooks", 1) if "Musicgen" in kind else BATCH  # one row per codebook
    ids = allowed[torch.randint(len(allowed), (rows, SEQ), generator=g)]
    inp = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if getattr(cfg, "is_encoder_decoder", False):
        inp["decoder_input_ids"] = allowed[torch.randint(len(allowed), (BATCH, SEQ // 2), generator=g)]
    if name == "input_features":
        inp[name] = _audio(cfg, g)
    return inp


def _audio(cfg, g) -> torch.Tensor:
    """Log-mel frames aligned with the ``SEQ`` tokens."""
    ac = _get(cfg, "audio_config") or cfg
    return torch.randn(BATCH, _get(ac, "num_mel_bins", 80), SEQ * _get(cfg, "audio_length_per_tok", 1), generator=g)


def _candidates(model, seed: int):
    """Inputs to try in turn: the model's own dummy inputs, ours, ours without cache, ours with audio."""
    import inspect

    from transformers import PreTrainedModel

    if type(model).dummy_inputs is not PreTrainedModel.dummy_inputs:
        yield lambda: dict(model.dummy_inputs)
    ex = example_input(model, seed)
    yield lambda: ex
    params = inspect.signature(model.forward).parameters
    if "use_cache" in params:  # some caches are broken for a few models; the weights do not care
        yield lambda: {**ex, "use_cache": False}
    if "input_features" in params and "input_features" not in ex:
        yield lambda: {**ex, "input_features": _audio(model.config, torch.Generator().manual_seed(seed))}


def _forward(model, inp) -> None:
    with torch.no_grad():
        model(**inp)


def build(model_type: str, class_name: str, seed: int = 0):
    """(model, example_input) of a tiny random ``class_name`` model; raises ``ZooSkip``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _build(model_type, class_name, seed)


def _build(model_type: str, class_name: str, seed: int):
    if model_type in SKIP:
        raise ZooSkip(SKIP[model_type])
    cls = _model_class(class_name)
    cfg = _config_for(cls, tiny_config(model_type))
    if MAPPINGS["causal_lm"].get(model_type) == class_name and isinstance(_get(cfg, "is_decoder"), bool):
        cfg.is_decoder = True  # encoder families (BERT, Reformer ...) as causal LMs
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in cls(cfg).parameters())
    except Exception as e:
        raise ZooSkip(f"build: {_oneline(e)}") from e
    if n > MAX_PARAMS:
        raise ZooSkip(f"too large: {n / 1e6:.1f}M parameters after shrinking")
    torch.manual_seed(seed)
    try:
        model = cls(cfg).float()
        if hasattr(model, "set_default_language"):  # X-MOD: one adapter per language
            model.set_default_language(cfg.languages[0])
    except Exception as e:
        raise ZooSkip(f"build: {_oneline(e)}") from e
    errors = []
    for make in _candidates(model, seed):
        try:
            inp = make()
            _forward(model, inp)
            return model, inp
        except Exception as e:
            errors.append(e)
    raise ZooSkip(f"forward: {_oneline(errors[-1])}") from errors[-1]


# ------------------------------------------------------------------------------------------- main
def run_zoo(only=None) -> list[dict]:
    """Build every case (or those whose mapping / model type is in ``only``), run it once, print a row each."""
    rows = []
    for mapping, model_type, class_name in cases():
        if only and model_type not in only and mapping not in only:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        n, status = 0, "OK"
        try:
            model, _ = build(model_type, class_name)  # its forward ran once there
            n = sum(p.numel() for p in model.parameters())
        except ZooSkip as e:
            status = str(e)
        except Exception as e:  # a bug of ours: show it, don't hide it
            status = f"ERROR {_oneline(e)}"
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        row = {"mapping": mapping, "model_type": model_type, "cls": class_name, "n_params": n, "seconds": dt}
        rows.append({**row, "cpu": cpu, "status": status})
        print(f"{mapping:20s} {model_type:26s} {class_name:42s} {n:8d} {dt:5.2f}s {status}", flush=True)
    return rows


def main(argv=None) -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the rows and totals there")
    ap.add_argument("--only", nargs="*", help="mappings or model types to build (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    rows = run_zoo(args.only)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    totals = {}
    for mapping in MAPPINGS:
        r = [x for x in rows if x["mapping"] == mapping]
        ok = sum(x["status"] == "OK" for x in r)
        totals[mapping] = {"built": ok, "skipped": len(r) - ok, "seconds": sum(x["seconds"] for x in r)}
        print(f"{mapping:20s} built {ok:4d}  skipped {len(r) - ok:4d}  {totals[mapping]['seconds']:7.1f}s")
    built = sum(x["status"] == "OK" for x in rows)
    print(f"total: {built}/{len(rows)} built in {total:.1f}s wall, {cpu:.1f}s CPU (all threads)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "totals": totals, "total_seconds": total, "cpu_seconds": cpu}, fh, indent=1)


if __name__ == "__main__":
    main()
