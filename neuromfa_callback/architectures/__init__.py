"""Any model onto node sets: operators by type, node sets by data flow, depths by block.

:func:`resolve` is the one path from a user's model to a :class:`Layout`:

1. Wrappers are looked through (``torch.compile``'s ``_orig_mod``, DDP/DataParallel/FSDP1 ``module``,
   PEFT's ``PeftModel``, a LightningModule whose weights all sit in one attribute), so names are the
   model's own in training and in offline analysis; ``module=`` picks a part (an attribute path or a
   callable).
2. Operators are found by module type (:mod:`.operators`).
3. Node sets come from one forward pass (:mod:`.dataflow`): the training step's own (callbacks), an
   ``example_input=``, a Hugging Face model's ``dummy_inputs`` (or inputs built from its config), or an
   input guessed from the first layer (a token batch for an ``nn.Embedding``, a feature batch for an
   ``nn.Linear``, an image for an ``nn.Conv2d``). Without one, a structural fallback.
4. Depths: every node set belongs to the block its operators sit in, the child of the outermost
   container of repeated blocks (``model.layers.3``, ``encoder.block.0``, ``layer1.0``); depths are
   numbered in forward order.
5. Unembeddings are left out, as in the reference: the output embedding of every Hugging Face model
   (``get_output_embeddings()``: ``lm_head``) and any layer whose weight is an ``nn.Embedding``'s
   weight (tied). Embeddings, norms and biases are not operators (``describe`` lists all of these).
   Operators the observed pass did not call (a vision tower under a text-only batch) are kept, grouped
   by structure.

``architecture``: ``"auto"`` (the ``gpt_neox`` preset for a GPT-NeoX model, the general sampler
otherwise), ``"generic"`` (always the general sampler) or ``"gpt_neox"`` (the reference's exact
sampling; refused for other structures).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from neuromfa_callback._checks import check_choice
from neuromfa_callback.architectures import gpt_neox
from neuromfa_callback.architectures._inputs import discover
from neuromfa_callback.architectures._layout import Layout, NodeSet, Selection, TransformerPlan, generic_sampler
from neuromfa_callback.architectures.dataflow import DataflowRecorder, Observation, structural_keys
from neuromfa_callback.architectures.operators import Operator, find_operators

__all__ = [
    "ARCHITECTURES",
    "DataflowRecorder",
    "Layout",
    "NodeSet",
    "Observation",
    "Operator",
    "Selection",
    "TransformerPlan",
    "find_operators",
    "resolve",
    "select_module",
]

ARCHITECTURES = ("auto", "generic", "gpt_neox")
_WRAPPER_CLASSES = ("DistributedDataParallel", "DataParallel", "FullyShardedDataParallel")
ModuleArg = str | Callable[[torch.nn.Module], torch.nn.Module] | None


def _join(path: str, attr: str) -> str:
    return f"{path}.{attr}" if path and attr else path or attr


def unwrap(model: torch.nn.Module, holders: bool = True) -> tuple[torch.nn.Module, str]:
    """Look through ``torch.compile``, DDP/DataParallel/FSDP1 and PEFT wrappers (and, with ``holders``, a
    LightningModule holding one model); returns ``(module, path)``."""
    path = ""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, torch.nn.Module):
            model, path = inner, _join(path, "_orig_mod")
            continue
        base = getattr(model, "base_model", None)
        if hasattr(model, "peft_config") and isinstance(getattr(base, "model", None), torch.nn.Module):
            model, path = base.model, _join(path, "base_model.model")
            continue
        if type(model).__name__ in _WRAPPER_CLASSES and isinstance(getattr(model, "module", None), torch.nn.Module):
            model, path = model.module, _join(path, "module")
            continue
        holder = _single_holder(model) if holders else None
        if holder is not None:  # a LightningModule holding one model: names as the model's own
            model, path = getattr(model, holder), _join(path, holder)
            continue
        return model, path


def _single_holder(module: torch.nn.Module) -> str | None:
    """For a LightningModule whose operators all sit in ONE child: that child's name (else ``None``)."""
    if not any(c.__name__ == "LightningModule" for c in type(module).__mro__):
        return None
    if any(True for _ in module.parameters(recurse=False)):
        return None
    holders = [n for n, c in module.named_children() if find_operators(c)]
    others = [n for n, c in module.named_children() if n not in holders and any(True for _ in c.parameters())]
    return holders[0] if len(holders) == 1 and not others else None


def select_module(model: Any, module: ModuleArg = None) -> tuple[torch.nn.Module, str]:
    """The analysed module: ``model`` unwrapped, then ``module`` (dotted path or callable) applied.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or ``module`` is neither a str nor a callable.
        ValueError: ``module`` names no submodule.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Expected `model` to be a torch.nn.Module, got {type(model).__name__}")
    if module is None:
        return unwrap(model)
    root, path = unwrap(model, holders=False)  # `module` names a part of what the user passed
    if isinstance(module, str):
        try:
            picked = root.get_submodule(module)
        except AttributeError as err:
            kids = ", ".join(n for n, _ in root.named_children()) or "none"
            raise ValueError(f"Expected `module` to name a submodule of {type(root).__name__}, got {module!r} (children: {kids})"[:299]) from err
        sub, sub_path = unwrap(picked)
        return sub, _join(_join(path, module), sub_path)
    if callable(module):
        picked = module(model)
        if not isinstance(picked, torch.nn.Module):
            raise TypeError(f"Expected `module(model)` to return an nn.Module, got {type(picked).__name__}")
        return unwrap(picked)[0], "<module>"
    raise TypeError(f"Expected `module` to be a dotted attribute path or a callable, got {module!r}")


def _no_operator_error(root: torch.nn.Module) -> ValueError:
    kinds = sorted({type(m).__name__ for m in root.modules() if any(True for _ in m.parameters(recurse=False))})
    return ValueError(
        (
            f"{type(root).__name__} has no weight operator (nn.Linear, Conv1D, nn.Conv*, nn.MultiheadAttention, "
            f"MoE experts, LoRA); pass `module=` to pick a part; weight-holding modules: {', '.join(kinds[:5]) or 'none'}"
        )[:299]
    )


def _excluded(root: torch.nn.Module, found: list[tuple[str, torch.nn.Module, list[Operator]]]) -> dict[int, str]:
    """``id(module) -> reason`` for operator modules that are unembeddings (or tied to an analysed weight)."""
    out: dict[int, str] = {}
    for m in root.modules():
        get = getattr(m, "get_output_embeddings", None)
        if callable(get) and hasattr(m, "config"):
            try:
                head = get()
            except Exception:  # noqa: BLE001 - some heads raise NotImplementedError
                head = None
            if isinstance(head, torch.nn.Module):
                for sub in head.modules():
                    out[id(sub)] = "unembedding (output embedding)"
    embeds = {id(m.weight): n for n, m in root.named_modules() if isinstance(m, torch.nn.Embedding)}
    seen: dict[int, str] = {}
    for path, mod, ops in found:
        if id(mod) in out:
            continue
        for op in ops:
            w = op.stored()
            pid = id(getattr(op._lora.base if op.kind == "lora" else op.module, op.attr))
            if pid in embeds:
                out[id(mod)] = f"unembedding (tied to {embeds[pid]}.weight)"
            elif pid in seen and op.kind != "expert" and op.kind != "mha":
                out[id(mod)] = f"tied to {seen[pid]}"
            seen.setdefault(pid, op.name)
            del w
    return out


def _is_block_container(mod: torch.nn.Module, op_ids: set[int], minimum: int = 2) -> bool:
    """A ``ModuleList``/``Sequential`` holding at least ``minimum`` children of one type with operators in them
    (``minimum=1``: a ``ModuleList`` of a single block, as in a one-layer model)."""
    if not isinstance(mod, (torch.nn.ModuleList, torch.nn.Sequential)):
        return False
    if minimum < 2 and not isinstance(mod, torch.nn.ModuleList):
        return False
    kinds: dict[type, int] = defaultdict(int)
    for child in mod.children():
        holds = any(id(m) in op_ids for m in child.modules() if m is not child)
        if holds or (id(child) in op_ids and minimum >= 2):
            kinds[type(child)] += 1
    return any(n >= minimum for n in kinds.values())


def _block_of(root: torch.nn.Module, path: str, op_ids: set[int]) -> str:
    """The block an operator module at ``path`` belongs to: the child of the outermost container of repeated
    blocks on its path (a single block in a ``ModuleList`` if there are none), else the module itself."""
    parts = path.split(".") if path else []
    for minimum in (2, 1):
        mod = root
        for i in range(len(parts)):
            if _is_block_container(mod, op_ids, minimum):
                return ".".join(parts[: i + 1])
            mod = getattr(mod, parts[i]) if not parts[i].isdigit() else mod[int(parts[i])]
    return path


def _strip(name: str) -> str:
    return name.replace("._orig_mod", "").replace("_orig_mod.", "")


def _neuron_axis(op: Operator) -> str:
    """Which axis of the input tensor an operator reads its neurons from (channels or the last one)."""
    return "channels" if op.kind in ("conv", "conv_transpose") else "last"


def _node_sets(
    root: torch.nn.Module, found: list[tuple[str, torch.nn.Module, list[Operator]]], obs: Observation
) -> tuple[tuple[NodeSet, ...], tuple[str, ...]]:
    """Group the operators into node sets (same input tensor, same neuron axis and width) in forward order.

    Operators the observed pass did not call (a vision tower under a text-only batch, a layer used only
    in evaluation) are still part of the network: they are grouped by structure and placed after the
    observed ones.
    """
    unobserved = [(p, m, ops) for p, m, ops in found if id(m) not in obs.order]
    fallback = structural_keys(root, [(p, m, ops[0].n_in) for p, m, ops in unobserved])
    n_found = len(found)
    groups: dict[Any, list[tuple[float, Operator, str]]] = {}
    for idx, (path, mod, ops) in enumerate(found):
        order = obs.order.get(id(mod), n_found + idx)
        for k, op in enumerate(ops):
            if op.input_slot is None:
                key: Any = ("internal", op.name)
            elif id(mod) in obs.inputs:
                slots = obs.inputs[id(mod)]
                key = ("tensor", slots[min(op.input_slot, len(slots) - 1)], _neuron_axis(op), op.n_in)
            else:
                key = ("structure", fallback[id(mod)], _neuron_axis(op), op.n_in)  # different widths never share neurons
            groups.setdefault(key, []).append((order + (0.5 if op.input_slot is None else 0.0) + k * 1e-6, op, path))
    op_ids = {id(m) for _, m, _ in found}
    ordered = sorted(groups.items(), key=lambda kv: min(m[0] for m in kv[1]))
    depth_of: dict[str, int] = {}
    sets = []
    for key, members in ordered:
        members.sort(key=lambda m: m[0])
        block = _strip(_block_of(root, members[0][2], op_ids))
        depth = depth_of.setdefault(block, len(depth_of))
        where = _strip(members[0][2])
        if key[0] == "internal":
            reads = f"internal activation of {where}"
        elif key[0] == "structure":
            reads = f"grouped by structure: not called in the observed forward pass ({where})"
        else:
            reads = f"input of {where}"
        sets.append(NodeSet(tuple(m[1] for m in members), depth, reads))
    return tuple(sets), tuple(depth_of)


def _model_type(root: torch.nn.Module, op_modules: list[torch.nn.Module]) -> str | None:
    """``config.model_type`` of the Hugging Face model that holds every operator (``None`` if none does)."""
    ids = {id(m) for m in op_modules}
    for m in root.modules():
        mt = getattr(getattr(m, "config", None), "model_type", None)
        if isinstance(mt, str) and ids <= {id(x) for x in m.modules()}:
            return mt
    return None


def resolve(
    model: Any,
    architecture: str = "auto",
    *,
    module: ModuleArg = None,
    example_input: Any = None,
    observation: Observation | None = None,
) -> Layout:
    """Find the operators of ``model`` and group them into node sets (see the module docstring).

    Args:
        model: any ``nn.Module`` (wrapped by ``torch.compile``, PEFT, DDP or a LightningModule too); a
            :class:`Layout` is returned as it is.
        architecture: ``"auto"``, ``"generic"`` or ``"gpt_neox"``.
        module: analyse only this part: a dotted attribute path (``"encoder"``, ``"model.vision"``) or
            a callable ``model -> nn.Module``.
        example_input: an input for one forward pass that reveals the node sets: a dict (keyword
            arguments), a tuple (positional) or a tensor. Default: the model's ``dummy_inputs`` (Hugging
            Face) or a guess from its first layer.
        observation: an :class:`Observation` already recorded (the callbacks record the first
            training step); no forward pass is run then.

    Returns:
        The :class:`Layout`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; bad ``module``.
        ValueError: no weight operator in the analysed module, a failing ``example_input``, or a
            preset that does not fit the model.

    Example:
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> layout = resolve(mlp)
        >>> layout.family, [ns.name for ns in layout.node_sets], layout.depth_names, layout.source
        ('generic', ['0.weight', '2.weight'], ('0', '2'), 'guessed input: float batch (2, 8)')
    """
    check_choice("architecture", architecture, ARCHITECTURES)
    if isinstance(model, Layout):
        return model
    root, path = select_module(model, module)
    if not find_operators(root):
        raise _no_operator_error(root)
    if observation is None:
        observation = discover(root, example_input)
    found = find_operators(root, observation.widths)
    for _, mod, ops in found:
        pieces = observation.pieces.get(id(mod))
        if pieces and len(ops) == 1 and sum(pieces) == ops[0].n_rows:
            ops[0].pieces = pieces  # a fused projection split in the forward pass: sampled per piece
        for op in ops:
            op.name = _strip(op.name)
            op.params = tuple(_strip(p) for p in op.params)
    excluded = _excluded(root, found)
    skipped = [(_strip(op.params[0]), excluded[id(m)]) for _, m, ops in found if id(m) in excluded for op in ops]
    found = [f for f in found if id(f[1]) not in excluded]
    if not found:
        raise _no_operator_error(root)
    sets, depth_names = _node_sets(root, found, observation)
    model_type = _model_type(root, [m for _, m, _ in found])
    preset = architecture if architecture != "auto" else ("gpt_neox" if model_type in gpt_neox.MODEL_TYPES else "generic")
    if preset == "gpt_neox":
        sets, sampler = gpt_neox.plan(sets, len(depth_names))
    else:
        sampler = generic_sampler(sets)
    return Layout(preset, path, root, sets, depth_names, sampler, observation.source, tuple(skipped), model_type)
