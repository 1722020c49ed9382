"""Every ``.cu`` file of the package compiles with NVRTC for compute_80 and compute_90 (PTX), and to sm_80 and
sm_90 machine code (what ``cupy.RawModule`` asks NVRTC for on such a GPU), with the backend's options.
NVRTC needs neither a GPU nor a driver (CuPy's bindings + the ``nvidia-cuda-nvrtc-cu12`` wheel, both in
the ``dev`` extra)."""

from __future__ import annotations

import pytest

from neuromfa_callback.backends.kernel_plan import KERNEL_FILE, KERNEL_NAMES, NVRTC_OPTIONS

pytestmark = pytest.mark.kernel
nvrtc = pytest.importorskip(
    "cupy_backends.cuda.libs.nvrtc", reason="needs CuPy's NVRTC bindings: pip install 'neuromfa-callback[dev]'"
)
SOURCES = sorted(KERNEL_FILE.parent.glob("*.cu"))


def test_the_package_ships_kernel_sources():
    assert KERNEL_FILE in SOURCES


@pytest.mark.parametrize("arch", ["compute_80", "compute_90", "sm_80", "sm_90"])
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_kernel_source_compiles_with_nvrtc(path, arch):
    prog = nvrtc.createProgram(path.read_text(), path.name, [], [])
    try:
        nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *NVRTC_OPTIONS])
    except Exception as err:  # noqa: BLE001 - report the compiler log
        pytest.fail(f"NVRTC cannot compile {path.name} for {arch}: {err}\n{nvrtc.getProgramLog(prog)}")
    log = nvrtc.getProgramLog(prog)
    assert "warning" not in log.lower(), log
    if arch.startswith("sm_"):
        assert len(nvrtc.getCUBIN(prog)) > 0
        return
    ptx = nvrtc.getPTX(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for name in KERNEL_NAMES:
        assert f".entry {name}(" in ptx
