"""GPU parity (``pytest -m gpu``): CUDA backends against the NumPy oracle. Skipped without CUDA.

The CuPy kernel's source is also verified without a GPU (``pytest -m kernel``: CPU harness, NVRTC);
these tests run it for real. Needs ``pip install 'neuromfa-callback[cuda12]'`` for the cupy cases.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromfa_callback import build_network, multifractal_spectrum, partition_sums
from tests.conftest import GOLDEN_CASES, load_golden

pytestmark = pytest.mark.gpu
CUDA_BACKENDS = ["torch", "cupy"]


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_on_cuda(case, backend):
    arrays, ref = load_golden(case)
    ip = torch.from_numpy(arrays["indptr"]).cuda()
    d = torch.from_numpy(arrays["distances"]).cuda()
    s = multifractal_spectrum(ip, d, threshold=ref["threshold"], decimals=ref["fdigi"], backend=backend)
    assert s.backend == backend
    np.testing.assert_allclose(s.tau, ref["tau"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(s.f_alpha, ref["f_alpha"], atol=1e-9, rtol=0)


def _mlp(dtype, shapes, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(i, o, bias=False) for i, o in shapes]
    model = torch.nn.Sequential(*layers).to(device="cuda", dtype=dtype)
    with torch.no_grad():
        for lin in model:
            lin.weight.normal_(0, 0.02)
            lin.weight[:, :3] = 0  # exact zeros: no edge
            lin.weight[:2, 5:9] = 1.5  # beyond the threshold side (d < 1)
    return model


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_full_network_on_cuda_matches_numpy(backend, dtype):
    """Odd shapes, zeros, out-of-range weights, every low-precision dtype: identical sums, tau to 1e-9."""
    model = _mlp(dtype, [(97, 131), (131, 64), (64, 300)])
    net = build_network(model, full=True)
    ref = build_network(model.cpu().float().to(dtype).float(), full=True).partition(backend="numpy")
    got = net.partition(backend=backend)
    np.testing.assert_array_equal(got.present, ref.present)
    assert (got.n_nodes, got.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(got.z, ref.z, rtol=1e-12)
    np.testing.assert_allclose(got.spectrum().tau, ref.spectrum().tau, atol=1e-9)


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_too_sparse_nodes_on_cuda(backend):
    arrays, _ = load_golden("too_sparse")
    with pytest.raises(ValueError, match="no node has more than 10 neighbours"):
        partition_sums(torch.from_numpy(arrays["indptr"]).cuda(), torch.from_numpy(arrays["distances"]).cuda(),
                       backend=backend).spectrum()


def test_auto_on_cuda_records_the_backend_that_ran():
    from neuromfa_callback.backends.cupy_backend import cupy_ready

    arrays, _ = load_golden("gptneox_tiny_init")
    s = multifractal_spectrum(torch.from_numpy(arrays["indptr"]).cuda(), torch.from_numpy(arrays["distances"]).cuda())
    assert s.backend == ("cupy" if cupy_ready(torch.device("cuda", torch.cuda.current_device())) else "torch")


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_no_memory_held_between_calls(backend):
    model = _mlp(torch.bfloat16, [(512, 512), (512, 2048)])
    net = build_network(model, full=True)
    net.partition(backend=backend)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    net.partition(backend=backend)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    if backend == "cupy":
        import cupy

        assert cupy.get_default_memory_pool().used_bytes() == 0  # every buffer is torch's


def test_cupy_self_check_passes_and_check_backend_selects_it():
    from neuromfa_callback.backends import check_backend
    from neuromfa_callback.backends.cupy_backend import CupyRunner
    from neuromfa_callback.backends.known_answer import known_answer_mismatches

    dev = torch.device("cuda", torch.cuda.current_device())
    assert known_answer_mismatches(CupyRunner(dev)) == []
    assert check_backend("cupy", dev) == "cupy"
    assert check_backend("auto", dev) == "cupy"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_dense_entry_reads_weights_in_place(dtype):
    """partition_sums_dense on one strided CUDA matrix per dtype, with a scale: the oracle's sums exactly."""
    from neuromfa_callback.backends.cupy_backend import partition_sums_dense
    from neuromfa_callback.backends.known_answer import oracle_csr
    from neuromfa_callback.backends.numpy_backend import partition_sums_numpy
    from neuromfa_callback.functional.partition import RadiusGrid
    from neuromfa_callback.functional.spectrum import default_q

    torch.manual_seed(1)
    w = (torch.randn(1000, 333, device="cuda") * 0.02).to(dtype).t()  # 333 x 1000 view, column stride 1
    got = partition_sums_dense(w, 0.8, default_q(), RadiusGrid(), 10)
    ip, d = oracle_csr([([w], [0.8])])
    ref = partition_sums_numpy(ip, d, default_q(), RadiusGrid(), 10)
    np.testing.assert_array_equal(got.present, ref.present)
    assert (got.n_nodes, got.n_edges, got.backend) == (ref.n_nodes, ref.n_edges, "cupy")
    np.testing.assert_allclose(got.z, ref.z, rtol=1e-12, atol=0)


def test_rms_scaled_network_on_cuda_matches_numpy():
    """RMS-scaled blocks (one scale per matrix) through the kernel: the oracle on the same blocks and scales."""
    from neuromfa_callback.backends.known_answer import oracle_csr
    from neuromfa_callback.backends.numpy_backend import partition_sums_numpy
    from neuromfa_callback.functional.partition import RadiusGrid
    from neuromfa_callback.functional.spectrum import default_q

    model = _mlp(torch.bfloat16, [(97, 131), (131, 64)])
    net = build_network(model, full=True, scale="rms")
    assert any(s != 1.0 for b in net.blocks for s in b.scales)
    got = net.partition(backend="cupy")
    ref = partition_sums_numpy(*oracle_csr([(b.weights, b.scales) for b in net._kernel_blocks(None)]), default_q(), RadiusGrid(), 10)
    assert (got.n_nodes, got.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(got.z, ref.z, rtol=1e-12, atol=0)


def test_model_split_over_cuda_and_cpu_snapshots_every_device():
    """A model with one layer on cuda:0 and one on the CPU: the asynchronous snapshot (pinned non-blocking
    copies, one event per source device) gives exactly the values of the same model on the CPU alone."""
    import copy

    from neuromfa_callback.monitor import SnapshotMonitor

    torch.manual_seed(0)
    cpu_model = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128))
    split = copy.deepcopy(cpu_model)
    split[0].cuda()

    class Split(torch.nn.Module):  # moves the activation across devices, as a pipeline would
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m[2](self.m[1](self.m[0](x.cuda())).cpu())

    recs = []
    for model in (Split(split), cpu_model):
        mon = SnapshotMonitor(samples=4, neurons_per_layer=32, scale_control=True, asynchronous=True)
        mon.snapshot(model, 0)
        (rec,) = mon.flush()
        mon.close()
        recs.append(rec)
    assert recs[0]["alpha0"] == recs[1]["alpha0"] and recs[0]["alpha0_rms"] == recs[1]["alpha0_rms"]
