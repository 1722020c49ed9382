"""Loading models from checkpoints, treating every file as untrusted input.

Weights are read from safetensors, or with ``torch.load(..., weights_only=True)``; no arbitrary
object is ever unpickled. Supported inputs:

| path | how it is read |
|---|---|
| Hugging Face model folder (``config.json`` + weights) | config -> model class from ``config.architectures`` (else ``AutoModel``); weights from ``model.safetensors``, ``pytorch_model.bin``, or every shard listed in ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json`` |
| ``file.safetensors`` (or ``.bin``) | config from ``config=`` or a ``config.json`` beside it |
| Lightning ``file.ckpt`` (or ``.pt``/``.pth``) | ``model_class="pkg.module:Class"``; ``Class(**hyper_parameters)`` then its ``state_dict`` |

Hugging Face weights go through ``from_pretrained(None, config=..., state_dict=...)``, so the
library's own key renames (transformers 5 saves GPT-NeoX's output layer as ``embed_out``) and tied
weights apply. A model is returned only when every parameter and persistent buffer got a value
from the checkpoint, or shares its tensor with one that did (tied weights, found by identity):
a checkpoint that lacks a weight would otherwise be analysed half-initialised. Every failure is a
:class:`CheckpointError` whose message is one line naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_model", "load_state_dict_safely"]

_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
_SHARD_RE = re.compile(r"^(.*)-(\d+)-of-(\d+)\.(safetensors|bin)$")
_LIST_AT_MOST = 6


class CheckpointError(ValueError):
    """A checkpoint cannot be read (missing, unreadable, incomplete, unsafe, or of an unknown kind)."""


def _short(err: BaseException, limit: int = 240) -> str:
    """An exception's first sentence as one line of at most ``limit`` characters."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text).split(". ")[0]  # torch's C++ prefix
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    return shown + (f" (+{len(keys) - _LIST_AT_MOST} more)" if len(keys) > _LIST_AT_MOST else "")


# ---------------------------------------------------------------------------- weight files
def _sniff(path: Path) -> str:
    """What a file holds, from its first bytes: safetensors, torch-zip, torch-pickle, empty, text or unknown."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    size = path.stat().st_size
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-pickle"
    if len(head) >= 9 and int.from_bytes(head[:8], "little") + 8 <= size and head[8:9] == b"{":
        return "safetensors"
    text = head.decode("utf-8", errors="ignore")  # a character cut at byte 512 is dropped, nothing more
    if len(text.encode("utf-8")) < len(head) - 3:
        return "unknown"
    return "text" if all(c.isprintable() or c in "\r\n\t" for c in text) else "unknown"


_WHAT = {"empty": "an empty file", "text": "a text file", "safetensors": "a safetensors file",
         "torch-zip": "a PyTorch checkpoint", "torch-pickle": "a PyTorch checkpoint"}


#: The first torch whose ``torch.load(weights_only=True)`` has no published code-execution bypass.
SAFE_PICKLE_TORCH = (2, 10)


def _torch_version() -> tuple[int, int]:
    major, minor = (int(re.match(r"\d+", x)[0]) for x in torch.__version__.split(".")[:2])
    return major, minor


def load_state_dict_safely(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a weights file: safetensors, or ``torch.load(weights_only=True)`` for ``.bin``/``.pt``/``.ckpt``.

    The format is checked from the file's first bytes before anything parses it, so a text file, an
    empty file or a file of the other format gets a plain reason instead of a parser's error.

    Raises:
        CheckpointError: the file is missing, empty, truncated, of another format, or holds pickled
            objects other than tensors and plain containers (a possibly malicious pickle is refused,
            and nothing in it runs).

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "notes.ckpt"
        >>> _ = bad.write_text("loss went down")
        >>> load_state_dict_safely(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        neuromfa_callback.checkpoints.CheckpointError: .../notes.ckpt: it is a text file, not a PyTorch checkpoint
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    kind = _sniff(path)
    if path.suffix == ".safetensors":
        if kind != "safetensors":
            raise CheckpointError(f"{path}: it is {_what(path, kind)}, not a safetensors file")
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises several types
            raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt: {_short(err)})") from err
    if kind not in ("torch-zip", "torch-pickle"):
        hint = " (weights only? name it .safetensors, with a config.json beside it)" if kind == "safetensors" else ""
        raise CheckpointError(f"{path}: it is {_what(path, kind)}, not a PyTorch checkpoint{hint}")
    if _torch_version() < SAFE_PICKLE_TORCH:
        raise CheckpointError(
            f"{path}: refused to load a pickle-based checkpoint with torch {torch.__version__}: torch.load(weights_only=True) "
            f"can run code from a crafted file before torch {'.'.join(map(str, SAFE_PICKLE_TORCH))} (CVE-2025-32434, "
            "CVE-2026-24747); upgrade torch, or convert the file to safetensors where you trust it"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Unsupported class" in str(err):
            raise CheckpointError(
                f"{path}: refused to load: the file contains pickled objects other than weights "
                "(loaded with torch.load(weights_only=True); nothing in it was executed). "
                "Convert it to safetensors if you trust its origin."
            ) from err
        detail = re.search(r"WeightsUnpickler error: (.*)", str(err))
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_short(detail[1] if detail else err)})") from err
    except Exception as err:  # noqa: BLE001 - truncated zips and pickles raise many types
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt: {_short(err)})") from err


def _what(path: Path, kind: str) -> str:
    if kind in _WHAT:
        return _WHAT[kind]
    with open(path, "rb") as fh:
        return f"a file of unknown format (starting {fh.read(8)!r})"


def _tensors(obj: Any, source: Path, what: str = "state dict") -> dict[str, torch.Tensor]:
    """``obj`` if it is a mapping of names to tensors, else a :class:`CheckpointError` saying what it is."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a {what} (names -> tensors), got a {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: expected a {what} (names -> tensors), but {key!r} is not a tensor ({type(value).__name__})"
            )
    return dict(obj)


def _index_shards(folder: Path, index: Path) -> tuple[list[Path], dict[str, str]]:
    """The shard files an index lists (each must exist in ``folder``) and its tensor -> shard map."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("'weight_map' is not a mapping of tensor names to file names")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{folder}: {index.name} is not a readable shard index ({_short(err)})") from err
    shards = sorted(set(weight_map.values()))
    outside = [s for s in shards if Path(s).name != s or s in (".", "..")]
    if outside:
        raise CheckpointError(f"{folder}: {index.name} names a file outside the folder: {outside[0]!r}")
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder}: {len(missing)} of the {len(shards)} shards listed in {index.name} are missing: {_names(missing)}"
        )
    return [folder / s for s in shards], weight_map


def _folder_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The weight files of a model folder, and the index's tensor -> shard map when it has one."""
    for name in _INDEXES:
        if (folder / name).is_file():
            return _index_shards(folder, folder / name)
    for name in _SINGLE_FILES:
        if (folder / name).is_file():
            return [folder / name], None
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(
            f"{folder}: no weights in the folder (expected model.safetensors, pytorch_model.bin, or a shard index)"
        )
    groups: dict[tuple[str, str, int], set[int]] = {}
    for f in files:
        m = _SHARD_RE.match(f.name)
        if m:
            groups.setdefault((m[1], m[4], int(m[3])), set()).add(int(m[2]))
    for (stem, ext, total), present in groups.items():
        absent = [f"{stem}-{i:05d}-of-{total:05d}.{ext}" for i in range(1, total + 1) if i not in present]
        if absent:
            raise CheckpointError(f"{folder}: shards missing (and no index file): {_names(absent)}")
    return files, None


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    files, weight_map = _folder_files(folder)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(_tensors(load_state_dict_safely(f), f))
    if weight_map is not None:
        absent = [k for k in weight_map if k not in state]
        if absent:
            raise CheckpointError(
                f"{folder}: tensors listed in the index are missing from their shards: "
                + ", ".join(f"{k} ({weight_map[k]})" for k in absent[:_LIST_AT_MOST])
                + (f" (+{len(absent) - _LIST_AT_MOST} more)" if len(absent) > _LIST_AT_MOST else "")
            )
    return state


# ------------------------------------------------------------------------------ models
def _config_from(path: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read the model config ({_short(err)})") from err


def _hf_class(config: Any, source: Path) -> type:
    import transformers

    for name in getattr(config, "architectures", None) or []:  # names from an untrusted file: models only
        cls = getattr(transformers, str(name), None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    try:
        return type(transformers.AutoModel.from_config(config))
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{source}: unknown architecture in config ({type(config).__name__}): {_short(err)}") from err


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading warnings and progress bars (failures become one CheckpointError)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _refuse_missing(model: torch.nn.Module, missing: set[str], source: Path) -> None:
    """Raise if a parameter or persistent buffer got no value (tied ones count when their twin did)."""
    named: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    named.update(model.named_buffers(remove_duplicate=False))
    persistent = set(model.state_dict())
    loaded_ids = {id(t) for k, t in named.items() if k in persistent and k not in missing}
    lacking = sorted(k for k in missing if k in persistent and (k not in named or id(named[k]) not in loaded_ids))
    if not lacking:
        return
    matrices = [k for k in lacking if k in named and named[k].ndim >= 2]
    others = [k for k in lacking if k not in matrices]
    parts = ([f"weight matrices {_names(matrices)}"] if matrices else []) + (
        [f"{'other tensors' if matrices else 'tensors'} {_names(others)}"] if others else []
    )
    raise CheckpointError(
        f"{source}: refused: {len(lacking)} of {type(model).__name__}'s tensors are missing from the checkpoint "
        f"(they would keep their random initialisation): {'; '.join(parts)}"
    )


def _hf_model(config: Any, state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    """A transformers model with ``state`` loaded through ``from_pretrained`` (renames, ties), checked complete."""
    cls = _hf_class(config, source)
    try:
        with _quiet_transformers():
            model, info = cls.from_pretrained(
                None, config=config, state_dict=state, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except Exception as err:  # noqa: BLE001 - the library raises many types for bad weights
        raise CheckpointError(f"{source}: weights do not fit {cls.__name__}: {_short(err)}") from err
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        key, got, want = mismatched[0]
        raise CheckpointError(
            f"{source}: weights do not fit {cls.__name__} built from its config: {key} has shape "
            f"{tuple(got)} in the checkpoint, {tuple(want)} in the model"
            + (f" (+{len(mismatched) - 1} more mismatched)" if len(mismatched) > 1 else "")
        )
    _refuse_missing(model, set(info.get("missing_keys") or ()), source)
    return model.float()


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    """Load ``state`` into a plain module (``load_state_dict``), refusing missing tensors and bad shapes."""
    own = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and not any(k in own for k in state) and any(f"{prefix}.{k}" in own for k in state):
        state = {f"{prefix}.{k}": v for k, v in state.items()}
    elif prefix and not any(k in own for k in state) and any(k.startswith(prefix + ".") for k in state):
        state = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    matched = {k: v for k, v in state.items() if k in own}
    if not matched:
        raise CheckpointError(f"{source}: none of its {len(state)} tensors match {type(model).__name__}'s parameters")
    wrong = [k for k, v in matched.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{source}: weights do not fit {type(model).__name__}: {k} has shape {tuple(matched[k].shape)} "
            f"in the checkpoint, {tuple(own[k].shape)} in the model"
            + (f" (+{len(wrong) - 1} more mismatched)" if len(wrong) > 1 else "")
        )
    _refuse_missing(model, set(own) - set(matched), source)
    try:
        model.load_state_dict(matched, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not fit {type(model).__name__}: {_short(err)}") from err
    return model


def _import_class(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CheckpointError(f"Expected `model_class` as 'package.module:ClassName', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"cannot import `model_class` {spec!r}: {err}") from err


def _lightning(path: Path, model_class: str | None) -> torch.nn.Module:
    ckpt = load_state_dict_safely(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a checkpoint dict (with a 'state_dict'), got a {type(ckpt).__name__}")
    state = _tensors(ckpt.get("state_dict", ckpt), path)
    if model_class is None:
        raise CheckpointError(f"{path}: a Lightning checkpoint needs --model-class package.module:ClassName")
    cls = _import_class(model_class)
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"{path}: expected 'hyper_parameters' to be a dict, got a {type(hparams).__name__}")
    try:
        module = cls(**hparams)
    except Exception as err:  # noqa: BLE001 - the user's class may raise anything
        raise CheckpointError(f"{path}: cannot build {model_class} from the checkpoint's hyper_parameters: {_short(err)}") from err
    return _load_into(module, state, path)


def load_model(
    path: str | os.PathLike[str], *, model_class: str | None = None, config: str | os.PathLike[str] | None = None
) -> torch.nn.Module:
    """Load a model for analysis (CPU, float32, eval mode) from a checkpoint path.

    Args:
        path: a Hugging Face model folder (single file or shards with their index), a
            ``.safetensors``/``.bin`` weights file, or a Lightning ``.ckpt``.
        model_class: for ``.ckpt``: ``"package.module:ClassName"`` of the LightningModule.
        config: for a bare weights file: a ``config.json`` (or folder holding one).

    Returns:
        The model, every parameter and persistent buffer loaded from the checkpoint.

    Raises:
        CheckpointError: anything that prevents a complete load, in one line naming the path: a
            missing or unreadable file, a shard listed in the index but absent, tensors the model
            has but the checkpoint lacks (named, weight matrices first), mismatched shapes, a
            refused pickle.

    Example:
        >>> load_model("no/such/checkpoint")
        Traceback (most recent call last):
        ...
        neuromfa_callback.checkpoints.CheckpointError: no/such/checkpoint: no such file or directory
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: a model folder needs a config.json")
        cfg = _config_from(path)
        return _hf_model(cfg, _read_folder(path), path).eval()
    if path.suffix in (".safetensors", ".bin"):
        cfg_path = Path(config) if config is not None else path.parent
        if cfg_path.is_file():
            cfg_path = cfg_path.parent if cfg_path.name == "config.json" else cfg_path
        if not (cfg_path / "config.json").is_file():
            raise CheckpointError(f"{path}: a weights file needs a config: pass --config or put config.json beside it")
        state = _tensors(load_state_dict_safely(path), path)
        return _hf_model(_config_from(cfg_path), state, path).eval()
    if path.suffix in (".ckpt", ".pt", ".pth"):
        return _lightning(path, model_class).eval()
    raise CheckpointError(
        f"{path}: unknown checkpoint kind (expected a model folder, .safetensors, or .ckpt), got suffix {path.suffix!r}"
    )
