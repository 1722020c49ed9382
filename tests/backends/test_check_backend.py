"""Backend selection: ``check_backend`` and ``auto`` never pick a backend that cannot run; explicit choices
that cannot run raise with the install or device hint. CuPy and the GPU are simulated where needed."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest
import torch

import neuromfa_callback.backends.cupy_backend as cb
import neuromfa_callback.backends.known_answer as ka
from neuromfa_callback import build_network, multifractal_spectrum
from neuromfa_callback._imports import cupy_available
from neuromfa_callback.backends import check_backend, resolve_backend

HINT = "pip install 'neuromfa-callback[cuda12]'"


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(cb, "cupy_available", lambda: False)


@pytest.fixture
def cupy_without_gpu(monkeypatch):
    """CuPy importable, but CUDA reports no usable device (as on CI machines with cupy-cuda12x installed)."""

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cb, "cupy_available", lambda: True)


@pytest.fixture
def fake_gpu(monkeypatch):
    """CuPy and one GPU, with a kernel whose known-answer result the test chooses (``fake_gpu.mismatches``)."""
    state = types.SimpleNamespace(mismatches=[], runs=0)
    monkeypatch.setattr(cb, "require_cupy", lambda: None)
    monkeypatch.setattr(cb, "cupy_available", lambda: True)
    monkeypatch.setattr(cb, "CupyRunner", lambda device: device)

    def mismatches(runner):
        state.runs += 1
        return list(state.mismatches)

    monkeypatch.setattr(ka, "known_answer_mismatches", mismatches)
    monkeypatch.setattr(cb, "_CHECKED", {})
    monkeypatch.setattr(cb, "_WARNED", set())
    return state


def test_numpy_and_torch_always_run():
    assert check_backend("numpy") == "numpy"
    assert check_backend("torch", torch.device("cpu")) == "torch"
    assert check_backend("torch", "cuda:0") == "torch"  # the torch backend runs wherever torch runs


def test_unknown_backend_names_the_argument():
    with pytest.raises(
        ValueError, match=r"Expected `backend` to be one of \('auto', 'numpy', 'torch', 'cupy'\), got 'jax'"
    ):
        check_backend("jax")


@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu")])
def test_auto_on_cpu_is_numpy_whatever_is_installed(device, cupy_without_gpu):
    assert check_backend("auto", device) == "numpy"


def test_explicit_cupy_without_cupy_gives_the_install_hint(no_cupy):
    with pytest.raises(ImportError, match=re.escape(HINT)):
        check_backend("cupy")
    with pytest.raises(ImportError, match=re.escape(HINT)):
        build_network(torch.nn.Sequential(torch.nn.Linear(8, 8)), full=True).partition(backend="cupy")


def test_explicit_cupy_without_a_gpu_says_so(cupy_without_gpu):
    with pytest.raises(
        RuntimeError, match="backend='cupy' needs a CUDA GPU, but CUDA reported: cudaErrorInsufficientDriver"
    ):
        check_backend("cupy", "cpu")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        multifractal_spectrum(np.arange(0, 61, 12), np.full(60, 2.0), backend="cupy")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        build_network(torch.nn.Sequential(torch.nn.Linear(8, 8)), full=True).partition(backend="cupy")


def test_auto_on_cuda_picks_cupy_only_after_the_self_check_passed(fake_gpu):
    assert check_backend("auto", "cuda:0") == "cupy"
    assert check_backend("cupy", "cuda:0") == "cupy"
    assert check_backend("auto", "cuda:0") == "cupy"
    assert fake_gpu.runs == 1  # once per device


def test_a_failing_self_check_refuses_cupy_and_auto_uses_torch(fake_gpu):
    fake_gpu.mismatches = ["dense: n_edges 7725 != 13789"]
    with pytest.warns(RuntimeWarning, match=r"backend='auto' runs the torch backend on cuda:1: .*self-check failed"):
        assert check_backend("auto", "cuda:1") == "torch"
    assert check_backend("auto", "cuda:1") == "torch"  # warned once
    with pytest.raises(
        RuntimeError, match=r"self-check failed on cuda:1, refusing to use it \(dense: n_edges 7725 != 13789\)"
    ):
        check_backend("cupy", "cuda:1")
    assert fake_gpu.runs == 1


def test_a_kernel_that_cannot_build_is_refused(fake_gpu, monkeypatch):
    def broken(runner):
        raise RuntimeError("nvrtc: error: unknown option")

    monkeypatch.setattr(ka, "known_answer_mismatches", broken)
    with pytest.raises(RuntimeError, match="the kernel could not run: RuntimeError: nvrtc: error: unknown option"):
        check_backend("cupy", "cuda:0")
    with pytest.warns(RuntimeWarning):
        assert check_backend("auto", "cuda:0") == "torch"


def test_auto_follows_cpu_inputs_unchanged():
    assert resolve_backend("auto", np.ones(3)) == "numpy"
    assert resolve_backend("auto", torch.ones(3)) == "torch"
    assert resolve_backend("cupy", np.ones(3)) == "cupy"  # explicit: checked when it runs


@pytest.mark.skipif(not cupy_available(), reason="CuPy is not installed here")
def test_importing_cupy_without_a_gpu_changes_nothing_on_cpu():
    import cupy  # noqa: F401 - the real module, no GPU needed to import it

    rng = np.random.default_rng(0)
    d = 1 / np.abs(rng.normal(0, 0.02, size=40 * 30))
    ip = np.arange(0, d.size + 1, 30)
    assert cupy_available()
    assert multifractal_spectrum(ip, d).backend == "numpy"
    assert multifractal_spectrum(torch.from_numpy(ip), torch.from_numpy(d)).backend == "torch"
    assert check_backend("auto") == "numpy"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            check_backend("cupy")


def test_callback_with_cupy_but_no_gpu_fails_in_setup(tmp_path, cupy_without_gpu):
    """The CI situation (CuPy installed, no GPU): ``backend="cupy"`` stops the fit in setup, before step 1."""
    from neuromfa_callback import NeuroMFACallback
    from tests.test_bad_input import SMALL, CountingLM, _setup_fails

    cb_ = NeuroMFACallback(backend="cupy", **SMALL)
    _setup_fails(tmp_path, cb_, CountingLM(), r"NeuroMFACallback\(backend='cupy'\): backend='cupy' needs a CUDA GPU")
