"""The one distributed helper: whether a multi-process group is running, this rank, and where to reduce."""

from __future__ import annotations

import torch

__all__ = ["distributed", "is_rank_zero", "rank_and_world", "sync_device"]


def distributed() -> bool:
    """Whether a process group with more than one process is initialised.

    Example:
        >>> distributed()
        False
    """
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    if not distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def is_rank_zero() -> bool:
    return rank_and_world()[0] == 0


def sync_device() -> torch.device:
    """The device collectives of this process group run on (CUDA for NCCL, else CPU)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
