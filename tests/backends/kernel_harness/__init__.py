"""The CPU harness: ``box_count.cu`` compiled by g++ with ``cuda_shim.h``, driven through ctypes.

:class:`HarnessRunner` implements the runner protocol of
:mod:`neuromfa_callback.backends.kernel_plan` on host memory, so the package's own host code (tiling,
chunking, tables, q chunks, final sums) drives the same kernel source that NVRTC compiles for the GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuromfa_callback.backends.kernel_plan import KERNEL_FILE

HERE = Path(__file__).parent
SOURCES = (HERE / "cuda_shim.h", HERE / "harness.cpp")
FLAGS = ("-O1", "-std=c++20", "-pthread", "-shared", "-fPIC", "-ffp-contract=off", "-Wall", "-Wno-unknown-pragmas")


def compiler() -> str | None:
    """A C++20 compiler on PATH (g++ first), or None."""
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def build_many(out_dir: Path, edits: Sequence[Callable[[str], str] | None]) -> list[Path]:
    """Compile one harness per kernel-source edit (``None``: the kernel as it is), concurrently; cached by content."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, c++ or clang++) on PATH")
    base = KERNEL_FILE.read_text()
    fixed = b"".join(p.read_bytes() for p in SOURCES) + " ".join(FLAGS).encode()
    libs, jobs = [], []
    for edit in edits:
        src = base if edit is None else edit(base)
        key = hashlib.sha256(src.encode() + fixed).hexdigest()[:16]
        lib = out_dir / f"nmfa_harness_{key}.so"
        libs.append(lib)
        if not lib.exists() and all(lib != j[0] for j in jobs):
            kernel = out_dir / f"box_count_{key}.cu"
            kernel.write_text(src)
            tmp = out_dir / f"{lib.name}.{len(jobs)}.tmp"
            cmd = [cxx, *FLAGS, f"-I{HERE}", f'-DNMFA_KERNEL_FILE="{kernel}"', str(HERE / "harness.cpp"), "-o", str(tmp)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            jobs.append((lib, tmp, cmd, proc))
    for lib, tmp, cmd, proc in jobs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"harness build failed ({' '.join(cmd)}):\n{err}")
        tmp.replace(lib)
    return libs


def build(out_dir: Path, edit: Callable[[str], str] | None = None) -> Path:
    """Compile the harness (with ``edit`` applied to the kernel source, for mutation tests); cached by content."""
    return build_many(out_dir, [edit])[0]


_SCALARS = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float64: ctypes.c_double}


class HarnessRunner:
    """Runner protocol on the CPU: NumPy buffers, kernels run by the compiled harness (blocks in order)."""

    device = torch.device("cpu")
    multiprocessors = 3  # a few accumulation blocks, so the per-block partial sums are exercised

    def __init__(self, lib: Path) -> None:
        self.lib = ctypes.CDLL(str(lib))
        self.launches: list[tuple[str, Any]] = []
        self._alive: list[Any] = []

    def upload(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True, order="C")

    def zeros(self, n: int, dtype: Any) -> np.ndarray:
        return np.zeros(int(n), dtype=dtype)

    def empty(self, n: int, dtype: Any) -> np.ndarray:
        """Garbage (0xA5 bytes), so that reading a value nobody wrote shows."""
        return np.full(int(n) * np.dtype(dtype).itemsize, 0xA5, dtype=np.uint8).view(dtype)

    def pointer(self, t: torch.Tensor) -> int:
        self._alive.append(t)
        return int(t.data_ptr())

    def _arg(self, a: Any) -> Any:
        if isinstance(a, np.ndarray):
            return ctypes.c_void_p(a.ctypes.data)
        if isinstance(a, torch.Tensor):
            self._alive.append(a)
            return ctypes.c_void_p(a.data_ptr())
        return _SCALARS[type(a)](a.item())

    def launch(self, name: str, launch: Any, args: Sequence[Any]) -> None:
        self.launches.append((name, launch))
        fn = getattr(self.lib, f"launch_{name}")
        fn.restype = None
        gx, gy = launch.grid
        fn(
            ctypes.c_uint(gx),
            ctypes.c_uint(gy),
            ctypes.c_uint(launch.block),
            ctypes.c_longlong(launch.shared_mem),
            *(self._arg(a) for a in args),
        )

    def sum0(self, buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return buffer.reshape(shape).sum(0)
