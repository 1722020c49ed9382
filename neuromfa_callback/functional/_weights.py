"""Tensor helpers for :mod:`neuromfa_callback.functional.network`: chunked checks, RMS, CSR pieces, copies.

Every helper walks a matrix column chunk by column chunk (``CHUNK`` float64 elements at a time), so a
whole weight matrix is never converted to float64 or to a boolean mask at once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["CHUNK", "CUDA_CHUNK", "abs_scaled_columns", "check_finite", "count_nonzero", "csr_of", "gather", "matrix_rms", "move"]

CHUNK = 1 << 15  # float64 elements per streamed piece on CPU (256 KiB): extra peak memory ~ 11-22 MiB on Pythia-410m (benchmarks/bench_memory.py)
CUDA_CHUNK = 1 << 24  # on CUDA: large pieces amortise kernel launches (128 MiB of float64 temporaries)


def move(w: torch.Tensor, device: torch.device, non_blocking: bool, copy: bool) -> torch.Tensor:
    """``w`` on ``device``; CUDA -> CPU with ``non_blocking`` goes through pinned memory (caller syncs)."""
    if device.type == "cpu" and w.is_cuda and non_blocking:
        out = torch.empty(w.shape, dtype=w.dtype, pin_memory=True)
        return out.copy_(w, non_blocking=True)
    return w.to(device, non_blocking=non_blocking, copy=copy)


def count_nonzero(w: torch.Tensor) -> int:
    """Number of entries of ``w`` that are not exactly 0."""
    step = max(1, CHUNK // max(int(w.shape[0]), 1))
    return sum(int(torch.count_nonzero(w[:, j : j + step])) for j in range(0, int(w.shape[1]), step))


def abs_scaled_columns(weights: tuple[torch.Tensor, ...], scales: tuple[float, ...], j0: int, j1: int) -> Any:
    """``|w[:, j0:j1]| * scale`` of every matrix, stacked, float64, node-major ``(j1 - j0, rows)``.

    NumPy on CPU (zero-copy view of the weights, one float64 temporary per chunk), torch elsewhere.
    The weights are never modified.
    """
    parts = []
    for w, s in zip(weights, scales):
        chunk = w[:, j0:j1]
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


_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


def gather(w: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """``w[rows][:, cols]`` as a new tensor, reading only those entries (NumPy fancy indexing on CPU)."""
    if w.device.type == "cpu" and w.dtype in _NUMPY_DTYPES:
        return torch.from_numpy(w.numpy()[np.ix_(rows, cols)])
    r = torch.as_tensor(rows, dtype=torch.int64, device=w.device)
    c = torch.as_tensor(cols, dtype=torch.int64, device=w.device)
    return w[r[:, None], c]


def check_finite(w: torch.Tensor, name: str, rows: Any = None, cols: Any = None) -> None:
    """Raise ``ValueError`` naming parameter ``name`` if ``w`` holds NaN or inf.

    ``rows``/``cols``: the rows and columns of the whole parameter that ``w`` holds (sampled mode),
    so the message gives the position in the parameter.
    """
    if w.device.type == "cpu" and w.dtype in _NUMPY_DTYPES and w.numel() <= CHUNK and np.isfinite(w.numpy()).all():
        return  # fast path for small CPU matrices (sampled blocks)
    if w.numel() and bool(torch.isfinite(w.sum())):
        return  # one reduction, no temporary: a NaN or inf makes the sum non-finite (an overflow falls through to the exact scan)
    step = max(1, CHUNK // max(int(w.shape[0]), 1))
    for j in range(0, int(w.shape[1]), step):
        chunk = w[:, j : j + step]
        bad = ~torch.isfinite(chunk)
        if bool(bad.any()):
            r, c = (int(x) for x in torch.nonzero(bad)[0])
            value = chunk[r, c].item()
            r, c = (r if rows is None else int(rows[r])), (j + c if cols is None else int(cols[j + c]))
            raise ValueError(f"Expected finite weights in `{name}`, got {value} at (out, in) = ({r}, {c})")


def matrix_rms(w: torch.Tensor, name: str) -> float:
    """RMS of the whole matrix, accumulated in float64 column chunk by column chunk."""
    step = max(1, CHUNK // max(int(w.shape[0]), 1))
    total = torch.zeros((), dtype=torch.float64, device=w.device)
    for j in range(0, int(w.shape[1]), step):
        total += w[:, j : j + step].to(torch.float64).square().sum()
    mean_square = float(total) / max(w.numel(), 1)
    if not math.isfinite(mean_square):
        check_finite(w, name)
    if mean_square == 0.0:
        raise ValueError(f"Cannot rescale `{name}` to a given RMS (scale='rms'): all its weights are 0")
    return math.sqrt(mean_square)
