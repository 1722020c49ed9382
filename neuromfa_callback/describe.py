"""A dry run: the node sets NeuroMFA will analyse in a model, their sizes, and every parameter left out, with why.

:func:`describe` resolves the model exactly as :func:`~neuromfa_callback.build_network` does (one
observation forward pass; no weight value is read) and lists

* the node sets in forward order: which operators share their input neurons, the depth (block) they
  belong to, the number of input neurons and out-edge slots;
* every parameter of the analysed module (tied ones included): analysed, or skipped with the reason
  (``bias``, ``norm``, ``embedding``, ``unembedding``, ``not called in the forward pass``, ``not a
  weight operator`` ...);
* the coverage: the fraction of the weight elements of its matrices (>= 2-D floating parameters,
  embeddings and unembeddings aside) that the network uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MatrixInfo", "ModelDescription", "describe"]


@dataclass(frozen=True)
class MatrixInfo:
    """One parameter of the analysed module.

    Attributes:
        name: parameter name, relative to the analysed module.
        shape: stored shape.
        used: whether an operator of the network reads it.
        depth: depth index (used parameters), else ``None``.
        node_set: name of the node set it belongs to (used parameters), else ``None``.
        reason: for used parameters, the node set; otherwise why it is skipped.
    """

    name: str
    shape: tuple[int, ...]
    used: bool
    depth: int | None
    node_set: str | None
    reason: str

    def __str__(self) -> str:
        what = f"depth {self.depth}" if self.used else "skipped"
        return f"{self.name} {'x'.join(map(str, self.shape))}: {what} ({self.reason})"


class ModelDescription(list):
    """``list[MatrixInfo]`` whose ``str()`` is a report; also the layout, the node sets and the coverage."""

    def __init__(self, infos: list[MatrixInfo], layout: Any, coverage: float, considered: int) -> None:
        super().__init__(infos)
        self.layout = layout
        self.family = layout.family
        self.path = layout.path
        self.coverage = coverage
        self.considered_elements = considered

    @property
    def used(self) -> list[MatrixInfo]:
        """The parameters the network reads."""
        return [m for m in self if m.used]

    @property
    def skipped(self) -> list[MatrixInfo]:
        return [m for m in self if not m.used]

    @property
    def node_sets(self) -> tuple[Any, ...]:
        return self.layout.node_sets

    def __str__(self) -> str:
        lay = self.layout
        where = f" at `{self.path}`" if self.path else ""
        head = (
            f"{type(lay.model).__name__}{where}: {len(lay.node_sets)} node sets in {len(lay.depth_names)} depths "
            f"({lay.family} sampling; node sets from: {lay.source})\nthe network uses {self.coverage:.1%} of the "
            f"{self.considered_elements:,} weight elements (embeddings and unembeddings aside)"
        )
        by_structure = [ns.name for ns in lay.node_sets if ns.reads.startswith("grouped by structure")]
        if by_structure:
            head += (f"\n{len(by_structure)} node sets were not called in the observed forward pass and are grouped by "
                     f"structure (siblings with one input width): pass `example_input=` to observe them")
        rows = [("depth", "node set (operators sharing input neurons)", "inputs", "out-edges/node")]
        for ns in lay.node_sets:
            rows.append((f"{ns.depth} {lay.depth_names[ns.depth]}", ns.name, str(ns.n_in), str(ns.n_out)))
        skipped = [(m.name, "x".join(map(str, m.shape)), m.reason) for m in self.skipped]
        return "\n".join([head, "", *_table(rows), "", f"skipped parameters ({len(skipped)}):",
                          *_table([("parameter", "shape", "why"), *skipped])])


def _table(rows: list[tuple[str, ...]], limit: int = 120) -> list[str]:
    widths = [min(max(len(r[i]) for r in rows), 72) for i in range(len(rows[0]))]
    while sum(widths) + 2 * (len(widths) - 1) > limit and max(widths) > 24:
        widths[widths.index(max(widths))] -= 1  # shave the widest column until the row fits
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*[c if len(c) <= w else c[: w - 3] + "..." for c, w in zip(r, widths)]).rstrip() for r in rows]


def _skip_reason(model: torch.nn.Module, name: str, param: torch.Tensor, tied_to: str | None) -> str:
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    kind = type(owner).__name__
    if tied_to is not None:
        return f"tied to {tied_to}"
    if name.endswith("bias") or "bias" in name.rsplit(".", 1)[-1]:
        return "bias"
    if isinstance(owner, torch.nn.Embedding) or "Embedding" in kind:
        return "embedding"
    if "norm" in kind.lower():
        return "norm"
    if param.ndim < 2:
        return f"{param.ndim}-D parameter of {kind}"
    return f"not a weight operator ({kind})"


def describe(model: Any, architecture: str = "auto", *, module: Any = None, example_input: Any = None) -> ModelDescription:
    """List the node sets of ``model`` and every parameter: analysed, or skipped and why.

    Args:
        model, architecture, module, example_input: as for :func:`~neuromfa_callback.build_network`.

    Returns:
        :class:`ModelDescription` (a ``list`` of :class:`MatrixInfo`; ``print`` it for a report).

    Raises:
        ValueError: no weight operator in the model (the message says what was found).

    Example:
        >>> import torch
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
        >>> d = describe(mlp)
        >>> [(m.name, m.used, m.reason) for m in d][:3]
        [('0.weight', True, 'node set 0.weight'), ('0.bias', False, 'bias'), ('1.weight', False, 'norm')]
        >>> d.coverage, print(str(d).splitlines()[0])
        Sequential: 2 node sets in 2 depths (generic sampling; node sets from: guessed input: float batch (2, 8))
        (1.0, None)
    """
    from neuromfa_callback.architectures import resolve

    layout = resolve(model, architecture, module=module, example_input=example_input)
    root = layout.model
    used: dict[str, tuple[int, str]] = {}
    for ns in layout.node_sets:
        for op in ns.operators:
            for p in op.params:
                used.setdefault(p, (ns.depth, ns.name))
    skipped = dict(layout.skipped)
    first_name: dict[int, str] = {}
    infos = []
    considered = covered = 0
    strip = lambda n: n.replace("._orig_mod", "").replace("_orig_mod.", "")  # noqa: E731
    for raw_name, param in root.named_parameters(remove_duplicate=False):
        name = strip(raw_name)
        tied_to = first_name.setdefault(id(param), name)
        tied_to = None if tied_to == name else tied_to
        if name in used:
            depth, ns_name = used[name]
            infos.append(MatrixInfo(name, tuple(param.shape), True, depth, ns_name, f"node set {ns_name}"))
        else:
            reason = skipped.get(name) or _skip_reason(root, raw_name, param, tied_to)
            infos.append(MatrixInfo(name, tuple(param.shape), False, None, None, reason))
        if tied_to is None and param.ndim >= 2 and param.is_floating_point() and not infos[-1].reason.startswith(("embedding", "unembedding")):
            considered += param.numel()
            covered += param.numel() if infos[-1].used else 0
    return ModelDescription(infos, layout, covered / considered if considered else 0.0, considered)
