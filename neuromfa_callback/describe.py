"""A dry run: which parameters of a model the neuron interaction network uses, and why the others are not.

:func:`describe` resolves the model exactly as :func:`~neuromfa_callback.build_network` does, reads
no weight value, and lists every parameter of the detected model (tied ones included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MatrixInfo", "ModelDescription", "describe"]


@dataclass(frozen=True)
class MatrixInfo:
    """One parameter of the analysed model.

    Attributes:
        name: parameter name, relative to the detected model.
        shape: stored shape.
        used: whether it is a matrix of the neuron interaction network.
        layer: layer index (used matrices), else ``None``.
        role: ``attention_in``/``attention_out``/``mlp_in``/``mlp_out``/``linear`` (used), else ``None``.
        reason: for used matrices, the node set it belongs to; otherwise why it is skipped
            (``bias``, ``norm``, ``embedding``, ``unembedding``, ``task head`` ...).
    """

    name: str
    shape: tuple[int, ...]
    used: bool
    layer: int | None
    role: str | None
    reason: str

    def __str__(self) -> str:
        what = f"layer {self.layer} {self.role}" if self.used else "skipped"
        return f"{self.name} {'x'.join(map(str, self.shape))}: {what} ({self.reason})"


class ModelDescription(list):
    """``list[MatrixInfo]`` whose ``str()`` is a table; ``family`` and ``path`` say what was detected."""

    def __init__(self, infos: list[MatrixInfo], family: str, path: str) -> None:
        super().__init__(infos)
        self.family = family
        self.path = path

    @property
    def used(self) -> list[MatrixInfo]:
        """The matrices of the network."""
        return [m for m in self if m.used]

    def __str__(self) -> str:
        rows = [
            (
                m.name,
                "x".join(map(str, m.shape)),
                "yes" if m.used else "no",
                "" if m.layer is None else str(m.layer),
                m.role or "",
                m.reason,
            )
            for m in self
        ]
        head = ("parameter", "shape", "used", "layer", "role", "note")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        where = f" at `{self.path}`" if self.path else ""
        lines = [
            f"{self.family} model{where}: {len(self.used)} of {len(self)} parameters are network matrices",
            fmt.format(*head).rstrip(),
            fmt.format(*("-" * w for w in widths)),
        ]
        lines += [fmt.format(*r).rstrip() for r in rows]
        return "\n".join(lines)


_HEADS = ("classifier", "score", "qa_outputs", "cls.", "head.")


def _skip_reason(model: torch.nn.Module, name: str, param: torch.Tensor, family: str, tied_to: str | None) -> str:
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    kind = type(owner).__name__
    low = name.lower()
    if tied_to is not None and ("lm_head" in low or "embed_out" in low):
        return f"unembedding (tied to {tied_to})"
    if name.endswith("bias"):
        return "bias"
    if "lm_head" in low or "embed_out" in low:
        return "unembedding"
    if isinstance(owner, torch.nn.Embedding):
        return "embedding"
    if "norm" in kind.lower() or "norm" in low or ".ln_" in f".{low}":
        return "norm"
    if "embed" in low or low.split(".")[-2:-1] in (["wte"], ["wpe"]):
        return "embedding"
    if "pooler" in low:
        return "pooler (task head)"
    if any(h in f"{low}" for h in _HEADS):
        return "task head"
    if tied_to is not None:
        return f"tied to {tied_to}"
    return f"not in the {family} layer mapping"


def describe(model: Any, architecture: str = "auto") -> ModelDescription:
    """List every parameter of the detected model: network matrix or not, shape, and why.

    Args:
        model: as for :func:`~neuromfa_callback.build_network` (wrappers are looked through).
        architecture: ``"auto"`` or a family name.

    Returns:
        :class:`ModelDescription` (a ``list`` of :class:`MatrixInfo`; ``print`` it for a table).

    Raises:
        ValueError: unsupported model (the message lists what was found and the supported families).

    Example:
        >>> import torch
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
        >>> d = describe(mlp)
        >>> [(m.name, m.used, m.reason) for m in d][:3]
        [('0.weight', True, 'node set 0.weight'), ('0.bias', False, 'bias'), ('1.weight', False, 'norm')]
        >>> print(str(d).splitlines()[0])
        mlp model: 2 of 6 parameters are network matrices
    """
    from neuromfa_callback.architectures import resolve

    layout = resolve(model, architecture)
    used: dict[str, tuple[int, str, str]] = {}
    for g in layout.groups:
        for n in g.names:
            used[n] = (g.layer, g.role, f"node set {g.name}")
    first_name: dict[int, str] = {}
    infos = []
    for name, param in layout.model.named_parameters(remove_duplicate=False):
        tied_to = first_name.setdefault(id(param), name)
        tied_to = None if tied_to == name else tied_to
        if name in used:
            layer, role, note = used[name]
            infos.append(MatrixInfo(name, tuple(param.shape), True, layer, role, note))
        else:
            reason = _skip_reason(layout.model, name, param, layout.family, tied_to)
            infos.append(MatrixInfo(name, tuple(param.shape), False, None, None, reason))
    return ModelDescription(infos, layout.family, layout.path)
