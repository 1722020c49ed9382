"""Training run for the SIGKILL test: snapshots every 2 steps, checkpoints every 4, sleeps per step.

Usage: python kill_script.py OUT_DIR MAX_STEPS [CKPT_PATH]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from neuromfa_callback import NeuroMFACallback  # noqa: E402
from tests._models import TinyLM  # noqa: E402


class Slow(Callback):
    def on_train_batch_end(self, *args, **kwargs):
        time.sleep(0.15)


def main() -> None:
    out, max_steps = Path(sys.argv[1]), int(sys.argv[2])
    ckpt = sys.argv[3] if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    cb = NeuroMFACallback(every_n_train_steps=2, samples=2, neurons_per_layer=16, history_path=out / "history.jsonl")
    saver = ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=4, save_top_k=-1, filename="{step}")
    trainer = pl.Trainer(default_root_dir=out, accelerator="cpu", max_steps=max_steps, logger=False,
                         callbacks=[cb, saver, Slow()], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyLM(n_batches=256), ckpt_path=ckpt)


if __name__ == "__main__":
    main()
