"""Distributed analysis: the samples split across two CPU processes (gloo) vs one process.

Run: ``python benchmarks/bench_ddp.py``. Model: the Pythia-70m-shaped GPT-NeoX of bench_network.py;
``NeuroMFA(samples=10, neurons_per_layer=32)``: ``update(model)`` (each rank builds and analyses its
share of the seeds) + ``compute()`` (sum/max reduction, then the fit). Prints median wall times, the
speed-up and the largest difference between the distributed and the single-process results.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table  # noqa: E402
from benchmarks.bench_network import pythia70m_shaped  # noqa: E402
from neuromfa_callback import NeuroMFA  # noqa: E402

REPEATS = 7


def _analyse(model: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    t0 = time.perf_counter()
    metric = NeuroMFA(samples=10, neurons_per_layer=32)
    metric.update(model)
    out = metric.compute()
    return time.perf_counter() - t0, out


def _worker(rank: int, world: int, init_file: str, result_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = pythia70m_shaped()
    _analyse(model)  # warm-up
    times, out = [], None
    for _ in range(REPEATS):
        dist.barrier()
        t, out = _analyse(model)
        times.append(t)
    if rank == 0:
        torch.save({"times": times, "out": out}, result_file)
    dist.destroy_process_group()


def main() -> None:
    torch.set_num_threads(1)
    model = pythia70m_shaped()
    _analyse(model)
    single = []
    for _ in range(REPEATS):
        t, ref = _analyse(model)
        single.append(t)
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "result.pt")
        mp.spawn(_worker, args=(2, init_file, result_file), nprocs=2, join=True)
        res = torch.load(result_file, weights_only=True)
    diff = max(float((res["out"][k] - ref[k]).abs().max()) for k in ("alpha0", "width", "alpha0_std", "tau", "f_alpha"))
    s, d = statistics.median(single), statistics.median(res["times"])
    print("NeuroMFA(samples=10, neurons_per_layer=32) on a Pythia-70m-shaped GPT-NeoX: update(model) + compute()")
    print_table(["processes", "median ms", "speed-up", "max |difference| vs 1 process"],
                [["1", f"{s * 1e3:.1f}", "1.00x", "-"], ["2 (DDP, gloo)", f"{d * 1e3:.1f}", f"{s / d:.2f}x", f"{diff:.1e}"]])


if __name__ == "__main__":
    main()
