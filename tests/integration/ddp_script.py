"""Two-process DDP run on CPU (gloo) with the NeuroMFA callback; used by test_distributed.py.

Usage: python ddp_script.py OUT_DIR [SAMPLES] [NULL]
Writes OUT_DIR/history.jsonl (rank 0), OUT_DIR/csv/... (CSVLogger) and OUT_DIR/final.pt (weights).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from neuromfa_callback import NeuroMFACallback  # noqa: E402
from tests._models import TinyLM  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    torch.set_num_threads(1)
    null = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    cb = NeuroMFACallback(every_n_train_steps=4, samples=samples, neurons_per_layer=16, null=null,
                          history_path=out / "history.jsonl", log_per_depth=True)
    trainer = pl.Trainer(
        default_root_dir=out,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=8,
        logger=CSVLogger(out / "csv", name="run", version=0),
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    module = TinyLM()
    trainer.fit(module)
    if trainer.is_global_zero:
        torch.save(module.state_dict(), out / "final.pt")
        (out / "rank0_seeds.txt").write_text(str(len(cb.history)))


if __name__ == "__main__":
    main()
