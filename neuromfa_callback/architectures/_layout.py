"""What every architecture module returns: the model's matrices, grouped into node sets, and how to sample them.

A :class:`MatrixGroup` is one or more weight matrices (each viewed as ``out x in``) that share their
input neurons: every input neuron is ONE node, and its out-edges are the matching column of every
matrix in the group, stacked. GPT-NeoX's fused ``query_key_value`` is a group of one matrix; Llama's
separate ``q_proj``/``k_proj``/``v_proj`` form a group of three, so an input neuron of a Llama layer
sees its query, key and value outputs exactly as a GPT-NeoX input neuron does.

A :class:`Selection` says which input neurons (columns) of a group are nodes and which rows of each
of its matrices are their out-neighbours. :class:`TransformerPlan` draws the selections of a
GPT-NeoX-style stack as the authors' reference does (NEUROMFA.md section 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Layout",
    "MatrixGroup",
    "Selection",
    "TransformerPlan",
    "check_shapes",
    "collect_layers",
    "fused_name",
    "transformer_groups",
    "weight_view",
]


def fused_name(names: Sequence[str]) -> str:
    """One label for several parameter names: the differing dotted component in braces.

    Example:
        >>> fused_name(["l.0.q_proj.weight", "l.0.k_proj.weight", "l.0.v_proj.weight"])
        'l.0.{q_proj,k_proj,v_proj}.weight'
        >>> fused_name(["a.weight"])
        'a.weight'
    """
    if len(names) == 1:
        return names[0]
    parts = [n.split(".") for n in names]
    pre = 0
    while all(len(p) > pre and p[pre] == parts[0][pre] for p in parts):
        pre += 1
    suf = 0
    while all(len(p) - suf > pre and p[-1 - suf] == parts[0][-1 - suf] for p in parts):
        suf += 1
    mids = [".".join(p[pre : len(p) - suf]) for p in parts]
    head = ".".join(parts[0][:pre])
    tail = ".".join(parts[0][len(parts[0]) - suf :])
    return ".".join(x for x in (head, "{" + ",".join(mids) + "}", tail) if x)


@dataclass(frozen=True, eq=False)
class MatrixGroup:
    """Matrices sharing their input neurons (one node per input neuron).

    Attributes:
        names: parameter names, relative to the detected model (``model.get_parameter(name)``).
        layer: layer (block) index, 0-based.
        role: ``"attention_in"``, ``"attention_out"``, ``"mlp_in"``, ``"mlp_out"`` or ``"linear"``.
        weights: the parameters, detached and viewed as ``out x in`` (no copy).
    """

    names: tuple[str, ...]
    layer: int
    role: str
    weights: tuple[torch.Tensor, ...]

    @property
    def name(self) -> str:
        """The parameter name (fused groups: the names joined as ``prefix.{a,b}.weight``)."""
        return fused_name(self.names)

    @property
    def n_in(self) -> int:
        """Number of input neurons (columns)."""
        return int(self.weights[0].shape[1])


@dataclass(frozen=True)
class Selection:
    """Input neurons (columns) of a group that are nodes, and the rows of each matrix they connect to."""

    cols: np.ndarray
    rows: tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False)
class Layout:
    """A model mapped onto ordered matrix groups.

    Attributes:
        family: ``"gpt_neox"``, ``"gpt2"``, ``"llama"``, ``"bert"`` or ``"mlp"``.
        path: where the analysed model sits inside the object passed (``""``: the object itself,
            ``"_orig_mod"`` for ``torch.compile``, ``"model"`` for a LightningModule attribute ...).
        model: the analysed (unwrapped) module.
        groups: the matrix groups, in forward order.
        sampler: ``sampler(neurons_per_layer, rng)`` -> one :class:`Selection` per group.
    """

    family: str
    path: str
    model: torch.nn.Module
    groups: tuple[MatrixGroup, ...]
    sampler: Callable[[int, np.random.RandomState], list[Selection]]

    def sample(self, neurons_per_layer: int, rng: np.random.RandomState) -> list[Selection]:
        """Draw the sampled nodes and out-neighbours of every group."""
        return self.sampler(neurons_per_layer, rng)


def weight_view(model: torch.nn.Module, name: str, param: torch.Tensor) -> torch.Tensor:
    """``param`` detached and viewed as ``out x in``; transformers' ``Conv1D`` stores ``in x out``."""
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    if type(owner).__name__ == "Conv1D":
        return param.detach().t()
    return param.detach()


_LORA = re.compile(r"(^|\.)lora_[A-Za-z_]+\.")


def collect_layers(
    model: torch.nn.Module, family: str, container: str, parts: Sequence[str]
) -> list[dict[str, tuple[str, torch.Tensor]]]:
    """Find ``<prefix>.<container>.<i>.<part>.weight`` for every layer ``i`` and part.

    Returns one dict per layer (in index order) mapping each part to ``(name, out x in view)``.
    A PEFT ``base_layer`` is looked through; un-merged LoRA adapters are refused.

    Raises:
        ValueError: no layer, a layer missing a part, layer indices with gaps, several prefixes,
            or LoRA adapters that are not merged.
    """
    pattern = re.compile(
        rf"^(?P<pre>(?:.*\.)?){re.escape(container)}\.(?P<i>\d+)\.(?P<part>.+?)(?:\.base_layer)?\.weight$"
    )
    found: dict[str, dict[int, dict[str, tuple[str, torch.Tensor]]]] = {}
    for name, param in model.named_parameters():
        if _LORA.search(name):
            raise ValueError(
                f"found un-merged LoRA adapter weights ({name}): NeuroMFA analyses the effective weights; "
                "call `model.merge_and_unload()` (PEFT) first"
            )
        m = pattern.match(name)
        if m and m["part"] in parts:
            layer = found.setdefault(m["pre"], {}).setdefault(int(m["i"]), {})
            layer[m["part"]] = (name, weight_view(model, name, param))
    if not found:
        raise ValueError(f"no {family} layers found: expected parameters named `*.{container}.<i>.{parts[0]}.weight`")
    if len(found) > 1:
        raise ValueError(f"{family} layers found under several prefixes {sorted(found)}: pass the one model to analyse")
    layers = next(iter(found.values()))
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"{family} layer indices are not 0..n-1: {sorted(layers)}")
    for i in range(len(layers)):
        missing = [p for p in parts if p not in layers[i]]
        if missing:
            raise ValueError(f"{family} layer {i} lacks {missing} (expected all of {list(parts)})")
    return [layers[i] for i in range(len(layers))]


def _check_size(value: int, limit: int, what: str) -> None:
    if value > limit:
        raise ValueError(f"Expected `neurons_per_layer` <= {limit} ({what}), got {value}")


@dataclass(frozen=True)
class TransformerPlan:
    """The reference's sampling of a stack of attention + MLP blocks (NEUROMFA.md section 1).

    Per block, with ``S = neurons_per_layer``, draws in this order with
    ``rng.choice(n, size, replace=False)``: ``a`` (S of ``hidden``), ``t`` (S of ``inner``),
    ``b`` (S of ``hidden``), ``c`` (2S of ``intermediate``); after the last block one more S of
    ``hidden``. The four groups of block ``l`` then select: attention_in ``cols a, rows qkv_rows(t)``;
    attention_out ``cols t, rows b``; mlp_in ``cols b, rows c`` (in every matrix of the group);
    mlp_out ``cols c, rows`` next block's ``a`` (last block: the fresh draw).

    Attributes:
        n_layers: number of blocks.
        hidden: hidden size ``F`` (residual stream).
        inner: size of the attention output projection's input (``F``; Llama: heads x head_dim).
        intermediate: MLP intermediate size.
        qkv_rows: maps ``t`` to the rows of each attention_in matrix.
        mlp_in_parts: number of matrices in the mlp_in group (2 for gated MLPs).
        family: used in error messages.
    """

    n_layers: int
    hidden: int
    inner: int
    intermediate: int
    qkv_rows: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    mlp_in_parts: int = 1
    family: str = "transformer"

    def __call__(self, neurons_per_layer: int, rng: np.random.RandomState) -> list[Selection]:
        s = neurons_per_layer
        _check_size(s, self.hidden, f"the hidden size of this {self.family} model")
        _check_size(s, self.inner, f"the attention output projection's input size of this {self.family} model")
        _check_size(
            s,
            self.intermediate // 2,
            f"half the MLP intermediate size {self.intermediate}: the reference samples 2 * neurons_per_layer there",
        )
        draws = []
        for _ in range(self.n_layers):
            a = rng.choice(self.hidden, s, replace=False)
            t = rng.choice(self.inner, s, replace=False)
            b = rng.choice(self.hidden, s, replace=False)
            c = rng.choice(self.intermediate, 2 * s, replace=False)
            draws.append((a, t, b, c))
        last = rng.choice(self.hidden, s, replace=False)
        out: list[Selection] = []
        for i, (a, t, b, c) in enumerate(draws):
            nxt = draws[i + 1][0] if i + 1 < self.n_layers else last
            out.append(Selection(a, self.qkv_rows(t)))
            out.append(Selection(t, (b,)))
            out.append(Selection(b, (c,) * self.mlp_in_parts))
            out.append(Selection(c, (nxt,)))
        return out


def transformer_groups(
    layers: list[dict[str, tuple[str, torch.Tensor]]], roles: dict[str, Sequence[str]]
) -> tuple[MatrixGroup, ...]:
    """Matrix groups in forward order; ``roles`` maps each role to the layer parts it fuses."""
    groups = []
    for i, layer in enumerate(layers):
        for role, parts in roles.items():
            groups.append(
                MatrixGroup(
                    names=tuple(layer[p][0] for p in parts),
                    layer=i,
                    role=role,
                    weights=tuple(layer[p][1] for p in parts),
                )
            )
    return tuple(groups)


def check_shapes(family: str, groups: Sequence[MatrixGroup], expected: dict[str, Sequence[tuple[int, int]]]) -> None:
    """Raise ``ValueError`` naming the first matrix whose ``out x in`` shape is not ``expected[role][part]``."""
    for g in groups:
        for name, w, want in zip(g.names, g.weights, expected[g.role]):
            if tuple(w.shape) != tuple(want):
                raise ValueError(f"{family}: `{name}` has shape {tuple(w.shape)} (out x in), expected {tuple(want)}")


def standard_transformer_layout(
    model: torch.nn.Module, path: str, family: str, blocks_attr: str, roles: dict[str, tuple[str, ...]]
) -> Layout:
    """Layout of a block stack whose attention input is one fused ``3F x F`` matrix (q, k, v stacked)
    or three ``F x F`` matrices, followed by ``F x F`` attention output and an ``inter``-wide MLP.

    The sampled qkv rows of a sampled output neuron ``t`` are ``t, t+F, t+2F`` of the fused matrix,
    or row ``t`` of each separate matrix.

    Raises:
        ValueError: the expected parameters are missing or have inconsistent shapes.
    """
    layers = collect_layers(model, family, blocks_attr, [p for ps in roles.values() for p in ps])
    groups = transformer_groups(layers, roles)
    f = int(groups[1].weights[0].shape[0])
    inter = int(groups[2].weights[0].shape[0])
    fused = len(roles["attention_in"]) == 1
    check_shapes(
        family,
        groups,
        {
            "attention_in": [(3 * f, f)] if fused else [(f, f)] * 3,
            "attention_out": [(f, f)],
            "mlp_in": [(inter, f)],
            "mlp_out": [(f, inter)],
        },
    )

    def qkv_rows(t: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.concatenate([t, t + f, t + 2 * f]),) if fused else (t, t, t)

    plan = TransformerPlan(len(layers), f, f, inter, qkv_rows, family=family)
    return Layout(family, path, model, groups, plan)
