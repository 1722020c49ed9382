"""Engine speed: `multifractal_spectrum` against the Python-loop implementation, one CPU core.

Run: ``python benchmarks/bench_spectrum.py [--rounds 15] [--cases NAME ...]``.

Each golden case is timed in rounds that interleave everything, so that all see the same machine
load: the loop implementation once, then the NumPy engine twice (the first call runs right after the
loop, with the caches full of the loop's data, as after a training step; the second is a repeated
call, as for the next sample), then the torch engine once. The table gives the medians over the
rounds, their ranges, and the ratios of the medians. The headline uses the default allocator; the
same measurement after the opt-in ``tune_allocator(64)`` follows as secondary information (that
setting is process-wide and lasting, so it comes last).
Target (issue 14): >= 150x on `pythia70m_shape_init` (1,536 nodes, 61,632 edges) by default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table  # noqa: E402
from benchmarks.reference_loop import loop_spectrum  # noqa: E402
from neuromfa_callback import multifractal_spectrum, tune_allocator  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"
CASES = ["pythia70m_shape_init", "gptneox_tiny_init", "student_t3", "lognormal", "student_t3_thr200_fdigi1"]
HEADERS = [
    "case",
    "nodes",
    "edges",
    "loop ms",
    "numpy ms",
    "range",
    "loop/numpy",
    "after loop ms",
    "range",
    "loop/after",
    "torch ms",
    "|tau-ref|",
]


def _clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _ms(times: list[float]) -> tuple[str, str]:
    return f"{statistics.median(times) * 1e3:.2f}", f"{min(times) * 1e3:.2f}-{max(times) * 1e3:.2f}"


def measure(cases: list[str], rounds: int) -> list[list[object]]:
    """One table row per case: medians over ``rounds`` interleaved rounds."""
    rows = []
    for case in cases:
        arrays = np.load(GOLDEN / f"{case}.npz")
        ref = json.loads((GOLDEN / f"{case}.json").read_text())
        ip, d = arrays["indptr"], arrays["distances"]
        tip, td = torch.from_numpy(ip), torch.from_numpy(d)
        kw = {"threshold": ref["threshold"], "decimals": ref["fdigi"]}

        def run_loop():
            return loop_spectrum(ip, d, **kw)

        def run_numpy():
            return multifractal_spectrum(ip, d, backend="numpy", **kw)

        def run_torch():
            return multifractal_spectrum(tip, td, backend="torch", **kw)

        for _ in range(3):  # first calls build the cached tables and workspaces
            run_numpy()
            run_torch()
        t_loop, t_after, t_np, t_torch = [], [], [], []
        for _ in range(rounds):
            t_loop.append(_clock(run_loop))
            t_after.append(_clock(run_numpy))
            t_np.append(_clock(run_numpy))
            t_torch.append(_clock(run_torch))
        loop_med = statistics.median(t_loop)
        err = float(np.abs(run_numpy().tau - ref["tau"]).max())
        rows.append(
            [
                case,
                len(ip) - 1,
                len(d),
                f"{loop_med * 1e3:.1f}",
                *_ms(t_np),
                f"{loop_med / statistics.median(t_np):.0f}x",
                *_ms(t_after),
                f"{loop_med / statistics.median(t_after):.0f}x",
                _ms(t_torch)[0],
                f"{err:.1e}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cases", nargs="*", default=CASES, choices=CASES)
    parser.add_argument("--no-tuned", action="store_true", help="skip the tune_allocator section")
    args = parser.parse_args()
    torch.set_num_threads(1)
    title = "multifractal_spectrum vs Python-loop implementation"
    title += f" (1 thread, medians of {args.rounds} interleaved rounds)"
    print(f"{title}, default allocator")
    print_table(HEADERS, measure(args.cases, args.rounds))
    if not args.no_tuned and tune_allocator(64):
        print("\nsecondary: the same after neuromfa_callback.tune_allocator(64) (glibc keeps 64 MiB of heap top)")
        print_table(HEADERS, measure(args.cases, args.rounds))


if __name__ == "__main__":
    main()
