"""Model families: find the analysed model inside what the user passes, and map it onto matrix groups.

Detection (``architecture="auto"``): Hugging Face models by ``config.model_type`` (no transformers
import), plain MLPs by structure (:mod:`.mlp`). Wrappers are looked through: ``torch.compile``
(``_orig_mod``), PEFT (``base_model.model``), ``DistributedDataParallel``/``DataParallel``/FSDP
(``module``), and a LightningModule (the one attribute holding a supported model). Parameter names
are relative to the detected model, so they do not change when it is wrapped or compiled.

Supported families: ``gpt_neox`` (Pythia), ``gpt2``, ``llama``, ``bert``, ``mlp``; each module's
docstring holds its layer mapping table.
"""

from __future__ import annotations

import importlib
from collections import Counter
from types import ModuleType
from typing import Any

import torch

from neuromfa_callback._checks import check_choice
from neuromfa_callback.architectures._layout import Layout, MatrixGroup, Selection

__all__ = ["ARCHITECTURES", "FAMILIES", "Layout", "MatrixGroup", "Selection", "family_module", "resolve"]

FAMILIES = ("gpt_neox", "gpt2", "llama", "bert", "mlp")
ARCHITECTURES = ("auto", *FAMILIES)
_TRANSFORMERS = ("gpt_neox", "gpt2", "llama", "bert")
_WRAPPER_CLASSES = ("DistributedDataParallel", "DataParallel", "FullyShardedDataParallel")
_SUPPORTED_TEXT = (
    "supported families: gpt_neox (Pythia; config.model_type 'gpt_neox'), gpt2 ('gpt2'), llama ('llama'), "
    "bert ('bert'), mlp (nn.Linear layers whose shapes chain, e.g. an nn.Sequential)"
)


def family_module(family: str) -> ModuleType:
    """The module implementing ``family`` (imported on first use).

    Example:
        >>> family_module("mlp").__name__
        'neuromfa_callback.architectures.mlp'
    """
    check_choice("family", family, FAMILIES)
    return importlib.import_module(f"neuromfa_callback.architectures.{family}")


def _join(path: str, attr: str) -> str:
    return f"{path}.{attr}" if path else attr


def _unwrap_once(module: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    inner = getattr(module, "_orig_mod", None)  # torch.compile's OptimizedModule
    if isinstance(inner, torch.nn.Module):
        return "_orig_mod", inner
    base = getattr(module, "base_model", None)  # PEFT: PeftModel.base_model (LoraModel).model
    if hasattr(module, "peft_config") and isinstance(getattr(base, "model", None), torch.nn.Module):
        return "base_model.model", base.model
    if type(module).__name__ in _WRAPPER_CLASSES and isinstance(getattr(module, "module", None), torch.nn.Module):
        return "module", module.module
    return None


def _is_lightning(module: torch.nn.Module) -> bool:
    return any(c.__name__ == "LightningModule" for c in type(module).__mro__)


def _family_of(module: torch.nn.Module, architecture: str) -> str | None:
    model_type = getattr(getattr(module, "config", None), "model_type", None)
    for fam in _TRANSFORMERS:
        if architecture in ("auto", fam) and model_type in family_module(fam).MODEL_TYPES:
            return fam
    if architecture in _TRANSFORMERS and model_type is None and not _is_lightning(module):
        return architecture  # explicit family on a model without a config: the layout checks the structure
    if architecture in ("auto", "mlp") and model_type is None and family_module("mlp").is_mlp(module):
        return "mlp"
    return None


def _candidates(module: torch.nn.Module, path: str, architecture: str) -> list[tuple[str, torch.nn.Module, str]]:
    unwrapped = _unwrap_once(module)
    if unwrapped is not None:
        return _candidates(unwrapped[1], _join(path, unwrapped[0]), architecture)
    if _is_lightning(module):
        hits = []
        for name, child in module.named_children():
            hits += _candidates(child, _join(path, name), architecture)
        if len(hits) != 1 and architecture in ("auto", "mlp") and family_module("mlp").is_mlp(module):
            return [(path, module, "mlp")]  # Linear layers held directly by the LightningModule
        return hits
    fam = _family_of(module, architecture)
    return [(path, module, fam)] if fam else []


def _unsupported(model: torch.nn.Module, architecture: str) -> ValueError:
    types = Counter(type(m).__name__ for m in model.modules())
    type_text = ", ".join(f"{t} x{n}" for t, n in types.most_common(12))
    linear = [
        f"{n} {tuple(m.weight.shape)}"
        for n, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2
    ]
    lin_text = ", ".join(linear[:8]) + (f", ... ({len(linear)} in all)" if len(linear) > 8 else "") or "none"
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    why = family_module("mlp").chain_break(model)
    return ValueError(
        f"Unsupported model {type(model).__name__} for architecture={architecture!r}"
        + (f" (config.model_type {model_type!r})" if model_type else "")
        + f": found module types {type_text}; linear-like layers (weight shape): {lin_text}"
        + ("" if model_type else f"; not an MLP: {why}")
        + f". {_SUPPORTED_TEXT}"
    )


def resolve(model: Any, architecture: str = "auto") -> Layout:
    """Find the supported model inside ``model`` and map it onto its matrix groups.

    Args:
        model: an ``nn.Module``: a Hugging Face model, an MLP, or one of them wrapped by
            ``torch.compile``, PEFT, DDP/FSDP or a LightningModule.
        architecture: ``"auto"`` or one of :data:`FAMILIES` to skip detection.

    Returns:
        The :class:`Layout` (family, where the model was found, matrix groups, sampler).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no supported model (the message lists the module types and linear-like layers
            found, and the supported families), or several candidates inside a LightningModule.

    Example:
        >>> import torch
        >>> layout = resolve(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)))
        >>> layout.family, [g.name for g in layout.groups]
        ('mlp', ['0.weight', '2.weight'])
    """
    check_choice("architecture", architecture, ARCHITECTURES)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Expected `model` to be a torch.nn.Module, got {type(model).__name__}")
    hits = _candidates(model, "", architecture)
    if not hits:
        raise _unsupported(model, architecture)
    if len(hits) > 1:
        listed = ", ".join(f"{p or '<root>'} ({f})" for p, _, f in hits)
        raise ValueError(f"Found several supported models in {type(model).__name__}: {listed}; pass the one to analyse")
    path, inner, fam = hits[0]
    return family_module(fam).build_layout(inner, path)
