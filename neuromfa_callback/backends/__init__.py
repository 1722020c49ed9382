"""Backend selection and CSR input validation.

``numpy`` is the float64 oracle; ``torch`` runs the same algorithm on the input's device;
``cupy`` is the GPU box-counting kernel (:mod:`neuromfa_callback.backends.cupy_backend`).
``auto`` follows the input: numpy arrays -> numpy, CPU tensors -> torch, CUDA tensors -> cupy when CuPy
is installed and the kernel passed its known-answer self-check on that device, else torch. ``auto``
never picks a backend that cannot run; an explicit choice that cannot run raises. Importing this
module never touches the CUDA driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuromfa_callback._checks import check_choice
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["check_backend", "compute_partition", "partition_chunks", "resolve_backend", "validate_csr"]

_NAMES = ("auto", "numpy", "torch", "cupy")


def _is_tensor(x: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _cuda_backend(device: Any) -> str:
    """``"cupy"`` if the kernel may run on CUDA ``device`` (CuPy installed, self-check passed), else ``"torch"``."""
    from neuromfa_callback.backends.cupy_backend import cupy_ready

    return "cupy" if cupy_ready(device) else "torch"


def resolve_backend(backend: str, distances: Any) -> str:
    """The backend that ``backend`` means for this input.

    Example:
        >>> import numpy as np, torch
        >>> resolve_backend("auto", np.ones(3)), resolve_backend("auto", torch.ones(3))
        ('numpy', 'torch')
    """
    if backend != "auto":
        return backend
    if _is_tensor(distances):
        return _cuda_backend(distances.device) if distances.is_cuda else "torch"
    return "numpy"


def check_backend(backend: str, device: Any = None) -> str:
    """The backend that will run for weights on ``device``, or a clear error now (for a callback's ``setup``).

    ``"numpy"`` and ``"torch"`` always run. ``"cupy"`` needs CuPy, a CUDA GPU and a passing kernel
    self-check (run here, once per device). ``"auto"`` gives ``"numpy"`` for CPU weights (or no device:
    the network path analyses CPU weights with NumPy) and, for a CUDA device, ``"cupy"`` when the kernel
    may run there, else ``"torch"``; it never raises for lack of CuPy or a GPU.

    Args:
        backend: ``"auto"``, ``"numpy"``, ``"torch"`` or ``"cupy"``.
        device: where the weights live (``torch.device`` or string); ``None``: CPU, except for ``"cupy"``
            (the current CUDA device).

    Returns:
        The backend name that will run.

    Raises:
        ValueError: ``backend`` is not one of the four names.
        ImportError: ``"cupy"`` without CuPy (the message gives ``pip install 'neuromfa-callback[cuda12]'``).
        RuntimeError: ``"cupy"`` without a CUDA GPU, or the kernel failed its self-check on that device.

    Example:
        >>> check_backend("auto"), check_backend("torch", "cpu")
        ('numpy', 'torch')
        >>> check_backend("tpu")
        Traceback (most recent call last):
        ...
        ValueError: Expected `backend` to be one of ('auto', 'numpy', 'torch', 'cupy'), got 'tpu'
    """
    check_choice("backend", backend, _NAMES)
    if backend in ("numpy", "torch"):
        return backend
    import torch

    dev = torch.device(device) if device is not None else None
    if backend == "cupy":
        from neuromfa_callback.backends.cupy_backend import require_cupy, self_check

        require_cupy()
        if dev is not None and dev.type != "cuda":
            dev = None  # CPU weights are copied to the current CUDA device
        self_check(dev)
        return "cupy"
    if dev is None or dev.type != "cuda":
        return "numpy"
    return _cuda_backend(dev)


def _check_indptr_values(first: int, last: int, decreasing: bool, n_dist: int) -> None:
    if first != 0:
        raise ValueError(f"Expected `indptr[0]` == 0, got {first}")
    if decreasing:
        raise ValueError("Expected `indptr` to be non-decreasing, got a decreasing step")
    if last != n_dist:
        raise ValueError(f"Expected `indptr[-1]` == len(distances) == {n_dist}, got {last}")


def validate_csr(indptr: Any, distances: Any) -> tuple[Any, Any]:
    """Check and normalise a CSR pair to int64 / float64 of the same kind (numpy or torch).

    Raises:
        TypeError: non-integer ``indptr`` or non-real ``distances``.
        ValueError: wrong shapes, ``indptr`` not starting at 0, decreasing, or not ending at
            ``len(distances)``; negative, NaN or infinite distances.
    """
    if _is_tensor(indptr) or _is_tensor(distances):
        import torch

        ip = indptr if _is_tensor(indptr) else torch.as_tensor(np.asarray(indptr))
        ds = distances if _is_tensor(distances) else torch.as_tensor(np.asarray(distances))
        if ip.dtype.is_floating_point or ip.dtype.is_complex or ip.dtype == torch.bool:
            raise TypeError(f"Expected `indptr` to hold integers, got dtype {ip.dtype}")
        if ds.dtype.is_complex or ds.dtype == torch.bool:
            raise TypeError(f"Expected `distances` to hold real numbers, got dtype {ds.dtype}")
        if ip.ndim != 1 or ip.numel() < 1 or ds.ndim != 1:
            raise ValueError(f"Expected 1-D `indptr` (n+1,) and `distances`, got shapes {tuple(ip.shape)}, {tuple(ds.shape)}")
        ds = ds.to(torch.float64)
        ip = ip.to(device=ds.device, dtype=torch.int64)
        decreasing = bool((ip[1:] < ip[:-1]).any()) if ip.numel() > 1 else False
        _check_indptr_values(int(ip[0]), int(ip[-1]), decreasing, ds.numel())
        if ds.numel():
            bad = ~torch.isfinite(ds)
            if bool(bad.any()):
                raise ValueError(f"Expected finite `distances`, got {ds[bad][0].item()} at index {int(torch.nonzero(bad)[0])}")
            if bool((ds < 0).any()):
                i = int(torch.nonzero(ds < 0)[0])
                raise ValueError(f"Expected `distances` >= 0, got {ds[i].item()} at index {i}")
        return ip, ds
    ip = np.asarray(indptr)
    ds = np.asarray(distances)
    if ip.dtype.kind not in "iu":
        raise TypeError(f"Expected `indptr` to hold integers, got dtype {ip.dtype}")
    if ds.dtype.kind not in "iuf":
        raise TypeError(f"Expected `distances` to hold real numbers, got dtype {ds.dtype}")
    if ip.ndim != 1 or ip.size < 1 or ds.ndim != 1:
        raise ValueError(f"Expected 1-D `indptr` (n+1,) and `distances`, got shapes {ip.shape}, {ds.shape}")
    ip = ip.astype(np.int64, copy=False)
    ds = ds.astype(np.float64, copy=False)
    decreasing = bool((ip[1:] < ip[:-1]).any()) if ip.size > 1 else False
    _check_indptr_values(int(ip[0]), int(ip[-1]), decreasing, ds.size)
    if ds.size and not (ds.min() >= 0.0 and ds.max() < np.inf):  # two reductions; NaN fails both
        bad = ~np.isfinite(ds)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"Expected finite `distances`, got {ds[i]} at index {i}")
        i = int(np.flatnonzero(ds < 0)[0])
        raise ValueError(f"Expected `distances` >= 0, got {ds[i]} at index {i}")
    return ip, ds


def compute_partition(
    indptr: Any,
    distances: Any,
    *,
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
    backend: str,
    groups: np.ndarray | None = None,
    n_groups: int = 1,
) -> PartitionSums | tuple[PartitionSums, ...]:
    """Validate the CSR input, pick the backend and compute the partition sums.

    With ``groups`` (the group of every node, ints in ``[0, n_groups)``), a tuple of the partition
    sums of each group: one pass on NumPy, one call per group elsewhere.
    """
    name = resolve_backend(backend, distances)
    ip, ds = validate_csr(indptr, distances)
    if name == "numpy":
        from neuromfa_callback.backends.numpy_backend import partition_sums_numpy

        if _is_tensor(ds):
            ip, ds = ip.cpu().numpy(), ds.cpu().numpy()
        return partition_sums_numpy(ip, ds, q, grid, min_neighbours, groups, n_groups)
    if groups is not None:
        return tuple(_group_csr(ip, ds, groups, g, q, grid, min_neighbours, name) for g in range(n_groups))
    if name == "torch":
        import torch

        from neuromfa_callback.backends.torch_backend import partition_sums_torch

        if not _is_tensor(ds):
            ip, ds = torch.from_numpy(ip), torch.from_numpy(ds)
        return partition_sums_torch(ip, ds, q, grid, min_neighbours)
    from neuromfa_callback.backends.cupy_backend import partition_sums_cupy

    return partition_sums_cupy(ip, ds, q, grid, min_neighbours)


def partition_chunks(
    chunks: Any,
    *,
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
    backend: str,
    n_groups: int | None = None,
) -> PartitionSums | tuple[PartitionSums, ...]:
    """The partition sums of a network given as CSR chunks ``(indptr, distances, groups)`` (see
    ``NeuronNetwork.chunks``), added up: one :class:`PartitionSums`, or one per group with ``n_groups``.

    The single path from a network's chunks to its sums, in the training process and in the analysis
    worker alike (this module imports no torch: NumPy chunks are computed on NumPy).
    """
    grouped = n_groups is not None
    totals = [PartitionSums.empty(q, grid, min_neighbours, backend=backend) for _ in range(n_groups or 1)]
    for indptr, dist, groups in chunks:
        name = backend
        if isinstance(dist, np.ndarray):
            if backend == "auto":
                name = "numpy"
            elif backend != "numpy":
                import torch

                indptr, dist = torch.from_numpy(indptr), torch.from_numpy(dist)
        elif backend == "numpy":
            indptr, dist = indptr.cpu().numpy(), dist.cpu().numpy()
        kw = {"groups": groups, "n_groups": n_groups} if grouped else {}
        parts = compute_partition(indptr, dist, q=q, grid=grid, min_neighbours=min_neighbours, backend=name, **kw)
        totals = [t + p for t, p in zip(totals, parts if grouped else (parts,))]
    return tuple(totals) if grouped else totals[0]


def _group_csr(ip: Any, ds: Any, groups: np.ndarray, g: int, q: np.ndarray, grid: RadiusGrid, min_neighbours: int,
               name: str) -> PartitionSums:
    """The partition sums of group ``g``'s nodes alone (their CSR rows cut out)."""
    nodes = np.flatnonzero(np.asarray(groups) == g)
    if nodes.size == 0:
        return PartitionSums.empty(q, grid, min_neighbours, backend=name)
    ipn = ip.cpu().numpy() if _is_tensor(ip) else np.asarray(ip)
    lens = ipn[nodes + 1] - ipn[nodes]
    take = np.concatenate([np.arange(a, b) for a, b in zip(ipn[nodes], ipn[nodes + 1])]) if lens.sum() else np.zeros(0, dtype=np.int64)
    sub_ip = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    if _is_tensor(ds):
        import torch

        sub_ds, sub_ip = ds[torch.as_tensor(take, device=ds.device)], torch.as_tensor(sub_ip, device=ds.device)
    else:
        sub_ds = ds[take]
    return compute_partition(sub_ip, sub_ds, q=q, grid=grid, min_neighbours=min_neighbours, backend=name)
