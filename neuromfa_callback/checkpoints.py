"""Loading models from checkpoints, treating every file as untrusted input.

Weights are read from safetensors, or with ``torch.load(..., weights_only=True)``; no arbitrary
object is ever unpickled. Supported inputs:

| path | how it is read |
|---|---|
| Hugging Face model folder (``config.json`` + ``*.safetensors`` or ``pytorch_model*.bin``) | config -> model class from ``config.architectures`` (else ``AutoModel``), weights loaded into it |
| ``file.safetensors`` | config from ``config=`` or a ``config.json`` beside it |
| Lightning ``file.ckpt`` | ``model_class="pkg.module:Class"``; ``Class(**hyper_parameters)`` then its ``state_dict`` |
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_model", "load_state_dict_safely"]


class CheckpointError(ValueError):
    """A checkpoint cannot be read (missing, unreadable, unsafe, or of an unknown kind)."""


def load_state_dict_safely(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a weights file: safetensors, or ``torch.load(weights_only=True)`` for ``.bin``/``.pt``/``.ckpt``.

    Raises:
        CheckpointError: the file is missing, corrupt, or holds pickled objects other than tensors
            and plain containers (a possibly malicious pickle is refused, and nothing in it runs).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises several types
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file contains pickled objects other than weights "
            "(loaded with torch.load(weights_only=True); nothing in it was executed). "
            "Convert it to safetensors if you trust its origin."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from err


def _config_from(path: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read the model config ({err})") from err


def _model_from_config(config: Any) -> torch.nn.Module:
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls(config)
    try:
        return transformers.AutoModel.from_config(config)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"unknown architecture in config ({type(config).__name__}): {err}") from err


def _load_into(model: torch.nn.Module, state: dict[str, Any], source: Path) -> torch.nn.Module:
    own = model.state_dict()
    # Hugging Face checkpoints may omit the base-model prefix (or carry one the model lacks).
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and not any(k in own for k in state) and any(f"{prefix}.{k}" in own for k in state):
        state = {f"{prefix}.{k}": v for k, v in state.items()}
    elif prefix and not any(k in own for k in state) and any(k.startswith(prefix + ".") for k in state):
        state = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    matched = [k for k in state if k in own]
    if not matched:
        raise CheckpointError(f"{source}: none of its {len(state)} tensors match {type(model).__name__}'s parameters")
    try:
        model.load_state_dict({k: state[k] for k in matched}, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not fit {type(model).__name__}: {err}") from err
    return model


def _import_class(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CheckpointError(f"Expected `model_class` as 'package.module:ClassName', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"cannot import `model_class` {spec!r}: {err}") from err


def load_model(
    path: str | os.PathLike[str], *, model_class: str | None = None, config: str | os.PathLike[str] | None = None
) -> torch.nn.Module:
    """Load a model for analysis (CPU, eval mode) from a checkpoint path.

    Args:
        path: a Hugging Face model folder, a ``.safetensors`` file, or a Lightning ``.ckpt``.
        model_class: for ``.ckpt``: ``"package.module:ClassName"`` of the LightningModule.
        config: for a bare ``.safetensors`` file: a ``config.json`` (or folder holding one).

    Raises:
        CheckpointError: anything that prevents loading, with one clear sentence.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: a model folder needs a config.json")
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not weights:
            raise CheckpointError(f"{path}: no *.safetensors or pytorch_model*.bin weights in the folder")
        model = _model_from_config(_config_from(path))
        state: dict[str, Any] = {}
        for w in weights:
            state.update(load_state_dict_safely(w))
        return _load_into(model, state, path).eval()
    if path.suffix == ".safetensors":
        cfg_path = Path(config) if config is not None else path.parent
        if cfg_path.is_file():
            cfg_path = cfg_path.parent if cfg_path.name == "config.json" else cfg_path
        if not (cfg_path / "config.json").is_file():
            raise CheckpointError(f"{path}: a .safetensors file needs a config: pass --config or put config.json beside it")
        model = _model_from_config(_config_from(cfg_path))
        return _load_into(model, load_state_dict_safely(path), path).eval()
    if path.suffix in (".ckpt", ".pt", ".pth"):
        ckpt = load_state_dict_safely(path)
        if model_class is None:
            raise CheckpointError(f"{path}: a Lightning checkpoint needs --model-class package.module:ClassName")
        cls = _import_class(model_class)
        hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
        try:
            module = cls(**hparams)
        except TypeError as err:
            raise CheckpointError(f"cannot build {model_class} from the checkpoint's hyper_parameters: {err}") from err
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
        return _load_into(module, state, path).eval()
    raise CheckpointError(
        f"{path}: unknown checkpoint kind (expected a model folder, .safetensors, or .ckpt), got suffix {path.suffix!r}"
    )


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file (small helper for configs)."""
    return json.loads(Path(path).read_text())
