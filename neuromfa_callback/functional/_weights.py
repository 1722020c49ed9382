"""Tensor helpers for :mod:`neuromfa_callback.functional.network`: chunked checks, RMS, CSR pieces, copies, nulls.

Every helper walks a matrix column chunk by column chunk (``CHUNK`` float64 elements at a time), so a
whole weight matrix is never converted to float64 or to a boolean mask at once. A "matrix" here is a
``rows x n_in`` tensor (a sampled submatrix) or an :class:`~neuromfa_callback.architectures.Operator`
(read through ``columns(j0, j1)``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from neuromfa_callback.architectures.operators import Operator

__all__ = [
    "CHUNK",
    "CUDA_CHUNK",
    "abs_scaled_columns",
    "check_finite",
    "columns",
    "count_nonzero",
    "csr_of",
    "matrix_rms",
    "move",
    "null_matrix",
    "shape_of",
]

CHUNK = 1 << 15  # float64 elements per streamed piece on CPU (256 KiB): extra peak memory ~ 11-22 MiB on Pythia-410m (benchmarks/bench_memory.py)
CUDA_CHUNK = 1 << 24  # on CUDA: large pieces amortise kernel launches (128 MiB of float64 temporaries)


def shape_of(w: Any) -> tuple[int, int]:
    """``(rows, n_in)`` of a tensor or an operator."""
    if isinstance(w, Operator):
        return w.n_rows, w.n_in
    return int(w.shape[0]), int(w.shape[1])


def columns(w: Any, j0: int, j1: int) -> torch.Tensor:
    """Columns ``j0..j1-1`` of a tensor or an operator, ``rows x (j1 - j0)``."""
    return w.columns(j0, j1) if isinstance(w, Operator) else w[:, j0:j1]


def _steps(w: Any) -> range:
    rows, n_in = shape_of(w)
    step = max(1, CHUNK // max(rows, 1))
    return range(0, n_in, step)


def move(w: Any, device: torch.device, non_blocking: bool, copy: bool) -> torch.Tensor:
    """``w`` on ``device`` (an operator is materialised); CUDA -> CPU with ``non_blocking`` goes through pinned memory."""
    if isinstance(w, Operator):
        w, copy = w.columns(0, w.n_in), True
    if device.type == "cpu" and w.is_cuda and non_blocking:
        out = torch.empty(w.shape, dtype=w.dtype, pin_memory=True)
        return out.copy_(w, non_blocking=True)
    return w.to(device, non_blocking=non_blocking, copy=copy)


def count_nonzero(w: Any) -> int:
    """Number of entries of ``w`` that are not exactly 0."""
    n_in, steps = shape_of(w)[1], _steps(w)
    return sum(int(torch.count_nonzero(columns(w, j, min(n_in, j + steps.step)))) for j in steps)


def abs_scaled_columns(weights: tuple[Any, ...], scales: tuple[float, ...], j0: int, j1: int) -> Any:
    """``|w[:, j0:j1]| * scale`` of every matrix, stacked, float64, node-major ``(j1 - j0, rows)``.

    NumPy on CPU (zero-copy view of the weights, one float64 temporary per chunk), torch elsewhere.
    The weights are never modified.
    """
    parts = []
    for w, s in zip(weights, scales):
        chunk = columns(w, j0, j1)
        if chunk.device.type == "cpu":
            if chunk.dtype not in (torch.float16, torch.float32, torch.float64):
                chunk = chunk.float()  # bfloat16 & co: exact in float32, one chunk at a time
            a = np.abs(chunk.numpy(), dtype=np.float64)
        else:
            a = chunk.to(torch.float64).abs()  # abs() allocates, so a float64 weight is not modified
        if s != 1.0:
            a *= s
        parts.append(a)
    if len(parts) == 1:
        return parts[0].T
    return (np.concatenate(parts, 0) if isinstance(parts[0], np.ndarray) else torch.cat(parts, 0)).T


def csr_of(pieces: list[Any], drop_zeros: bool) -> tuple[Any, Any]:
    """CSR (indptr, distances ``1/|w|``) of node-major ``|w|`` pieces (all NumPy or all torch).

    Exact zeros are dropped (``drop_zeros``) or become distance 0, which the ``1 < d`` filter removes.
    """
    if isinstance(pieces[0], np.ndarray):
        absw = np.concatenate([p.reshape(-1) for p in pieces])
        nz = absw != 0
        if drop_zeros:
            lens = np.concatenate([np.count_nonzero(p, axis=1) for p in pieces]).astype(np.int64)
            dist = 1.0 / absw[nz]
        else:
            lens = np.concatenate([np.full(p.shape[0], p.shape[1], dtype=np.int64) for p in pieces])
            dist = np.zeros_like(absw)
            np.divide(1.0, absw, out=dist, where=nz)
        indptr = np.zeros(lens.size + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        return indptr, dist
    absw = torch.cat([p.reshape(-1) for p in pieces])
    nz = absw != 0
    if drop_zeros:
        lens = torch.cat([(p != 0).sum(1) for p in pieces])
        dist = 1.0 / absw[nz]
    else:
        lens = torch.cat([torch.full((p.shape[0],), p.shape[1], dtype=torch.int64, device=absw.device) for p in pieces])
        dist = torch.where(nz, 1.0 / absw, 0.0)
    indptr = torch.zeros(lens.numel() + 1, dtype=torch.int64, device=absw.device)
    torch.cumsum(lens, 0, out=indptr[1:])
    return indptr, dist


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming parameter ``name`` (and the position) if tensor ``t`` holds NaN or inf.

    One reduction when the tensor is finite (no temporary); an exact chunked scan otherwise.
    """
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return  # a NaN or inf makes the sum non-finite (an overflow falls through to the exact scan)
    flat = t.reshape(-1)
    for i in range(0, flat.numel(), CHUNK):
        bad = ~torch.isfinite(flat[i : i + CHUNK])
        if bool(bad.any()):
            k = i + int(torch.nonzero(bad)[0])
            pos = tuple(int(x) for x in np.unravel_index(k, tuple(t.shape)))
            where = f"(out, in) = {pos}" if t.ndim == 2 else f"index {pos}"
            raise ValueError(f"Expected finite weights in `{name}`, got {flat[k].item()} at {where}")


def matrix_rms(w: Any, name: str) -> float:
    """RMS of the whole matrix (an operator: its effective weights), accumulated in float64 column chunk by chunk.

    Raises:
        ValueError: a non-finite value, or only zeros (cannot be rescaled).
    """
    (rows, n_in), steps = shape_of(w), _steps(w)
    total = None
    for j in steps:
        part = columns(w, j, min(n_in, j + steps.step)).to(torch.float64).square().sum()
        total = part if total is None else total + part  # stays on the device: one sync at the end
    mean_square = (float(total) if total is not None else 0.0) / max(rows * n_in, 1)
    if not math.isfinite(mean_square):
        raise ValueError(f"Expected finite weights in `{name}`, got a non-finite mean square")
    if mean_square == 0.0:
        raise ValueError(f"Cannot rescale `{name}` to a given RMS (scale='rms'): all its weights are 0")
    return math.sqrt(mean_square)


def null_matrix(w: torch.Tensor, seed: int) -> torch.Tensor:
    """``w``'s entries in a seeded random arrangement: the permutation null of one operator.

    The entries are sorted first, so the result depends only on the multiset of values and the shape
    (hence it is invariant to any reordering of ``w``'s rows, columns or entries), then placed by
    ``torch.randperm`` with a generator seeded with ``seed`` (on ``w``'s device).

    Example:
        >>> w = torch.arange(6.0).reshape(2, 3)
        >>> a, b = null_matrix(w, 7), null_matrix(w.flip(0).flip(1), 7)
        >>> bool(torch.equal(a, b)), sorted(a.reshape(-1).tolist()) == w.reshape(-1).tolist()
        (True, True)
    """
    flat = w.reshape(-1).sort().values
    gen = torch.Generator(device=w.device).manual_seed(int(seed))
    perm = torch.randperm(flat.numel(), generator=gen, device=w.device)
    return flat[perm].reshape(w.shape)
