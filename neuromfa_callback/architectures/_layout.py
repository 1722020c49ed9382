"""What :func:`~neuromfa_callback.architectures.resolve` returns: the model's node sets, their depths, and a sampler.

A :class:`NodeSet` is one or more :class:`~neuromfa_callback.architectures.operators.Operator` s that read
the same input neurons: every input neuron is ONE node, and its out-edges are the matching column of
every operator, stacked (GPT-NeoX's fused ``query_key_value`` is one operator; Llama's ``q_proj``,
``k_proj``, ``v_proj`` are three operators of one node set).

A :class:`Selection` says which input neurons of a node set are nodes and which rows of each operator
are their out-neighbours. The general sampler (:func:`generic_sampler`) draws, per node set in
forward order, ``min(S, n_in)`` input neurons and then, per operator, ``min(S, rows)`` rows, all with
``rng.choice(n, k, replace=False)``. :class:`TransformerPlan` draws the selections of a GPT-NeoX stack
exactly as the authors' reference does (NEUROMFA.md section 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from neuromfa_callback.architectures.operators import Operator

__all__ = ["Layout", "NodeSet", "Selection", "TransformerPlan", "fused_name", "generic_sampler"]


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
    if len(mids) > 4:
        mids = [*mids[:2], f"... {len(mids)} in all", mids[-1]]
    head = ".".join(parts[0][:pre])
    tail = ".".join(parts[0][len(parts[0]) - suf :])
    return ".".join(x for x in (head, "{" + ",".join(mids) + "}", tail) if x)


@dataclass(frozen=True, eq=False)
class NodeSet:
    """Operators sharing their input neurons (one node per input neuron).

    Attributes:
        operators: the operators, in forward order.
        depth: index into :attr:`Layout.depth_names` (the block the node set belongs to).
        reads: what the input is (``"input of model.layers.0.self_attn.q_proj"``, ...).
    """

    operators: tuple[Operator, ...]
    depth: int
    reads: str = ""

    @property
    def name(self) -> str:
        """The operator names, fused (``prefix.{q_proj,k_proj,v_proj}.weight``)."""
        return fused_name([op.name for op in self.operators])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.operators)

    @property
    def n_in(self) -> int:
        """Number of input neurons (every operator of the set has the same)."""
        return self.operators[0].n_in

    @property
    def n_out(self) -> int:
        """Out-edge slots per node over all operators."""
        return sum(op.n_rows for op in self.operators)


@dataclass(frozen=True)
class Selection:
    """Input neurons (columns) of a node set that are nodes, and the rows of each operator they connect to."""

    cols: np.ndarray
    rows: tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False)
class Layout:
    """A model mapped onto ordered node sets.

    Attributes:
        family: ``"generic"``, or the preset whose sampling is used (``"gpt_neox"``).
        path: where the analysed module sits inside the object passed (``""``: itself,
            ``"_orig_mod"`` for ``torch.compile``, ``"model"`` for ``module="model"`` ...).
        model: the analysed module.
        node_sets: in forward order.
        depth_names: module path of every depth (block), in forward order.
        sampler: ``sampler(neurons_per_layer, rng)`` -> one :class:`Selection` per node set.
        source: how the node sets were found (``"training step"``, ``"example_input"``,
            ``"dummy_inputs"``, ``"structure (no forward pass ran)"`` ...).
        skipped: ``(parameter name, reason)`` for weight-holding parameters left out.
        model_type: ``config.model_type`` of the analysed Hugging Face model, if any.
    """

    family: str
    path: str
    model: torch.nn.Module
    node_sets: tuple[NodeSet, ...]
    depth_names: tuple[str, ...]
    sampler: Callable[[int, np.random.RandomState], list[Selection]]
    source: str = ""
    skipped: tuple[tuple[str, str], ...] = ()
    model_type: str | None = None
    _draws: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def operators(self) -> list[Operator]:
        return [op for ns in self.node_sets for op in ns.operators]

    def sample(self, neurons_per_layer: int, rng: np.random.RandomState) -> list[Selection]:
        """Draw the sampled nodes and out-neighbours of every node set."""
        return self.sampler(neurons_per_layer, rng)

    def selections(self, neurons_per_layer: int, seed: int) -> list[Selection]:
        """The draws of ``seed`` (``RandomState(seed)``), computed once per layout: every snapshot of a run
        samples the same neurons, so they are kept, not drawn again."""
        key = (neurons_per_layer, seed)
        if key not in self._draws:
            self._draws[key] = self.sample(neurons_per_layer, np.random.RandomState(seed))
        return self._draws[key]


def generic_sampler(node_sets: Sequence[NodeSet]) -> Callable[[int, np.random.RandomState], list[Selection]]:
    """Per node set: ``min(S, n_in)`` input neurons, then ``min(S, rows)`` rows of each operator (of each
    piece of a fused projection: ``min(S, piece)`` rows per piece).

    Example:
        >>> lin = torch.nn.Linear(6, 4)
        >>> ns = NodeSet((Operator("w", lin, "linear", ("w",)),), depth=0)
        >>> sel = generic_sampler([ns])(32, np.random.RandomState(0))[0]
        >>> sorted(sel.cols.tolist()), sorted(sel.rows[0].tolist())
        ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3])
    """
    sizes = [(ns.n_in, [op.pieces or (op.n_rows,) for op in ns.operators]) for ns in node_sets]

    def rows(pieces: tuple[int, ...], s: int, rng: np.random.RandomState) -> np.ndarray:
        starts = np.cumsum((0, *pieces[:-1]))
        return np.concatenate([start + rng.choice(n, min(s, n), replace=False) for start, n in zip(starts, pieces)])

    def sample(neurons_per_layer: int, rng: np.random.RandomState) -> list[Selection]:
        s = neurons_per_layer
        out = []
        for n_in, ops in sizes:
            cols = rng.choice(n_in, min(s, n_in), replace=False)
            out.append(Selection(cols, tuple(rows(p, s, rng) for p in ops)))
        return out

    return sample


def _check_size(value: int, limit: int, what: str) -> None:
    if value > limit:
        raise ValueError(f"Expected `neurons_per_layer` <= {limit} ({what}), got {value}")


@dataclass(frozen=True)
class TransformerPlan:
    """The reference's sampling of a stack of attention + MLP blocks (NEUROMFA.md section 1).

    Per block, with ``S = neurons_per_layer``, draws in this order with
    ``rng.choice(n, size, replace=False)``: ``a`` (S of ``hidden``), ``t`` (S of ``inner``),
    ``b`` (S of ``hidden``), ``c`` (2S of ``intermediate``); after the last block one more S of
    ``hidden``. The four node sets of block ``l`` then select: attention_in ``cols a, rows qkv_rows(t)``;
    attention_out ``cols t, rows b``; mlp_in ``cols b, rows c``; mlp_out ``cols c, rows`` next
    block's ``a`` (last block: the fresh draw).
    """

    n_layers: int
    hidden: int
    inner: int
    intermediate: int
    qkv_rows: Callable[[np.ndarray], tuple[np.ndarray, ...]]
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
            out.append(Selection(b, (c,)))
            out.append(Selection(c, (nxt,)))
        return out
