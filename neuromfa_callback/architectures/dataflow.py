r"""Node sets from the model's own data flow: operators that read the same tensor share their input neurons.

:class:`DataflowRecorder` puts a forward pre-hook (``with_kwargs=True``) on every module that holds
weights and records, for the first call of each, which tensor it read. Two operators that read the
same tensor (same storage, shape, strides and version) read the same neurons, so their input
neurons are ONE node set: a Llama layer's ``q_proj``, ``k_proj`` and ``v_proj``; an MoE layer's router
and every expert's input projection; the cross-attention key/value projections of every decoder
layer of an encoder-decoder model (they all read the encoder's output). Operators that read a
module's internal activation (an expert's down projection, ``nn.MultiheadAttention.out_proj``) are
node sets of their own.

The recorder observes a forward pass that happens anyway (the callbacks use the first training
step's forward and remove the hooks after it) or one run on an example input
(:func:`observe`). A ``torch.compile``\ d submodule is run once more, eagerly, on the arguments it
was called with, since hooks inside a compiled graph do not fire.

Without any forward pass the fallback is structural (:func:`structural_keys`): operators that are
siblings under one parent module (not an ``nn.Sequential``/``nn.ModuleList``, whose children run
one after the other) and have the same input width form one node set. It can group an attention
output projection with q/k/v when their widths agree; pass ``example_input=`` to avoid it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from neuromfa_callback.architectures.operators import is_operator_module, linear_like

__all__ = ["DataflowRecorder", "Observation", "observe", "run_forward", "structural_keys"]


@dataclass
class Observation:
    """What one forward pass showed.

    Attributes:
        inputs: ``id(module) -> tuple of tensor keys`` it read (MHA: query, key, value), first call.
        order: ``id(module) -> index`` of its first call.
        widths: ``id(module) -> last dimension`` of its (first) input.
        source: how the pass came about (``"training step"``, ``"example_input"``, ...).
        pieces: ``id(module) -> row sizes`` when the module's output was split along its last
            dimension (``split``/``chunk``/``tensor_split``): a fused projection (GPT-2's ``c_attn``
            into q, k, v; a fused ``gate_up_proj``), sampled piece by piece.
    """

    inputs: dict[int, tuple[int, ...]] = field(default_factory=dict)
    pieces: dict[int, tuple[int, ...]] = field(default_factory=dict)
    order: dict[int, int] = field(default_factory=dict)
    widths: dict[int, int] = field(default_factory=dict)
    source: str = ""

    @property
    def empty(self) -> bool:
        return not self.order


def _floating(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _inputs_of(module: torch.nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
    if isinstance(module, torch.nn.MultiheadAttention):
        names = ("query", "key", "value")
        vals = [args[i] if i < len(args) else kwargs.get(n) for i, n in enumerate(names)]
        return [v for v in vals if _floating(v)]
    for x in (*args, *kwargs.values()):
        if _floating(x):
            return [x]
    return []


def _candidate(module: torch.nn.Module) -> bool:
    return is_operator_module(module) or linear_like(module) is not None


_SPLITS = {torch.split, torch.Tensor.split, torch.chunk, torch.Tensor.chunk, torch.tensor_split, torch.Tensor.tensor_split}


def _split_sizes(func: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """Row sizes of a split of ``x`` along its last dimension, else ``None``."""
    how = args[1] if len(args) > 1 else kwargs.get("split_size_or_sections", kwargs.get("split_size", kwargs.get(
        "chunks", kwargs.get("sections", kwargs.get("indices_or_sections")))))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    n = int(x.shape[-1]) if x.ndim else 0
    if not x.ndim or dim not in (-1, x.ndim - 1) or how is None:
        return None
    name = getattr(func, "__name__", "")
    if name == "split":
        if isinstance(how, int):
            return tuple(min(how, n - i) for i in range(0, n, how)) if how > 0 else None
        return tuple(int(v) for v in how)
    if name == "chunk" and isinstance(how, int) and how > 0:
        size = -(-n // how)
        return tuple(min(size, n - i) for i in range(0, n, size))
    if name == "tensor_split" and isinstance(how, int) and how > 0:
        return tuple(len(r) for r in torch.arange(n).tensor_split(how))
    return None


class _SplitWatch(TorchFunctionMode):
    """Sees every torch function call of the observed pass; records splits of operator outputs."""

    def __init__(self, recorder: DataflowRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.Tensor.__getitem__ and len(args) == 2 and isinstance(args[0], torch.Tensor):
            owner = self.recorder._outputs.get(id(args[0]))
            if owner is not None:
                self.recorder._slice(owner, args[0], args[1])
        elif func in _SPLITS and args and isinstance(args[0], torch.Tensor):
            owner = self.recorder._outputs.get(id(args[0]))
            if owner is not None and owner not in self.recorder.observation.pieces:
                try:
                    sizes = _split_sizes(func, args[0], args, kwargs)
                except Exception:  # noqa: BLE001 - observation must never break the forward pass
                    sizes = None
                if sizes and len(sizes) > 1:
                    self.recorder.observation.pieces[owner] = sizes
        return func(*args, **kwargs)


class DataflowRecorder:
    """Forward pre-hooks that record which tensor every weight-holding module reads.

    Example:
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> rec = DataflowRecorder(mlp)
        >>> _ = mlp(torch.randn(3, 4))
        >>> obs = rec.detach()
        >>> obs.inputs[id(mlp[0])] != obs.inputs[id(mlp[2])], obs.widths[id(mlp[2])]
        (True, 8)
    """

    def __init__(self, model: torch.nn.Module, source: str = "forward pass") -> None:
        self.observation = Observation(source=source)
        self._root = model
        self._tensors: list[torch.Tensor] = []  # kept alive so storage addresses are not reused
        self._keys: dict[tuple, int] = {}
        self._replaying = False
        self._outputs: dict[int, int] = {}  # id(output tensor) -> id(operator module), outputs kept alive below
        self._slices: dict[int, tuple[int, set[tuple[int, int]]]] = {}
        self._mode: _SplitWatch | None = None
        self._handles: list[Any] = self._attach(model)

    def _attach(self, root: torch.nn.Module) -> list[Any]:
        """Hooks on ``root``'s weight-holding modules; a compiled submodule gets a replay hook instead
        (no hook is put inside it, so its compiled graph is never invalidated)."""
        handles = []
        stack = [root]
        while stack:
            mod = stack.pop()
            if isinstance(getattr(mod, "_orig_mod", None), torch.nn.Module):
                handles.append(mod.register_forward_pre_hook(self._replay, with_kwargs=True))
                continue
            if _candidate(mod):
                handles.append(mod.register_forward_pre_hook(self._hook, with_kwargs=True))
                handles.append(mod.register_forward_hook(self._output))
            stack.extend(reversed(list(mod.children())))
        return handles

    def _key(self, t: torch.Tensor) -> int:
        local = t.to_local() if callable(getattr(t, "to_local", None)) else t  # DTensor (tensor parallel): its shard
        try:
            ptr = local.data_ptr()
        except (RuntimeError, NotImplementedError):  # tensors without storage (fake, meta subclasses)
            ptr = 0
        if ptr == 0:
            k: tuple = ("object", id(t))  # t is kept alive, so its id is unique for the pass
        else:
            k = (ptr, tuple(local.shape), local.stride(), local._version, local.dtype, str(local.device))
        if k not in self._keys:
            self._keys[k] = len(self._keys)
            self._tensors.append(t)
        return self._keys[k]

    def _slice(self, owner: int, x: torch.Tensor, index: Any) -> None:
        """``x[..., a:b]`` of an operator output: one piece of a fused projection (Phi-3's ``qkv_proj``)."""
        if not isinstance(index, tuple) or len(index) < 2 or index[0] is not Ellipsis or not isinstance(index[-1], slice):
            return
        if len(index) != 2 or index[1].step not in (None, 1):
            return
        start, stop, _ = index[1].indices(int(x.shape[-1]))
        self._slices.setdefault(owner, (int(x.shape[-1]), set()))[1].add((start, stop))

    def _output(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if isinstance(output, torch.Tensor) and id(module) not in self._outputs.values():
            self._outputs[id(output)] = id(module)
            self._tensors.append(output)

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if self._mode is None and self._handles and not torch.compiler.is_compiling():
            self._mode = _SplitWatch(self)  # on from the first weight-holding call until detach()
            self._mode.__enter__()
        obs = self.observation
        if id(module) in obs.order:
            return
        xs = _inputs_of(module, args, kwargs)
        if not xs:
            return
        obs.order[id(module)] = len(obs.order)
        obs.inputs[id(module)] = tuple(self._key(x) for x in xs)
        obs.widths[id(module)] = int(xs[0].shape[-1]) if xs[0].ndim else 0

    def _replay(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """A compiled submodule: run its original module eagerly once, so the hooks inside it fire."""
        if self._replaying or not self._handles:
            return
        self._replaying = True
        inner = self._attach(module._orig_mod)
        try:
            run_forward(module._orig_mod, args, kwargs)
        finally:
            for h in inner:
                h.remove()
            self._replaying = False

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> Observation:
        """Remove every hook and return the observation (tensors released)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for owner, (n, spans) in self._slices.items():
            cuts = sorted(spans)
            tiles = len(cuts) > 1 and cuts[0][0] == 0 and cuts[-1][1] == n and all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
            if tiles and owner not in self.observation.pieces:
                self.observation.pieces[owner] = tuple(b - a for a, b in cuts)
        self._outputs, self._slices = {}, {}
        self._tensors = []
        self._keys = {}
        return self.observation


@contextlib.contextmanager
def _eval_with_grad(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no batch-norm statistics updated) with autograd on (no fused inference fast paths)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, was in modes:
            m.training = was


def run_forward(model: torch.nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> None:
    """One forward pass for observation only: eval mode, outputs dropped, training modes restored."""
    with _eval_with_grad(model):
        out = model(*args, **kwargs)
    del out


def _fill(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x`` for the first required positional argument of ``model.forward`` and fresh copies for the others."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return (x,)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    n = sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)
    return (x, *(x.clone() for _ in range(n - 1)))


def observe(model: torch.nn.Module, candidates: list[tuple[str, Callable[[], Any]]]) -> tuple[Observation, list[str]]:
    """Run the first candidate input that ``model`` accepts, under a :class:`DataflowRecorder`.

    Args:
        model: the module to run.
        candidates: ``(description, make_input)`` pairs; ``make_input()`` returns a dict (keyword
            arguments), a tuple (positional) or a single tensor.

    Returns:
        The observation (empty if no candidate ran) and one line per failed candidate.
    """
    failures = []
    for desc, make in candidates:
        rec = DataflowRecorder(model, source=desc)
        try:
            x = make()
            args, kwargs = ((), dict(x)) if isinstance(x, Mapping) else ((x if isinstance(x, tuple) else _fill(model, x)), {})
            run_forward(model, args, kwargs)
        except Exception as err:  # noqa: BLE001 - a model refusing a guessed input is expected
            rec.detach()
            failures.append(f"{desc}: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}")
            continue
        obs = rec.detach()
        if not obs.empty:
            return obs, failures
        failures.append(f"{desc}: no weight-holding module was called")
    return Observation(source="structure (no forward pass ran)"), failures


def structural_keys(model: torch.nn.Module, ops_by_module: list[tuple[str, torch.nn.Module, int]]) -> dict[int, int]:
    """Fallback input keys: siblings under one non-container parent with the same input width share a key.

    Args:
        model: the analysed model.
        ops_by_module: ``(module path, module, input width)`` of every operator module reading its input.

    Returns:
        ``id(module) -> key``.
    """
    keys: dict[tuple[str, int] | int, int] = {}
    out = {}
    for path, mod, width in ops_by_module:
        parent_path = path.rsplit(".", 1)[0] if "." in path else ""
        parent = model.get_submodule(parent_path) if path else None
        if parent is None or isinstance(parent, (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)):
            k: tuple[str, int] | int = id(mod)
        else:
            k = (parent_path, width)
        out[id(mod)] = keys.setdefault(k, len(keys))
    return out
