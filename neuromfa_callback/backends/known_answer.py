"""The kernel's known-answer case: a small network touching every kernel path, and its NumPy-oracle answer.

:func:`~neuromfa_callback.backends.cupy_backend.self_check` runs it on every CUDA device before the
kernel is used there; the tests run it on the CPU harness. Agreement required: ``n_nodes``,
``n_edges`` and the present radii identical, ``z`` and ``weight_sum`` to 1e-12 relative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neuromfa_callback.backends.kernel_plan import run_csr
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = ["compare", "known_answer_groups", "known_answer_mismatches", "near_edges", "oracle_csr"]


def _torch():
    import torch

    return torch


def near_edges(grid: RadiusGrid, dtype: str, factor: float = 1.0) -> np.ndarray:
    """Float32 magnitudes of ``dtype`` (``"bfloat16"``, ``"float16"``, ``"float32"``) next to every bin edge and
    keep boundary of ``grid``: the representable values just below, at or above each edge (2-3 per edge)."""
    from neuromfa_callback.backends.binning import float32_bin_edges

    b = float32_bin_edges(grid, factor)
    e = np.concatenate([b.edges, [b.keep_lo, b.keep_hi]]).astype(np.float32)
    if dtype == "bfloat16":
        bits = (e.view(np.uint32) >> 16).astype(np.int64)
        return ((bits[:, None] + np.arange(-1, 3)[None, :]).ravel().astype(np.uint32) << 16).view(np.float32)
    if dtype == "float16":
        h = e.astype(np.float16).view(np.uint16).astype(np.int64)
        return (h[:, None] + np.arange(-1, 2)[None, :]).ravel().astype(np.uint16).view(np.float16).astype(np.float32)
    return (
        (e.view(np.int32)[:, None].astype(np.int64) + np.arange(-1, 2)[None, :])
        .ravel()
        .astype(np.int32)
        .view(np.float32)
    )


def known_answer_groups() -> list[tuple[list[Any], list[float]]]:
    """A small network that touches every kernel path (CPU tensors): bf16, fp16 (strided) and a fused fp32 group
    with two scales, each with magnitudes next to every bin edge; float64 weights; zeros, weights beyond
    ``d < 1`` and too-sparse nodes."""
    torch = _torch()
    rng = np.random.default_rng(20240611)
    grid = RadiusGrid()

    def signed(v: np.ndarray) -> np.ndarray:
        return v * np.where(rng.random(v.size) < 0.5, -1, 1).astype(np.float32)

    bf = rng.normal(0, 0.03, size=(180, 37)).astype(np.float32)
    v = near_edges(grid, "bfloat16")
    bf.ravel()[: v.size] = signed(v)
    bf[:, 3] = 0.0
    bf[5:, 4] = 0.0  # 5 edges: too sparse
    bf[:6, 6] = 1.5  # d < 1: not kept
    f16 = (rng.standard_t(3, size=(29, 150)) * 0.02).astype(np.float32)
    v = near_edges(grid, "float16")
    f16.ravel()[: v.size] = signed(v)
    fused_a = rng.normal(0, 0.02, size=(97, 41)).astype(np.float32)
    v = near_edges(grid, "float32", 0.9)
    fused_a.ravel()[: v.size] = signed(v)
    fused_b = rng.normal(0, 0.05, size=(33, 41)).astype(np.float32)
    f64 = rng.normal(0, 0.02, size=(64, 19))
    return [
        ([torch.from_numpy(bf).to(torch.bfloat16)], [1.0]),
        ([torch.from_numpy(f16).to(torch.float16).t()], [1.0]),  # 150 x 29, strides (1, 150)
        ([torch.from_numpy(fused_a), torch.from_numpy(fused_b)], [0.9, 1.3]),
        ([torch.from_numpy(f64)], [1.0]),
    ]


def oracle_csr(groups: Sequence[tuple[Sequence[Any], Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """The CSR ``(indptr, 1 / (|w| * scale))`` of node groups, computed on the host in float64 (zeros dropped)."""
    lens, dists = [], []
    for weights, scales in groups:
        cols = []
        for w, s in zip(weights, scales):
            a = np.abs(w.detach().cpu().to(_torch().float64).numpy())
            cols.append(a * s if s != 1.0 else a)
        a = np.concatenate(cols, 0).T  # node-major
        for row in a:
            nz = row[row != 0]
            lens.append(nz.size)
            dists.append(1.0 / nz)
    indptr = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    return indptr, (np.concatenate(dists) if dists else np.zeros(0))


def compare(got: PartitionSums, ref: PartitionSums) -> list[str]:
    """Where ``got`` differs from the oracle's ``ref``: counts and radii exactly, z to 1e-12 relative."""
    out = []
    for name in ("n_nodes", "n_edges"):
        if getattr(got, name) != getattr(ref, name):
            out.append(f"{name} {getattr(got, name)} != {getattr(ref, name)}")
    if not np.array_equal(got.present, ref.present):
        out.append(f"present radii differ at bins {np.flatnonzero(got.present != ref.present).tolist()[:8]}")
    if got.z.shape != ref.z.shape or not np.allclose(got.z, ref.z, rtol=1e-12, atol=0):
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(f"z differs: max relative error {np.nanmax(np.abs(got.z / ref.z - 1)):.3g}")
    if not np.isclose(got.weight_sum, ref.weight_sum, rtol=1e-12, atol=0):
        out.append(f"weight_sum {got.weight_sum!r} != {ref.weight_sum!r}")
    return out


def known_answer_mismatches(runner: Any) -> list[str]:
    """Run the known-answer case through ``runner`` (dense and CSR entries) and list disagreements."""
    from neuromfa_callback.backends.numpy_backend import partition_sums_numpy
    from neuromfa_callback.functional.spectrum import default_q

    grid, q = RadiusGrid(), default_q()
    groups = known_answer_groups()
    ip, d = oracle_csr(groups)
    ref = partition_sums_numpy(ip, d, q, grid, 10)
    from neuromfa_callback.backends.cupy_backend import run_node_groups

    out = [f"dense: {m}" for m in compare(run_node_groups(runner, groups, q, grid, 10), ref)]
    ip_b, d_b = runner.upload(ip), runner.upload(d)
    q2 = np.concatenate([np.linspace(-4, -0.5, 9), [0.0], np.geomspace(0.01, 2, 60)])  # 70 orders, not uniform
    grid2 = RadiusGrid(60.0, 1)
    for qq, gg in ((q, grid), (q2, grid2)):
        got = run_csr(ip_b, d_b, ip.size - 1, qq, gg, 10, runner)
        out += [f"csr: {m}" for m in compare(got, partition_sums_numpy(ip, d, qq, gg, 10))]
    return out
