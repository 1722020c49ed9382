"""Callback overhead: the same training with and without NeuroMFACallback (same seed, same steps), interleaved.

Run: ``python benchmarks/bench_callback_overhead.py [--steps 300 --every 50] [--repeats 3]``.
Model: the demo's tiny Pythia (hidden 128, 4 blocks, byte vocabulary, batch 16 x 64), 10 samples x
32 neurons, scale control on. Configurations, run in interleaved rounds in one process: no callback;
the default (``asynchronous="auto"``: inline here, since torch's threads use every core); the worker
process forced (``asynchronous=True``: one thread at the lowest scheduling priority); inline; the
default with the permutation null (``null=2``). Prints the median wall time of each, its ratio to the
run without the callback, the per-snapshot analysis time (wall, where it ran) and its CPU time.

Targets (issue 14, this 2-core machine): 300 steps / every 50: asynchronous <= 3 % and no more than the
synchronous one; 600 steps / every 100: <= 2 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from benchmarks._timing import print_table  # noqa: E402
from neuromfa_callback import NeuroMFACallback  # noqa: E402
from train_tiny_pythia import RandomWindows, TinyPythia, stdlib_bytes  # noqa: E402


class _Null(pl.loggers.Logger):
    name, version = "null", "0"

    def log_hyperparams(self, *a, **k):
        pass

    def log_metrics(self, metrics, step=None):
        pass


def run(steps: int, every: int, config: dict | None, data: bytes) -> tuple[float, list[tuple[float, float]]]:
    pl.seed_everything(0, verbose=False)
    cb = NeuroMFACallback(every_n_train_steps=every, samples=10, **config) if config is not None else None
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=_Null(), callbacks=[cb] if cb else [],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         limit_val_batches=0)
    loader = DataLoader(RandomWindows(data, 0), batch_size=16)
    module = TinyPythia(max_steps=steps)
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - t0, (list(cb.monitor.timings) if cb else [])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-null", action="store_true", help="leave out the null configuration")
    args = p.parse_args()
    torch.set_num_threads(2)
    train, _ = stdlib_bytes(2_000_000)
    configs = {
        "without callback": None,
        "default (asynchronous='auto')": {},
        "worker process (asynchronous=True)": {"asynchronous": True},
        "inline (asynchronous=False)": {"asynchronous": False},
    }
    if not args.no_null:
        configs["default, null=2"] = {"null": 2}
    times = {name: [] for name in configs}
    timings = {name: [] for name in configs}
    for _ in range(args.repeats):  # interleaved, so drift hits every configuration alike
        for name, config in configs.items():
            elapsed, stats = run(args.steps, args.every, config, train)
            times[name].append(elapsed)
            timings[name] += stats
    base = statistics.median(times["without callback"])
    rows = []
    for name in configs:
        med = statistics.median(times[name])
        wall = f"{1e3 * statistics.median(w for w, _ in timings[name]):.0f}" if timings[name] else "-"
        cpu = f"{1e3 * statistics.median(c for _, c in timings[name]):.0f}" if timings[name] else "-"
        rows.append([name, f"{med:.2f}", " ".join(f"{t:.2f}" for t in times[name]), f"{med / base:.3f}",
                     f"{100 * (med / base - 1):+.1f}%", wall, cpu])
    snaps = args.steps // args.every + 1
    print(f"Tiny Pythia, {args.steps} steps, a snapshot every {args.every} ({snaps} snapshots of 10 samples x 32 "
          f"neurons, raw + scale-controlled, by depth), {args.repeats} interleaved rounds, medians")
    print_table(["configuration", "median s", "runs s", "ratio", "overhead", "analysis ms/snapshot",
                 "worker CPU ms/snapshot"], rows)


if __name__ == "__main__":
    main()
