"""The CuPy glue of ``cupy_backend.CupyRunner`` on the CPU: a stand-in ``cupy`` module whose kernels are the
CPU harness. It checks what can go wrong without a GPU in sight: kernel names and argument order and types,
DLPack views (bf16/fp16 as 16-bit integers), the module built from the package's source with the backend's
NVRTC options, and the torch-allocated buffers read back."""

from __future__ import annotations

import ctypes
import sys
import types

import numpy as np
import pytest
import torch

import neuromfa_callback.backends.cupy_backend as cb
from neuromfa_callback.backends.known_answer import known_answer_mismatches
from neuromfa_callback.backends.kernel_plan import NVRTC_OPTIONS, kernel_source

pytestmark = pytest.mark.kernel


class _Context:
    def __init__(self, *args):
        self.args = args

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _View:
    """What ``cupy.from_dlpack`` returns: here only the pointer (and the tensor, to check its dtype)."""

    def __init__(self, t):
        assert t.dtype not in (torch.bfloat16, torch.float16), "CuPy cannot take bf16 through DLPack"
        assert not t.requires_grad, "DLPack refuses tensors that require grad"
        self.tensor = t
        self.data = types.SimpleNamespace(ptr=t.data_ptr())


def fake_cupy(lib, calls):
    scalars = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float64: ctypes.c_double}

    class Kernel:
        def __init__(self, name):
            self.name = name

        def __call__(self, grid, block, args, shared_mem=0):
            assert len(grid) == 2 and len(block) == 1 and isinstance(args, tuple)
            conv = []
            for a in args:
                if isinstance(a, _View):
                    conv.append(ctypes.c_void_p(a.data.ptr))
                else:
                    assert type(a) in scalars, (
                        f"{self.name}: scalar {a!r} of type {type(a).__name__} is not a NumPy scalar"
                    )
                    conv.append(scalars[type(a)](a.item()))
            calls.append(self.name)
            getattr(lib, f"launch_{self.name}")(
                ctypes.c_uint(grid[0]),
                ctypes.c_uint(grid[1]),
                ctypes.c_uint(block[0]),
                ctypes.c_longlong(shared_mem),
                *conv,
            )

    class RawModule:
        def __init__(self, code, options):
            assert code == kernel_source() and tuple(options) == NVRTC_OPTIONS
            calls.append("compile")

        def get_function(self, name):
            return Kernel(name)

    cuda = types.SimpleNamespace(
        Device=_Context, ExternalStream=_Context, runtime=types.SimpleNamespace(getDeviceCount=lambda: 1)
    )
    return types.SimpleNamespace(RawModule=RawModule, from_dlpack=_View, cuda=cuda)


def test_cupy_runner_drives_the_kernels(harness_lib, monkeypatch):
    calls = []
    lib = ctypes.CDLL(str(harness_lib))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(lib, calls))
    monkeypatch.setattr(cb, "cupy_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(multi_processor_count=3))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0))
    cb._module.cache_clear()
    try:
        runner = cb.CupyRunner("cuda:0")
        assert runner.device == torch.device("cuda", 0) and runner.multiprocessors == 3
        runner.device = torch.device("cpu")  # the buffers live in host memory for the stand-in
        monkeypatch.setattr(runner, "pointer", lambda t: t.data_ptr())  # weights: host addresses here
        assert known_answer_mismatches(runner) == []
        w = torch.nn.Linear(40, 30).weight.to(torch.bfloat16)  # a parameter-like tensor that requires grad
        assert w.requires_grad and runner._view(w).data.ptr == w.data_ptr()  # DLPack of a bf16 parameter
        with pytest.raises(ValueError, match="Expected a tensor on cuda:0, got one on cpu"):
            cb.CupyRunner.pointer(runner, w)
    finally:
        cb._module.cache_clear()
    assert calls[0] == "compile" and calls.count("compile") == 1  # compiled once, on first use
    assert {
        "nmfa_hist_bf16",
        "nmfa_hist_f16",
        "nmfa_hist_f32",
        "nmfa_hist_f64",
        "nmfa_hist_csr",
        "nmfa_accumulate",
    } <= set(calls)
