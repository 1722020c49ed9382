"""Sharded parameters (``DTensor``: FSDP2 ``fully_shard``, tensor parallelism) gathered for a snapshot.

FSDP2 keeps each rank's shard of every parameter as a ``torch.distributed.tensor.DTensor``, under
the parameter's own name (no wrapper modules or flat parameters). :func:`gathered_parameters`
all-gathers every ``DTensor`` parameter of a module with ``DTensor.full_tensor()`` and puts the
full tensors in place of the shards while the body runs, then puts the shards back. Every rank
must enter it at the same point (the gathers are collectives, issued in the same order on every
rank because the module trees are equal). The gathered tensors are new tensors in the sharded
parameters' dtype (the fp32 master weights under a mixed-precision policy), so copies and views
made inside stay valid after the context ends; nothing of the training state is modified.

Peak extra memory on each rank: one full copy of the module's sharded parameters, for the
duration of the snapshot (the sampled submatrices copied inside are small).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["gathered_parameters", "has_sharded_parameters"]


def _dtensor_type() -> type | None:
    if not torch.distributed.is_available():
        return None
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch < 2.4
        return None
    return DTensor


def has_sharded_parameters(module: torch.nn.Module) -> bool:
    """Whether any parameter of ``module`` is a ``DTensor`` (sharded by FSDP2 or tensor parallelism)."""
    dtensor = _dtensor_type()
    return dtensor is not None and any(isinstance(p, dtensor) for p in module.parameters())


@contextmanager
def gathered_parameters(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Collective: ``module`` with every ``DTensor`` parameter replaced by its full tensor, then restored.

    A no-op (no collective) for a module without ``DTensor`` parameters. Shared (tied) parameters
    are gathered once. The module must not run forward or backward inside the context.

    Example:
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(4, 4))
        >>> with gathered_parameters(mlp) as m:
        ...     m is mlp
        True
    """
    dtensor = _dtensor_type()
    slots = []  # (owner module, attribute name, the sharded parameter)
    if dtensor is not None:
        for mod in module.modules():
            for name, p in mod._parameters.items():
                if isinstance(p, dtensor):
                    slots.append((mod, name, p))
    if not slots:
        yield module
        return
    full: dict[int, torch.nn.Parameter] = {}
    try:
        with torch.no_grad():
            for mod, name, p in slots:  # same order on every rank: one all-gather per parameter
                if id(p) not in full:
                    full[id(p)] = torch.nn.Parameter(p.full_tensor(), requires_grad=False)
                mod._parameters[name] = full[id(p)]
        yield module
    finally:
        for mod, name, p in slots:
            mod._parameters[name] = p
