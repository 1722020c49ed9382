"""Inputs for the one observation forward pass of :func:`~neuromfa_callback.architectures.resolve`.

Tried in order until one runs: the user's ``example_input``; a Hugging Face model's ``dummy_inputs``
(with ``decoder_input_ids`` added for encoder-decoders), or an input built from its config
(``pixel_values`` of ``config.image_size``, token ids below ``config.vocab_size``); then a guess from the
first weight-holding module (token ids for an ``nn.Embedding``, a float batch for an ``nn.Linear``, an
image for an ``nn.Conv2d`` ...). A module without a usable ``forward`` (a LightningModule defining only
``training_step``) is observed child by child.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from neuromfa_callback.architectures.dataflow import Observation, observe
from neuromfa_callback.architectures.operators import find_operators

__all__ = ["candidates", "discover", "merge"]

Candidate = tuple[str, Callable[[], Any]]


def _place(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
    if isinstance(x, Mapping):
        return {k: _place(v, device, dtype) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_place(v, device, dtype) for v in x)
    return x


def _device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _size(value: Any, default: int) -> int:
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return int(value) if isinstance(value, int) and value > 0 else default


def _hf_candidates(model: torch.nn.Module) -> list[Candidate]:
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "main_input_name"):
        return []
    out: list[Candidate] = []
    enc_dec = bool(getattr(cfg, "is_encoder_decoder", False))

    def dummy() -> dict[str, Any]:
        x = dict(model.dummy_inputs)
        if enc_dec and "decoder_input_ids" not in x and "input_ids" in x:
            x["decoder_input_ids"] = x["input_ids"]
        return x

    if hasattr(type(model), "dummy_inputs"):
        out.append(("dummy_inputs", dummy))
    name = model.main_input_name
    if name == "pixel_values":
        sub = getattr(cfg, "vision_config", None) or cfg
        c, hw = _size(getattr(sub, "num_channels", 3), 3), _size(getattr(sub, "image_size", 224), 224)
        out.append((f"pixel_values (1, {c}, {hw}, {hw}) from the config", lambda: {"pixel_values": torch.randn(1, c, hw, hw)}))
    elif name == "input_ids":
        vocab = _size(getattr(cfg, "vocab_size", None), 64)

        def ids() -> dict[str, Any]:
            x = {"input_ids": torch.randint(0, min(vocab, 64), (1, 8))}
            if enc_dec:
                x["decoder_input_ids"] = x["input_ids"].clone()
            return x

        out.append(("token ids (1, 8) from the config", ids))
    return out


def _guess_for(module: torch.nn.Module) -> list[Candidate]:
    """Inputs for a model whose first weight-holding module is ``module`` (none if its type says nothing)."""
    if isinstance(module, torch.nn.Embedding):
        n = min(module.num_embeddings, 64)
        return [("guessed input: token ids (1, 8)", lambda: torch.randint(0, n, (1, 8)))]
    found = [ops for _, m, ops in find_operators(module) if m is module]
    if not found:
        return []
    op = found[0][0]
    w = op.n_in
    if op.kind in ("linear", "conv1d_hf", "linear_like", "lora"):
        return [(f"guessed input: float batch (2, {w})", lambda: torch.randn(2, w)),
                (f"guessed input: float sequence (1, 8, {w})", lambda: torch.randn(1, 8, w))]
    if op.kind == "mha":
        return [(f"guessed input: (4, 2, {w}) query = key = value", lambda: (torch.randn(4, 2, w),) * 3)]
    if op.kind in ("conv", "conv_transpose"):
        spatial = op.stored().ndim - 2
        shapes = {1: [(64,)], 2: [(32, 32), (64, 64), (224, 224)], 3: [(8, 16, 16)]}.get(spatial, [])
        return [(f"guessed input: ({1}, {w}, {', '.join(map(str, s))})", lambda s=s: torch.randn(1, w, *s)) for s in shapes]
    return []


def _guesses(model: torch.nn.Module) -> list[Candidate]:
    """A guess from the first weight-holding module whose type tells what it reads (registration order)."""
    for m in model.modules():
        if any(True for _ in m.parameters(recurse=False)):
            guess = _guess_for(m)
            if guess:
                return guess
    return []


def candidates(model: torch.nn.Module) -> list[Candidate]:
    """The inputs tried for ``model`` when no ``example_input`` is given, placed on its device and dtype."""
    device, dtype = _device_dtype(model)
    return [(d, (lambda make=make: _place(make(), device, dtype))) for d, make in (*_hf_candidates(model), *_guesses(model))]


def merge(a: Observation, b: Observation) -> Observation:
    """Observations of separate forward passes (over disjoint modules) as one."""
    if a.empty:
        return b
    if b.empty:
        return a
    shift = 1 + max((k for ks in a.inputs.values() for k in ks), default=-1)
    n = len(a.order)
    return Observation(
        inputs={**a.inputs, **{m: tuple(k + shift for k in ks) for m, ks in b.inputs.items()}},
        pieces={**a.pieces, **b.pieces},
        order={**a.order, **{m: i + n for m, i in b.order.items()}},
        widths={**a.widths, **b.widths},
        source=a.source if a.source == b.source else f"{a.source}; {b.source}",
    )


def discover(model: torch.nn.Module, example_input: Any = None) -> Observation:
    """Observe one forward pass of ``model`` (see the module docstring).

    Raises:
        ValueError: ``example_input`` was given and the model does not run on it.
    """
    if example_input is not None:
        device, dtype = _device_dtype(model)
        obs, failures = observe(model, [("example_input", lambda: _place(example_input, device, dtype))])
        if obs.empty:
            raise ValueError(f"`example_input` did not run through {type(model).__name__}: {failures[-1]}"[:299])
        return obs
    obs, _ = observe(model, candidates(model))
    if not obs.empty:
        return obs
    for _, child in model.named_children():
        if find_operators(child):
            sub, _ = observe(child, candidates(child))
            obs = merge(obs, sub)
    return obs if not obs.empty else Observation(source="structure (no forward pass ran)")
