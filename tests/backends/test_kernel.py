"""The box-counting kernel (``kernels/box_count.cu``) on the CPU harness, against the NumPy oracle.

The harness compiles the very same source with g++ (``kernel_harness/cuda_shim.h``: one std::thread per
CUDA thread, ``__syncthreads()`` a barrier) and the package's own host code (``kernel_plan``,
``cupy_backend.run_node_groups``) drives it. Integer results must be identical, z equal to 1e-12
relative, tau to 1e-12 absolute.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from neuromfa_callback import build_network
from neuromfa_callback.backends import kernel_plan
from neuromfa_callback.backends.cupy_backend import run_node_groups
from neuromfa_callback.backends.known_answer import (
    compare,
    known_answer_groups,
    known_answer_mismatches,
    near_edges,
    oracle_csr,
)
from neuromfa_callback.backends.numpy_backend import partition_sums_numpy
from neuromfa_callback.functional.partition import RadiusGrid
from neuromfa_callback.functional.spectrum import default_q, spectrum_from_partition
from tests.conftest import GOLDEN_DIR, load_golden

pytestmark = pytest.mark.kernel

ALL_GOLDEN = [
    "gptneox_tiny_init",
    "pythia70m_shape_init",
    "student_t3",
    "lognormal",
    "student_t3_thr200_fdigi1",
    "too_sparse",
]
TORCH_DTYPES = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def assert_equal_to_oracle(got, ref):
    """Counts and radii identical, z to 1e-12 relative, tau to 1e-12 absolute."""
    assert compare(got, ref) == []
    if ref.n_nodes and ref.present.sum() >= 2:
        np.testing.assert_allclose(
            spectrum_from_partition(got).tau, spectrum_from_partition(ref).tau, atol=1e-12, rtol=0
        )


def oracle_of(groups, q, grid, min_neighbours=10):
    ip, d = oracle_csr(groups)
    return partition_sums_numpy(ip, d, np.asarray(q, dtype=np.float64), grid, min_neighbours)


# ------------------------------------------------------------------------------------ known answers
def test_the_self_check_case_passes_on_the_harness(runner):
    """The known-answer case the GPU backend runs on first use agrees with the oracle (dense and CSR)."""
    assert known_answer_mismatches(runner) == []
    names = {name for name, _ in runner.launches}
    assert names == set(kernel_plan.KERNEL_NAMES)  # every kernel ran


@pytest.mark.parametrize("case", ALL_GOLDEN)
def test_golden_cases_through_the_csr_kernel(runner, case):
    """Every golden case: identical to the oracle, and tau equal to the reference's to 1e-9."""
    arrays, meta = load_golden(case)
    ip, d = arrays["indptr"], arrays["distances"]
    grid, q = RadiusGrid(meta["threshold"], meta["fdigi"]), np.asarray(meta["q"])
    got = kernel_plan.run_csr(runner.upload(ip), runner.upload(d), ip.size - 1, q, grid, 10, runner)
    ref = partition_sums_numpy(ip, d, q, grid, 10)
    assert_equal_to_oracle(got, ref)
    if "error" in meta:
        assert got.n_nodes == 0
        with pytest.raises(ValueError, match="no node has more than 10 neighbours"):
            spectrum_from_partition(got)
    else:
        np.testing.assert_allclose(spectrum_from_partition(got).tau, meta["tau"], atol=1e-9, rtol=0)


@pytest.mark.parametrize("case", ["gptneox_tiny_init", "student_t3_thr200_fdigi1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_golden_cases_as_dense_weight_matrices(runner, case, dtype):
    """The golden nodes as columns of a zero-padded weight matrix w = 1/d (float32 or float64)."""
    arrays, meta = load_golden(case)
    ip, d = arrays["indptr"], arrays["distances"]
    lens = np.diff(ip)
    w = np.zeros((int(lens.max()), lens.size))
    for j in range(lens.size):
        w[: lens[j], j] = 1.0 / d[ip[j] : ip[j + 1]]
    groups = [([torch.from_numpy(w).to(TORCH_DTYPES[dtype])], [1.0])]
    grid, q = RadiusGrid(meta["threshold"], meta["fdigi"]), np.asarray(meta["q"])
    got = run_node_groups(runner, groups, q, grid, 10)
    ref = oracle_of(groups, q, grid)
    assert ref.n_nodes > 100
    assert_equal_to_oracle(got, ref)


# --------------------------------------------------------------------------- randomized full networks
def random_group(rng, dtype, shapes, grid):
    """One node group (matrices sharing columns) with zeros, empty and too-sparse nodes, d < 1 entries,
    magnitudes next to bin edges, scaled matrices and column-major storage."""
    cols = shapes[0][1]
    empty = rng.choice(cols, size=max(1, cols // 10), replace=False)  # nodes without any edge
    sparse = rng.choice(cols, size=max(1, cols // 8), replace=False)  # a handful of edges: near min_neighbours
    weights, factors = [], []
    for m, (rows, _) in enumerate(shapes):
        factor = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.5, 2.0))
        if rng.random() < 0.5:
            x = rng.standard_t(3, size=(rows, cols)) * rng.choice([0.01, 0.02, 0.04])
        else:
            x = rng.normal(0, rng.choice([0.01, 0.02, 0.05]), size=(rows, cols))
        x[rng.random((rows, cols)) < 0.05] = 0.0
        x[rng.random((rows, cols)) < 0.01] = 1.7 / factor  # d < 1: never kept
        if dtype != "float64":
            v = near_edges(grid, dtype, factor)
            idx = rng.choice(rows * cols, size=min(v.size, rows * cols // 3), replace=False)
            x.ravel()[idx] = rng.choice(v, size=idx.size) * rng.choice([-1.0, 1.0], size=idx.size)
        x[:, empty] = 0.0
        x[(rng.integers(2, 14) if m == 0 else 0) :, sparse] = 0.0
        t = torch.from_numpy(x).to(TORCH_DTYPES[dtype])
        weights.append(t.t().contiguous().t() if rng.random() < 0.4 else t)  # column-major: strides (1, rows)
        factors.append(factor)
    return weights, factors


CASES = {  # (matrix groups: list of [(rows, cols)], grid, q, min_neighbours)
    "odd_shapes": ([[(97, 131)], [(131, 64)], [(5, 77)], [(300, 3)]], RadiusGrid(), default_q(), 10),
    "fused_fine_grid": ([[(40, 70), (23, 70)], [(61, 33)]], RadiusGrid(200.0, 1), np.linspace(-2, 2, 41), 3),
    "long_q_grid": (
        [[(150, 45)], [(37, 90), (12, 90), (5, 90)]],
        RadiusGrid(150.5, 0),
        np.concatenate([np.linspace(-5, -0.1, 50), [0.0], np.geomspace(0.05, 4, 79)]),
        0,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
def test_random_full_networks_equal_the_oracle(runner, dtype, case):
    """bf16/fp16/fp32/fp64, odd shapes, fused groups, strided storage, scaled matrices, fine grids,
    non-uniform and longer-than-64 q grids: identical counts, z to 1e-12, tau to 1e-12."""
    shapes, grid, q, min_nb = CASES[case]
    rng = np.random.default_rng(zlib.crc32(f"{dtype}/{case}".encode()))
    groups = [random_group(rng, dtype, g, grid) for g in shapes]
    ref = oracle_of(groups, q, grid, min_nb)
    assert 0 < ref.n_nodes < sum(g[0][1] for g in shapes)  # some nodes are dropped
    assert_equal_to_oracle(run_node_groups(runner, groups, q, grid, min_nb), ref)


def test_small_chunks_and_few_blocks_give_the_same_sums(runner, monkeypatch):
    """Nodes processed in many chunks (scratch for one tile) and one accumulation block: the same result."""
    rng = np.random.default_rng(3)
    groups = [random_group(rng, "bfloat16", [(80, 150)], RadiusGrid())]
    ref = oracle_of(groups, default_q(), RadiusGrid())
    monkeypatch.setattr(kernel_plan, "CUM_BYTES", 64 * 150 * 4)  # one tile per chunk
    monkeypatch.setattr(kernel_plan, "ZPART_BYTES", 150 * 61 * 8)
    got = run_node_groups(runner, groups, default_q(), RadiusGrid(), 10)
    assert sum(name.startswith("nmfa_hist") for name, _ in runner.launches) == 3
    assert all(launch.grid[0] == 1 for name, launch in runner.launches if name == "nmfa_accumulate")
    assert_equal_to_oracle(got, ref)


def test_results_do_not_depend_on_thread_scheduling(harness_lib):
    """No atomics in the float sums: two runs give bit-identical z and weight sums."""
    from tests.backends.kernel_harness import HarnessRunner

    groups = known_answer_groups()
    a = run_node_groups(HarnessRunner(harness_lib), groups, default_q(), RadiusGrid(), 10)
    b = run_node_groups(HarnessRunner(harness_lib), groups, default_q(), RadiusGrid(), 10)
    assert np.array_equal(a.z, b.z) and a.weight_sum == b.weight_sum


@pytest.mark.parametrize("scale", [None, "rms"])
def test_network_blocks_of_a_model(runner, scale):
    """A real NeuronNetwork's blocks (GPT-NeoX, full mode, raw and RMS-scaled) equal its NumPy partition."""
    from tests._models import tiny_gpt_neox

    model = tiny_gpt_neox(hidden=64, layers=2, seed=4).to(torch.bfloat16)
    net = build_network(model, full=True, scale=scale)
    ref = net.partition(backend="numpy", min_neighbours=5)
    blocks = net._kernel_blocks(None)  # plain matrices (views of the parameters), as partition() hands them to the kernel
    got = run_node_groups(runner, [(b.weights, b.scales) for b in blocks], default_q(), RadiusGrid(), 5)
    assert_equal_to_oracle(got, ref)


def test_grids_too_fine_for_shared_memory_are_refused():
    with pytest.raises(ValueError, match=r"at most \d+ points for backend='cupy', got 14901 .*backend='torch'"):
        kernel_plan.tile_width(RadiusGrid(150.0, 2).size)


def test_the_kernel_uses_no_warp_intrinsics():
    """The harness emulates blocks and barriers only: warp-level intrinsics would run unchecked there."""
    src = kernel_plan.kernel_source()
    for word in ("__shfl", "__ballot", "__syncwarp", "__any_sync", "__all_sync", "__activemask", "__match", "__reduce"):
        assert word not in src


# ------------------------------------------------------------------- the harness catches broken kernels
MUTANTS = {  # name: (a line of the kernel, its broken version)
    "missing barrier before the scan (dense)": ("__syncthreads();  // barrier: every segment counted before the scan", ""),
    "missing barrier before the scan (csr)": ("__syncthreads();  // barrier: every distance counted before the scan", ""),
    "missing barrier after zeroing (dense)": ("__syncthreads();  // barrier: the previous segment's edges", "//"),
    "missing barrier after loading the edges": ("__syncthreads();  // barrier: edges loaded", ""),
    "missing barrier after zeroing (csr)": ("__syncthreads();  // barrier: hist is zeroed", ""),
    "off-by-one bin at the edges": ("while (g > 0 && v >= e[g - 1]) --g;", "while (g > 0 && v > e[g - 1]) --g;"),
    "off-by-one radius in the float64 rule": ("return (int)m - lo;", "return (int)m - lo - (m > lo ? 1 : 0);"),
}


@pytest.fixture(scope="module")
def mutant_libs(harness_dir):
    """Every mutant's harness, compiled concurrently."""
    from tests.backends.kernel_harness import build_many

    src = kernel_plan.kernel_source()
    for name, (old, _) in MUTANTS.items():
        assert src.count(old) == 1, f"{name}: the mutated line is not (exactly once) in the kernel any more"
    edits = [lambda text, old=old, new=new: text.replace(old, new) for old, new in MUTANTS.values()]
    return dict(zip(MUTANTS, build_many(harness_dir, edits)))


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_broken_kernel_fails_the_known_answer_case(mutant_libs, mutant):
    """Each deliberate bug (a missing barrier, an off-by-one bin) makes the known-answer case disagree."""
    from tests.backends.kernel_harness import HarnessRunner

    assert known_answer_mismatches(HarnessRunner(mutant_libs[mutant])) != []


def test_golden_files_are_the_six_cases():
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.json")) == sorted(ALL_GOLDEN)
    assert json.loads((GOLDEN_DIR / "too_sparse.json").read_text())["error"]
