r"""Weight operators, found by module type: every way a model turns input neurons into output neurons.

An :class:`Operator` is one weight matrix seen as ``rows x n_in``: column ``j`` holds the out-edge
weights of input neuron ``j`` (NEUROMFA.md section 1). :func:`find_operators` walks a model and
dispatches on module *types*, never on names (as PEFT's ``dispatch_default`` and WeightWatcher's
``LAYER_TYPE`` do):

| module type | operator(s) | rows of input neuron ``j`` |
|---|---|---|
| ``nn.Linear`` | ``weight`` (out x in) | ``W[:, j]`` |
| transformers ``Conv1D`` | ``weight`` stored in x out, viewed out x in | ``W[j, :]`` |
| ``nn.MultiheadAttention`` | q, k, v (three operators, reading query, key, value) and ``out_proj`` | as ``nn.Linear`` |
| ``nn.RNN``/``nn.LSTM``/``nn.GRU`` | per layer and direction ``weight_ih_l*`` and ``weight_hh_l*`` (sampled per gate) | as ``nn.Linear`` |
| ``nn.Conv1d/2d/3d`` (any ``groups``) | ``weight`` (C_out x C_in/g x k...) | every output channel of ``j``'s group at every kernel tap: ``(C_out/g) * prod(k)`` rows |
| ``nn.ConvTranspose1d/2d/3d`` | ``weight`` (C_in x C_out/g x k...) | ``W[j]`` flattened |
| a module holding 3-D parameters (MoE experts, ``E x out x in``) | one operator per expert and parameter | ``W[e][:, j]`` |
| PEFT LoRA layer (``lora.Linear``/``Conv*``, un-merged adapters) | the **effective** weight ``W + sum_a s_a B_a A_a`` | computed for the requested rows and columns only |
| any other module with one 2-D weight, seen in a forward pass reading a tensor whose last dimension matches one side | that weight (a router, a custom linear) | as ``nn.Linear`` (or transposed) |

Rule for convolutions (ours; the paper does not publish one): a node is an input channel, and its
out-edges are its weights to every output channel of its group at every kernel tap, so a 3x3 conv
with 64 output channels gives each input channel 576 out-edge slots. A depthwise conv gives each
channel only ``prod(k)`` slots (9 for 3x3), fewer than the default ``min_neighbours`` + 1, so its
nodes take no part unless ``min_neighbours`` is lowered.

Parameters are read from their modules at every access (never cached), so in-place optimiser
updates, ``.to(device)`` and FSDP2's gathered parameters are always seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Operator", "find_operators", "is_operator_module", "linear_like"]

_CONV = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_CONV_T = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def _index(rows: np.ndarray | None, device: torch.device) -> torch.Tensor | slice:
    return slice(None) if rows is None else torch.as_tensor(rows, dtype=torch.int64, device=device)


@dataclass(eq=False)
class Operator:
    """One weight matrix of the network, as ``rows x n_in`` (column ``j``: input neuron ``j``'s out-edges).

    Attributes:
        name: label, the parameter name relative to the analysed model (``a.b.weight``; experts:
            ``a.b.gate_up_proj[3]``; MHA pieces: ``attn.in_proj_weight[q]``).
        module: the module owning the parameter(s) (a LoRA operator: the LoRA layer).
        kind: ``"linear"``, ``"conv1d_hf"``, ``"mha"``, ``"conv"``, ``"conv_transpose"``, ``"expert"``,
            ``"lora"`` or ``"linear_like"``.
        params: parameter names read (relative to the analysed model), for ``describe``.
        attr: attribute of ``module`` holding the weight.
        transposed: the stored tensor is ``in x out`` (HF ``Conv1D``, ``x @ W`` experts).
        row_range: ``(start, stop)`` rows of the stored ``out x in`` matrix (MHA q/k/v pieces).
        expert: index along the first axis of a 3-D parameter.
        input_slot: which input of the module this operator reads (MHA: 0 query, 1 key, 2 value);
            ``None``: not the module's input (an expert's down projection, MHA ``out_proj``).
        pieces: row sizes of the logical pieces of a fused projection (seen split in the forward
            pass, e.g. GPT-2's ``c_attn`` into q, k, v), sampled piece by piece; ``None``: one piece.
    """

    name: str
    module: torch.nn.Module
    kind: str
    params: tuple[str, ...]
    attr: str = "weight"
    transposed: bool = False
    row_range: tuple[int, int] | None = None
    expert: int | None = None
    input_slot: int | None = 0
    pieces: tuple[int, ...] | None = None
    _lora: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------------------ raw weight
    def stored(self) -> torch.Tensor:
        """The parameter as stored (detached), before any view."""
        mod = self._lora.base if self.kind == "lora" else self.module
        return getattr(mod, self.attr).detach()

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """Every parameter this operator reads, by name (the parameter objects themselves, for identity)."""
        if self.kind == "lora":
            out = [(self.params[0], self._lora.base.weight)]
            for a in self._lora.adapters():
                for what in ("lora_A", "lora_B", "lora_magnitude_vector"):
                    sub = getattr(self._lora.layer, what, {})
                    if a in sub:
                        out.append((f"{self.params[0].rsplit('.', 2)[0]}.{what}.{a}.weight", sub[a].weight))
            return out
        return [(self.params[0], getattr(self.module, self.attr))]

    def matrix(self) -> torch.Tensor:
        """``rows x n_in`` view of the stored weight (no copy), except for LoRA (base only) and convolutions."""
        w = self.stored()
        if self.expert is not None:
            w = w[self.expert]
        if self.kind in ("conv", "conv_transpose"):
            raise TypeError("convolution weights have no plain matrix view; use columns()/gather()")
        if self.kind == "lora":
            return self._lora.base_operator(self).matrix()
        if self.transposed:
            w = w.t()
        if self.row_range is not None:
            w = w[self.row_range[0] : self.row_range[1]]
        return w

    # ------------------------------------------------------------------------------ shape
    @property
    def n_in(self) -> int:
        """Number of input neurons (columns)."""
        if self.kind == "lora":
            return self._lora.base_operator(self).n_in
        w = self.stored()
        if self.kind == "conv":
            return int(w.shape[1]) * int(self.module.groups)
        if self.kind == "conv_transpose":
            return int(w.shape[0])
        return int(self.matrix().shape[1])

    @property
    def n_rows(self) -> int:
        """Out-edge slots per input neuron."""
        if self.kind == "lora":
            return self._lora.base_operator(self).n_rows
        w = self.stored()
        if self.kind in ("conv", "conv_transpose"):
            taps = math.prod(int(k) for k in w.shape[2:])
            out_g = int(w.shape[0]) // int(self.module.groups) if self.kind == "conv" else int(w.shape[1])
            return out_g * taps
        return int(self.matrix().shape[0])

    @property
    def numel(self) -> int:
        """Weight elements of the operator (for coverage: stored elements, grouped convs counted once)."""
        w = self.stored()
        if self.kind == "lora":
            return int(w.numel())
        if self.expert is not None:
            return int(w[self.expert].numel())
        if self.row_range is not None:
            return (self.row_range[1] - self.row_range[0]) * int(w.shape[1])
        return int(w.numel())

    @property
    def device(self) -> torch.device:
        return self.stored().device

    @property
    def dtype(self) -> torch.dtype:
        return self.stored().dtype

    # ------------------------------------------------------------------------------ reading
    def columns(self, j0: int, j1: int) -> torch.Tensor:
        """``rows x (j1 - j0)``: the out-edge weights of input neurons ``j0..j1-1`` (a view where possible)."""
        if self.kind in ("conv", "conv_transpose"):
            return self._conv_block(None, np.arange(j0, j1))
        if self.kind == "lora":
            return self._lora.block(self, None, np.arange(j0, j1))
        return self.matrix()[:, j0:j1]

    def gather(self, rows: np.ndarray | None, cols: np.ndarray) -> torch.Tensor:
        """``rows x cols`` submatrix as a new tensor, reading only those entries (``rows=None``: all rows)."""
        if self.kind in ("conv", "conv_transpose"):
            return self._conv_block(rows, cols)
        if self.kind == "lora":
            return self._lora.block(self, rows, cols)
        w = self.matrix()
        if w.device.type == "cpu" and w.dtype in (torch.float16, torch.float32, torch.float64) and rows is not None:
            return torch.from_numpy(w.numpy()[np.ix_(rows, cols)])
        c = torch.as_tensor(cols, dtype=torch.int64, device=w.device)
        if rows is None:
            return w[:, c]
        return w[_index(rows, w.device)[:, None], c]

    def _conv_block(self, rows: np.ndarray | None, cols: np.ndarray) -> torch.Tensor:
        w = self.stored()
        dev = w.device
        cols_t = torch.as_tensor(cols, dtype=torch.int64, device=dev)
        if self.kind == "conv_transpose":
            block = w[cols_t].reshape(len(cols), -1)  # (cols, C_out/g * taps)
        else:
            groups = int(self.module.groups)
            out_g, in_g = int(w.shape[0]) // groups, int(w.shape[1])
            wv = w.reshape(groups, out_g, in_g, -1)  # (g, out/g, in/g, taps)
            block = wv[cols_t // in_g, :, cols_t % in_g, :].reshape(len(cols), -1)  # (cols, out/g * taps)
        block = block.t()
        if rows is not None:
            block = block[_index(rows, dev)]
        return block.contiguous()


# ---------------------------------------------------------------------------------- LoRA
@dataclass(eq=False)
class _LoraParts:
    """The pieces of a PEFT LoRA layer needed for its effective weight."""

    layer: torch.nn.Module
    base: torch.nn.Module
    base_kind: str  # "linear", "conv1d_hf" or "conv"
    dora: tuple[str, ...] = ()  # adapters with DoRA's magnitude vector (linear bases only)

    def base_operator(self, op: Operator) -> Operator:
        return Operator(op.name, self.base, self.base_kind, op.params, transposed=self.base_kind == "conv1d_hf")

    def adapters(self) -> list[str]:
        if getattr(self.layer, "merged", False) or getattr(self.layer, "disable_adapters", False):
            return []  # merged: the base weight already holds the adapters; disabled: the base alone runs
        active = self.layer.active_adapters
        return [a for a in active if a in self.layer.lora_A and a not in getattr(self.layer, "merged_adapters", [])]

    def _delta_rows(self, a: str, r_idx: Any, c_idx: Any, dtype: torch.dtype) -> torch.Tensor:
        wa = self.layer.lora_A[a].weight.detach().to(dtype)
        wb = self.layer.lora_B[a].weight.detach().to(dtype)
        b_rows = wb if isinstance(r_idx, slice) else wb[r_idx]
        return float(self.layer.scaling[a]) * (b_rows @ (wa if c_idx is None else wa[:, c_idx]))

    def block(self, op: Operator, rows: np.ndarray | None, cols: np.ndarray) -> torch.Tensor:
        """Effective ``rows x cols`` weights: base + sum of ``scaling * B[rows] @ A[:, cols]`` (float32 at least).

        DoRA adapters rescale each row by ``magnitude / ||W + s B A||_row`` (the norm over the whole row,
        as PEFT's ``DoraLinearLayer`` computes it).
        """
        out = self.base_operator(op).gather(rows, cols)
        names = self.adapters()
        if not names:
            return out
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        dev = out.device
        r_idx = _index(rows, dev)
        c_idx = torch.as_tensor(cols, dtype=torch.int64, device=dev)
        if self.dora and any(a in self.dora for a in names):
            base_rows = self.base_operator(op).matrix()[r_idx].to(out.dtype)
            full_rows = base_rows + sum(self._delta_rows(a, r_idx, None, out.dtype) for a in names)
            mag = torch.ones(full_rows.shape[0], dtype=out.dtype, device=dev)
            for a in names:
                if a in self.dora:
                    m = self.layer.lora_magnitude_vector[a].weight.detach().to(out.dtype)
                    mag = m if isinstance(r_idx, slice) else m[r_idx]
            norm = torch.linalg.vector_norm(full_rows, dim=1)
            return (mag / norm)[:, None] * full_rows[:, c_idx]
        for a in names:
            if self.base_kind != "conv":
                out = out + self._delta_rows(a, r_idx, c_idx, out.dtype)
                continue
            wa = self.layer.lora_A[a].weight.detach().to(out.dtype)
            wb = self.layer.lora_B[a].weight.detach().to(out.dtype)
            s = float(self.layer.scaling[a])
            base_w = self.base.weight
            taps = math.prod(int(k) for k in base_w.shape[2:])
            if int(self.base.groups) != 1:
                raise ValueError(f"LoRA on a grouped convolution is not supported: `{op.name}`")
            # A: (r, C_in, k...), B: (C_out, r, 1...): delta[o, i, tap] = sum_r B[o, r] A[r, i, tap]
            a_cols = wa.reshape(wa.shape[0], wa.shape[1], taps)[:, c_idx, :]  # (r, cols, taps)
            b_rows = wb.reshape(wb.shape[0], -1)  # (C_out, r)
            delta = torch.einsum("or,rct->cot", b_rows, a_cols).reshape(len(cols), -1).t()  # (C_out*taps, cols)
            out = out + s * (delta if rows is None else delta[r_idx])
        return out


def _lora_parts(module: torch.nn.Module) -> _LoraParts | None:
    """``_LoraParts`` of a PEFT LoRA layer (``lora_A``/``lora_B``/``scaling`` around a ``base_layer``), else ``None``."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return None
    if not isinstance(module, LoraLayer):
        return None
    base = module.get_base_layer()
    kind = _plain_kind(base)
    if kind is None and isinstance(base, torch.nn.Embedding):
        return None  # an embedding with adapters is still an embedding: not an operator
    variants = getattr(module, "lora_variant", {}) or {}
    used = {a: type(v).__name__ for a, v in variants.items() if v is not None}
    dora = tuple(a for a, v in used.items() if v == "DoraLinearVariant")
    other = [v for a, v in used.items() if a not in dora or kind != "linear"]
    if kind is None or other:
        what = f"adapter variant {other[0]}" if other else f"base layer {type(base).__name__}"
        raise ValueError(
            f"LoRA layer with {what} is not supported; merge it (`model.merge_and_unload()`) or leave it out with `module=`"
        )
    return _LoraParts(module, base, kind, dora)


def _plain_kind(module: torch.nn.Module) -> str | None:
    if isinstance(module, torch.nn.Linear):
        return "linear"
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and module.weight.ndim == 2:
        return "conv1d_hf"  # transformers.pytorch_utils.Conv1D (GPT-2 family), weight stored in x out
    if isinstance(module, _CONV):
        return "conv"
    if isinstance(module, _CONV_T):
        return "conv_transpose"
    return None


def _recurrent_operators(module: torch.nn.RNNBase, pre: str) -> list[Operator]:
    """``nn.RNN``/``LSTM``/``GRU``: per layer (and direction) the input weights (the first layer's read the
    module's input; deeper layers' read the layer below) and the hidden weights (read the state), each
    sampled per gate (4 for LSTM, 3 for GRU)."""
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    out = []
    for name, p in module.named_parameters(recurse=False):
        if p.ndim != 2 or not name.startswith(("weight_ih_l", "weight_hh_l")):
            continue
        reads_input = name.startswith("weight_ih_l0")
        rows = int(p.shape[0])
        out.append(Operator(f"{pre}{name}", module, "linear", (f"{pre}{name}",), name,
                            input_slot=0 if reads_input else None,
                            pieces=(rows // gates,) * gates if gates > 1 and rows % gates == 0 else None))
    return out


def is_operator_module(module: torch.nn.Module) -> bool:
    """Whether ``module``'s type alone makes it an operator (or a group of them).

    Example:
        >>> is_operator_module(torch.nn.Linear(2, 3)), is_operator_module(torch.nn.LayerNorm(3))
        (True, False)
    """
    return (
        _plain_kind(module) is not None
        or isinstance(module, (torch.nn.MultiheadAttention, torch.nn.RNNBase))
        or _lora_parts(module) is not None
        or bool(_expert_params(module))
    )


def _expert_params(module: torch.nn.Module) -> list[str]:
    """Direct 3-D floating parameters sharing their first (expert) dimension: experts stored as one tensor.

    At least two experts, and each expert a real matrix (both sides > 1): a class token (``1 x 1 x H``) or
    a position table (``1 x N x H``) is not an expert, and neither is anything in an embedding module.
    """
    if _plain_kind(module) is not None or "Embedding" in type(module).__name__:
        return []
    names = [
        n for n, p in module.named_parameters(recurse=False)
        if p.ndim == 3 and p.is_floating_point() and p.shape[0] >= 2 and min(p.shape[1:]) > 1
    ]
    if not names:
        return []
    experts = {int(getattr(module, n).shape[0]) for n in names}
    return names if len(experts) == 1 else []


def linear_like(module: torch.nn.Module) -> str | None:
    """The one direct 2-D floating parameter of an otherwise unknown module (a router, a custom linear), else ``None``."""
    if is_operator_module(module) or isinstance(module, torch.nn.Embedding) or "Norm" in type(module).__name__:
        return None
    params = [(n, p) for n, p in module.named_parameters(recurse=False) if p.is_floating_point()]
    mats = [n for n, p in params if p.ndim == 2]
    if len(mats) != 1 or any(p.ndim > 2 for _, p in params):
        return None
    return mats[0]


def _operators_of(module: torch.nn.Module, name: str, input_width: int | None = None) -> list[Operator]:
    """The operators of one module (``name``: its path); ``input_width`` decides orientations where types cannot."""
    pre = f"{name}." if name else ""
    lora = _lora_parts(module)
    if lora is not None:
        base_name = next(n for n, m in module.named_modules() if m is lora.base)
        pname = f"{pre}{base_name}.weight" if base_name else f"{pre}weight"
        ada = tuple(f"{pre}{n}" for n, _ in module.named_parameters() if "lora_" in n)
        return [Operator(f"{pre}weight", module, "lora", (pname, *ada), _lora=lora)]  # named as without PEFT
    kind = _plain_kind(module)
    if kind is not None:
        return [Operator(f"{pre}weight", module, kind, (f"{pre}weight",), transposed=kind == "conv1d_hf")]
    if isinstance(module, torch.nn.MultiheadAttention):
        out = []
        if module.in_proj_weight is not None:
            e = module.embed_dim
            p = f"{pre}in_proj_weight"
            for k, piece in enumerate("qkv"):
                out.append(Operator(f"{p}[{piece}]", module, "mha", (p,), "in_proj_weight", row_range=(k * e, (k + 1) * e), input_slot=k))
        else:
            for k, piece in enumerate("qkv"):
                p = f"{pre}{piece}_proj_weight"
                out.append(Operator(p, module, "mha", (p,), f"{piece}_proj_weight", input_slot=k))
        p = f"{pre}out_proj.weight"
        out.append(Operator(p, module.out_proj, "linear", (p,), input_slot=None))
        return out
    if isinstance(module, torch.nn.RNNBase):
        return _recurrent_operators(module, pre)
    experts = _expert_params(module)
    if experts:
        return _expert_operators(module, pre, experts, input_width)
    return []


def _expert_operators(module: torch.nn.Module, pre: str, names: list[str], width: int | None) -> list[Operator]:
    """One operator per expert and 3-D parameter. Stored ``E x out x in`` (``F.linear``) unless the first
    registered parameter (the input projection) matches the module's input width on its middle axis only
    (``E x in x out``, ``x @ W``); the last registered one is the output projection (its own node sets)."""
    shapes = {n: tuple(getattr(module, n).shape) for n in names}
    first = shapes[names[0]]  # the input projection is registered first (gate_up / w1 before down / w2)
    if width is not None and width not in first[1:]:
        return []  # the module's input is not what its first 3-D weight multiplies: not a bank of experts
    transposed = width is not None and first[2] != width and first[1] == width
    axis = 1 if transposed else 2
    reads_input = {
        n: n == names[0] if width is None or len(names) == 1 else n != names[-1] and shapes[n][axis] == width
        for n in names
    }  # the last registered parameter is the output projection, even where its input width equals the block's
    ops = []
    for n in names:
        for e in range(shapes[n][0]):
            ops.append(
                Operator(f"{pre}{n}[{e}]", module, "expert", (f"{pre}{n}",), n, transposed=transposed, expert=e,
                         input_slot=0 if reads_input[n] else None)
            )
    return ops


def _claimed_children(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Submodules whose weights an operator of ``module`` already covers (LoRA pieces, MHA ``out_proj``)."""
    if _lora_parts(module) is not None or isinstance(module, torch.nn.MultiheadAttention):
        yield from (m for m in module.modules() if m is not module)


def find_operators(
    model: torch.nn.Module, input_widths: dict[int, int] | None = None
) -> list[tuple[str, torch.nn.Module, list[Operator]]]:
    """Every operator module of ``model`` with its operators, in registration order.

    Args:
        model: the module to search.
        input_widths: ``id(module) -> last dimension of the input it was seen reading`` from a forward
            pass; it orients MoE expert tensors and admits linear-like modules of unknown type.

    Returns:
        ``(module path, module, operators)`` per operator module.

    Example:
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Conv1d(8, 2, 3))
        >>> [(p, [o.kind for o in ops]) for p, _, ops in find_operators(mlp)]
        [('0', ['linear']), ('2', ['conv'])]
    """
    widths = input_widths or {}
    claimed: set[int] = set()
    out = []
    for name, mod in model.named_modules():
        if id(mod) in claimed:
            continue
        width = widths.get(id(mod))
        ops = _operators_of(mod, name, width)
        if not ops and width is not None:
            attr = linear_like(mod)
            if attr is not None:
                shape = tuple(getattr(mod, attr).shape)
                if width in shape:
                    p = f"{name}.{attr}" if name else attr
                    ops = [Operator(p, mod, "linear_like", (p,), attr, transposed=shape[1] != width)]
        if ops:
            out.append((name, mod, ops))
            claimed.update(id(m) for m in _claimed_children(mod))
    return out
