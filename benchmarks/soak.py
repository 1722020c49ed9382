"""Soak: 2,000 optimizer steps with a NeuroMFA snapshot every 10 steps on the tiny model.

Run: ``python benchmarks/soak.py [--steps 2000] [--every 10]``. Prints resident memory after warm-up
and at the end, the Python and OS thread counts over the run, and the snapshot count in the history.
Targets (issue 7): RSS growth after warm-up < 5 %, constant thread count, every snapshot in the history.
The slow test ``tests/integration/test_soak.py`` runs the same function.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import proc_status_kib  # noqa: E402
from neuromfa_callback import NeuroMFACallback  # noqa: E402
from neuromfa_callback.history import load_history  # noqa: E402
from tests._models import TinyLM  # noqa: E402



class _Probe(Callback):
    def __init__(self, every: int, warmup: int) -> None:
        self.every, self.warmup = every, warmup
        self.samples: list[tuple[int, int, int, int]] = []  # step, rss kB, python threads, os threads

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if step >= self.warmup and step % (5 * self.every) == 1:
            gc.collect()
            self.samples.append((step, proc_status_kib("VmRSS"), threading.active_count(), proc_status_kib("Threads")))


def soak(steps: int = 2000, every: int = 10, samples: int = 10, out_dir: str | None = None) -> dict[str, Any]:
    """Run the soak and return its measurements."""
    torch.set_num_threads(1)
    out = Path(out_dir or tempfile.mkdtemp(prefix="neuromfa-soak-"))
    hist = out / "history.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=every, samples=samples, neurons_per_layer=16, history_path=hist)
    probe = _Probe(every, warmup=min(200, steps // 4))
    trainer = pl.Trainer(default_root_dir=out, accelerator="cpu", max_steps=steps, logger=False, callbacks=[cb, probe],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyLM(n_batches=steps + 10))
    rss = [s[1] for s in probe.samples]
    return {
        "steps": steps,
        "expected_snapshots": steps // every + 1,
        "history_steps": [r["step"] for r in load_history(hist)],
        "rss_warm_kb": rss[0],
        "rss_end_kb": rss[-1],
        "rss_growth": rss[-1] / rss[0] - 1,
        "python_threads": sorted({s[2] for s in probe.samples}),
        "os_threads": sorted({s[3] for s in probe.samples}),
        "probes": probe.samples,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=10)
    a = p.parse_args()
    r = soak(a.steps, a.every)
    print(f"steps {r['steps']}, snapshots in history {len(r['history_steps'])} / expected {r['expected_snapshots']}")
    print(f"RSS after warm-up {r['rss_warm_kb'] / 1024:.1f} MiB, at end {r['rss_end_kb'] / 1024:.1f} MiB, growth {100 * r['rss_growth']:+.2f} %")
    print(f"Python threads seen {r['python_threads']}, OS threads seen {r['os_threads']}")


if __name__ == "__main__":
    main()
