"""Callback overhead: the same training with and without NeuroMFACallback (same seed, same steps).

Run: ``python benchmarks/bench_callback_overhead.py [--steps 600] [--repeats 3]``.
Model: the demo's tiny Pythia (hidden 128, 4 blocks, byte vocabulary, batch 16 x 128), default
interval (100 steps), 10 samples x 32 neurons, scale control on, asynchronous. Prints the median wall
time of each configuration and the ratio. Target (issue 5): <= 5 % on a CPU.
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


def run(steps: int, every: int, with_callback: bool, data: bytes, asynchronous: bool = True) -> float:
    pl.seed_everything(0, verbose=False)
    callbacks = [NeuroMFACallback(every_n_train_steps=every, samples=10, asynchronous=asynchronous)] if with_callback else []
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=_Null(), callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0)
    loader = DataLoader(RandomWindows(data, 0), batch_size=16)
    module = TinyPythia(max_steps=steps)
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(2)
    train, _ = stdlib_bytes(2_000_000)
    configs = [("without callback", False, True), ("with callback (async)", True, True), ("with callback (sync)", True, False)]
    times = {name: [] for name, _, _ in configs}
    for _ in range(args.repeats):  # interleaved, so drift hits every configuration alike
        for name, on, asynchronous in configs:
            times[name].append(run(args.steps, args.every, on, train, asynchronous))
    base = statistics.median(times["without callback"])
    rows = []
    for name, _, _ in configs:
        med = statistics.median(times[name])
        rows.append([name, f"{med:.2f}", " ".join(f"{t:.2f}" for t in times[name]), f"{med / base:.3f}", f"{100 * (med / base - 1):+.1f}%"])
    snaps = args.steps // args.every + 1
    print(f"Tiny Pythia, {args.steps} steps, snapshot every {args.every} ({snaps} snapshots, 10 samples x 32 neurons, raw + rms)")
    print_table(["configuration", "median s", "runs s", "ratio", "overhead"], rows)


if __name__ == "__main__":
    main()
