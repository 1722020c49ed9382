"""CuPy backend: the box-counting kernel of ``kernels/box_count.cu`` on a CUDA GPU.

The host side is :mod:`~neuromfa_callback.backends.kernel_plan`; this module is the CuPy glue and the
entry points:

- :func:`partition_sums_cupy`: CSR ``(indptr, distances)``, the engine's interface (float64 rule);
- :func:`partition_sums_dense`: weight matrices as they are on the device (bf16/fp16/fp32/fp64, any
  strides), column ``j`` of an ``out x in`` matrix is node ``j``: nothing is converted to float64;
- :func:`partition_blocks_cupy`: every block of a :class:`~neuromfa_callback.functional.NeuronNetwork`.

The kernel source is compiled lazily by ``cupy.RawModule`` (NVRTC) on first use and cached per device.
Weights are read in place (their device addresses go into the kernel's segment table); every buffer
passed to a kernel is a torch tensor (so CuPy's memory pool holds nothing between calls) handed over
zero-copy through DLPack, and the kernels run on torch's current stream. On the first call per
device a built-in known-answer case (:func:`self_check`) runs and the backend refuses to run if it
disagrees with the NumPy oracle. CuPy is imported only inside functions: importing this module never
touches CUDA.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuromfa_callback._imports import CUPY_INSTALL_HINT, cupy_available
from neuromfa_callback.backends.kernel_plan import NVRTC_OPTIONS, Matrix, kernel_source, run_csr, run_dense
from neuromfa_callback.functional.partition import PartitionSums, RadiusGrid

__all__ = [
    "CupyRunner",
    "cupy_ready",
    "node_groups",
    "partition_blocks_cupy",
    "partition_sums_cupy",
    "partition_sums_dense",
    "require_cupy",
    "run_node_groups",
    "self_check",
]


def require_cupy() -> Any:
    """Import CuPy and check a CUDA device is visible, or raise ``ImportError``/``RuntimeError``.

    Example:
        >>> from neuromfa_callback._imports import cupy_available
        >>> import torch
        >>> try:
        ...     _ = require_cupy()
        ...     print(True)
        ... except ImportError as err:
        ...     print(not cupy_available() and "neuromfa-callback[cuda12]" in str(err))
        ... except RuntimeError as err:
        ...     print(not torch.cuda.is_available() and "needs a CUDA GPU" in str(err))
        True
    """
    if not cupy_available():
        raise ImportError(f"backend='cupy' needs CuPy and a CUDA GPU; install it with: {CUPY_INSTALL_HINT}")
    import cupy

    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise RuntimeError(f"backend='cupy' needs a CUDA GPU, but CUDA reported: {err}") from err
    if n < 1:
        raise RuntimeError("backend='cupy' needs a CUDA GPU, but none is visible")
    return cupy


# ------------------------------------------------------------------------------------------ weights
def _torch():
    import torch

    return torch


def _dtype_name(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def node_groups(
    groups: Sequence[tuple[Sequence[Any], Sequence[float]]], device: Any
) -> list[tuple[list[Any], list[float]]]:
    """Weight matrices ready for the kernels: on ``device``, 2-D, one supported dtype per node group.

    A group's matrices share their columns (its nodes). Dtypes other than bf16/fp16/fp32/fp64, and groups
    mixing dtypes, are widened to float32 (or float64 if one is float64): exact, so the result is unchanged.
    Groups without nodes or without rows are dropped (no node can be kept).
    """
    torch = _torch()
    native = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
    out = []
    for weights, scales in groups:
        weights, scales = list(weights), [float(s) for s in scales]
        if len(weights) != len(scales):
            raise ValueError(f"Expected one scale per matrix, got {len(weights)} matrices and {len(scales)} scales")
        for w in weights:
            if w.ndim != 2:
                raise ValueError(f"Expected 2-D weight matrices (out x in), got shape {tuple(w.shape)}")
            if w.shape[1] != weights[0].shape[1]:
                raise ValueError(
                    f"Expected the matrices of a node group to share their columns, got shapes "
                    f"{[tuple(x.shape) for x in weights]}"
                )
        if not weights or weights[0].shape[1] == 0 or sum(w.shape[0] for w in weights) == 0:
            continue
        dtypes = {w.dtype for w in weights}
        if len(dtypes) > 1 or not dtypes <= set(native):
            wide = torch.float64 if torch.float64 in dtypes else torch.float32
            weights = [w.to(wide) for w in weights]
        out.append(
            (
                [w if w.device == device else w.to(device) for w in weights if w.shape[0]],
                [s for w, s in zip(weights, scales) if w.shape[0]],
            )
        )
    return out


def run_node_groups(
    runner: Any,
    groups: Sequence[tuple[Sequence[Any], Sequence[float]]],
    q: np.ndarray,
    grid: RadiusGrid,
    min_neighbours: int,
    backend: str = "cupy",
) -> PartitionSums:
    """:func:`~neuromfa_callback.backends.kernel_plan.run_dense` on torch weight matrices, through ``runner``
    (which provides ``device`` and ``pointer(tensor)`` besides the runner protocol)."""
    prepared = node_groups(groups, runner.device)
    mats = [
        [
            Matrix(
                runner.pointer(w),
                int(w.shape[0]),
                int(w.shape[1]),
                int(w.stride(0)),
                int(w.stride(1)),
                _dtype_name(w),
                s,
            )
            for w, s in zip(ws, ss)
        ]
        for ws, ss in prepared
    ]
    return run_dense(mats, q, grid, min_neighbours, runner, backend=backend)


# ------------------------------------------------------------------------------------------ CuPy glue
@functools.lru_cache(maxsize=None)
def _module(device_index: int) -> Any:
    import cupy

    with cupy.cuda.Device(device_index):
        return cupy.RawModule(code=kernel_source(), options=NVRTC_OPTIONS)


_NUMPY_TO_TORCH = {
    "float64": "float64",
    "float32": "float32",
    "int64": "int64",
    "uint64": "int64",
    "int32": "int32",
    "uint32": "int32",
}


class CupyRunner:
    """The kernel-plan runner on one CUDA device: torch buffers, CuPy launches on torch's current stream."""

    def __init__(self, device: Any) -> None:
        torch = _torch()
        self.cupy = require_cupy()
        device = torch.device(device)
        self.index = device.index if device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", self.index)
        self.multiprocessors = torch.cuda.get_device_properties(self.index).multi_processor_count
        with self.cupy.cuda.Device(self.index):
            self.stream = self.cupy.cuda.ExternalStream(torch.cuda.current_stream(self.device).cuda_stream, self.index)
        self._views: dict[tuple[int, int], tuple[Any, Any]] = {}  # (id, data_ptr) -> (tensor, CuPy view)
        self._kernels: dict[str, Any] = {}

    def upload(self, array: np.ndarray) -> Any:
        a = np.ascontiguousarray(array)
        a = a.view(_NUMPY_TO_TORCH[a.dtype.name])  # unsigned -> signed of the same width: the same bits
        return _torch().from_numpy(a).to(self.device)

    def zeros(self, n: int, dtype: Any) -> Any:
        return _torch().zeros(
            int(n), dtype=getattr(_torch(), _NUMPY_TO_TORCH[np.dtype(dtype).name]), device=self.device
        )

    def empty(self, n: int, dtype: Any) -> Any:
        return _torch().empty(
            int(n), dtype=getattr(_torch(), _NUMPY_TO_TORCH[np.dtype(dtype).name]), device=self.device
        )

    @property
    def cache_key(self) -> tuple[str, int]:
        """Device tables of a plan are kept per device."""
        return ("cuda", self.index)

    def _view(self, t: Any) -> Any:
        """Zero-copy CuPy view of a CUDA tensor through DLPack (cached for the runner's lifetime)."""
        key = (id(t), t.data_ptr())
        if key not in self._views:
            torch = _torch()
            src = t.detach()  # parameters require grad; DLPack refuses those (no copy either way)
            src = src.view(torch.int16) if src.dtype in (torch.bfloat16, torch.float16) else src  # CuPy has no bf16
            with self.cupy.cuda.Device(self.index), self.stream:
                self._views[key] = (t, self.cupy.from_dlpack(src))
        return self._views[key][1]

    def pointer(self, t: Any) -> int:
        """Device address of a weight matrix read in place (it goes into the segment table, not through DLPack)."""
        if not (t.is_cuda and t.device.index == self.index):
            raise ValueError(f"Expected a tensor on cuda:{self.index}, got one on {t.device}")
        return int(t.data_ptr())

    def launch(self, name: str, launch: Any, args: Sequence[Any]) -> None:
        torch = _torch()
        conv = tuple(self._view(a) if isinstance(a, torch.Tensor) else a for a in args)
        with self.cupy.cuda.Device(self.index), self.stream:
            if name not in self._kernels:
                self._kernels[name] = _module(self.index).get_function(name)  # compiled on first use per device
            self._kernels[name](launch.grid, (launch.block,), conv, shared_mem=launch.shared_mem)

    def sum0(self, buffer: Any, shape: tuple[int, ...]) -> np.ndarray:
        return buffer.view(shape).sum(0).cpu().numpy()


# ------------------------------------------------------------------------------------- self-check
_CHECKED: dict[int, str] = {}  # device index -> "" (passed) or why it failed


def self_check(device: Any = None) -> None:
    """Run the known-answer case once per device; raise ``RuntimeError`` if the kernel disagrees with the oracle.

    Raises:
        ImportError: CuPy is not installed (with the install command).
        RuntimeError: no CUDA GPU, the kernel does not build or run, or it gives a wrong answer.
    """
    require_cupy()
    torch = _torch()
    index = (
        torch.device(device).index
        if device is not None and torch.device(device).index is not None
        else torch.cuda.current_device()
    )
    if index not in _CHECKED:
        try:
            from neuromfa_callback.backends.known_answer import known_answer_mismatches

            bad = known_answer_mismatches(CupyRunner(torch.device("cuda", index)))
            _CHECKED[index] = "; ".join(bad[:4])
        except Exception as err:  # noqa: BLE001 - build or launch failure: the backend cannot run here
            _CHECKED[index] = f"the kernel could not run: {type(err).__name__}: {err}"
    if _CHECKED[index]:
        raise RuntimeError(
            f"backend='cupy': the kernel's self-check failed on cuda:{index}, refusing to use it "
            f"({_CHECKED[index]}); use backend='torch'"
        )


_WARNED: set[int] = set()


def cupy_ready(device: Any) -> bool:
    """Whether ``backend="auto"`` may use the kernel on CUDA ``device``: CuPy present and :func:`self_check` passed.

    Example:
        >>> import torch
        >>> cupy_ready(torch.device("cpu"))
        False
    """
    torch = _torch()
    device = torch.device(device)
    if device.type != "cuda" or not cupy_available():
        return False
    try:
        self_check(device)
        return True
    except (ImportError, RuntimeError) as err:
        index = device.index if device.index is not None else -1
        if index not in _WARNED:
            _WARNED.add(index)
            warnings.warn(f"backend='auto' runs the torch backend on {device}: {err}", RuntimeWarning, stacklevel=3)
        return False


# ------------------------------------------------------------------------------------- entry points
def _device_of(tensors: Sequence[Any]) -> Any:
    torch = _torch()
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_cuda:
            return t.device
    return torch.device("cuda", torch.cuda.current_device())


def partition_sums_cupy(
    indptr: Any, distances: Any, q: np.ndarray, grid: RadiusGrid, min_neighbours: int
) -> PartitionSums:
    """Partition sums of a validated CSR network (int64 ``indptr``, float64 ``distances``) on the GPU.

    Host inputs are copied to the current CUDA device. Equal to the NumPy oracle (float64 binning).
    """
    require_cupy()
    torch = _torch()
    device = _device_of([distances])
    self_check(device)
    ip = torch.as_tensor(indptr).to(device=device, dtype=torch.int64).contiguous()
    ds = torch.as_tensor(distances).to(device=device, dtype=torch.float64).contiguous()
    return run_csr(ip, ds, int(ip.numel()) - 1, q, grid, min_neighbours, CupyRunner(device))


def partition_sums_dense(
    weights: Any, scale: Any, q: np.ndarray, grid: RadiusGrid, min_neighbours: int
) -> PartitionSums:
    """Partition sums of one node group given as weight matrices: column ``j`` of each ``out x in`` matrix
    holds node ``j``'s out-edges (``d = 1 / (|w| * scale)``; exact zeros are no edge).

    Args:
        weights: a 2-D tensor, or a sequence of 2-D tensors with the same number of columns (CUDA tensors are
            read in place, in their dtype and strides).
        scale: one float, or one per matrix.
        q, grid, min_neighbours: as for the other backends.

    Raises:
        ValueError: non-finite weights (naming the matrix and position), mismatched shapes.
    """
    from neuromfa_callback.functional._weights import check_finite

    require_cupy()
    torch = _torch()
    ws = [weights] if isinstance(weights, torch.Tensor) else list(weights)
    scales = [float(scale)] * len(ws) if np.ndim(scale) == 0 else [float(s) for s in scale]
    for i, w in enumerate(ws):
        check_finite(w, f"weights[{i}]")
    device = _device_of(ws)
    self_check(device)
    return run_node_groups(CupyRunner(device), [(ws, scales)], q, grid, min_neighbours)


def partition_blocks_cupy(blocks: Sequence[Any], q: np.ndarray, grid: RadiusGrid, min_neighbours: int) -> PartitionSums:
    """Partition sums of a network's :class:`~neuromfa_callback.functional.MatrixBlock` s (weights as they are)."""
    require_cupy()
    device = _device_of([w for b in blocks for w in b.weights])
    self_check(device)
    return run_node_groups(CupyRunner(device), [(b.weights, b.scales) for b in blocks], q, grid, min_neighbours)
