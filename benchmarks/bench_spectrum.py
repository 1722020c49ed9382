"""Engine speed: `multifractal_spectrum` against the Python-loop implementation, one CPU core.

Run: ``python benchmarks/bench_spectrum.py``. Prints medians and the ratio per golden case.
Target (issue 2): >= 150x on `pythia70m_shape_init` (1,536 nodes, 61,632 edges).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import median_time, print_table  # noqa: E402
from benchmarks.reference_loop import loop_spectrum  # noqa: E402
from neuromfa_callback import multifractal_spectrum, tune_allocator  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"
CASES = ["pythia70m_shape_init", "gptneox_tiny_init", "student_t3", "lognormal", "student_t3_thr200_fdigi1"]


def measure() -> list[list[object]]:
    rows = []
    for case in CASES:
        arrays = np.load(GOLDEN / f"{case}.npz")
        ref = json.loads((GOLDEN / f"{case}.json").read_text())
        ip, d = arrays["indptr"], arrays["distances"]
        kw = {"threshold": ref["threshold"], "decimals": ref["fdigi"]}
        loop_med, _ = median_time(lambda: loop_spectrum(ip, d, **kw), repeats=3, warmup=0)
        np_med, np_min = median_time(lambda: multifractal_spectrum(ip, d, backend="numpy", **kw), repeats=41)
        tip, td = torch.from_numpy(ip), torch.from_numpy(d)
        t_med, _ = median_time(lambda: multifractal_spectrum(tip, td, backend="torch", **kw), repeats=21)
        err = float(np.abs(multifractal_spectrum(ip, d, **kw).tau - ref["tau"]).max())
        rows.append(
            [
                case,
                len(ip) - 1,
                len(d),
                f"{loop_med * 1e3:.1f}",
                f"{np_med * 1e3:.2f}",
                f"{np_min * 1e3:.2f}",
                f"{t_med * 1e3:.2f}",
                f"{loop_med / np_med:.0f}x",
                f"{err:.1e}",
            ]
        )
    return rows


def main() -> None:
    torch.set_num_threads(1)
    headers = ["case", "nodes", "edges", "loop ms", "numpy ms", "numpy min", "torch ms", "loop/numpy", "|tau-ref|"]
    print("multifractal_spectrum vs Python-loop implementation (1 thread, medians), default allocator")
    print_table(headers, measure())
    if tune_allocator(64):
        print("\nthe same after neuromfa_callback.tune_allocator(64) (glibc keeps 64 MiB of heap top: no page-fault churn)")
        print_table(headers, measure())


if __name__ == "__main__":
    main()
