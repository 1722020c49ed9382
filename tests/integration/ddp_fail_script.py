"""Two-process DDP run where rank 1's analysis of step 4 raises and a checkpoint is saved right after;
used by test_distributed.py. Usage: python ddp_fail_script.py OUT_DIR [ON_ERROR].

Writes OUT_DIR/history.jsonl (rank 0), OUT_DIR/ckpt/*.ckpt and OUT_DIR/done_rank{0,1}.txt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import neuromfa_callback.monitor as monitor_mod  # noqa: E402
from neuromfa_callback import NeuroMFACallback  # noqa: E402
from tests._models import TinyLM  # noqa: E402


class _FailOnRank1AtStep4(monitor_mod._Analysis):
    made = 0

    def __call__(self):
        _FailOnRank1AtStep4.made += 1
        if torch.distributed.get_rank() == 1 and _FailOnRank1AtStep4.made == 2:  # the step-4 snapshot
            raise RuntimeError("injected failure on rank 1")
        return super().__call__()


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    monitor_mod._Analysis = _FailOnRank1AtStep4
    on_error = sys.argv[2] if len(sys.argv) > 2 else "warn"
    cb = NeuroMFACallback(every_n_train_steps=4, samples=2, neurons_per_layer=16, asynchronous=False,
                          history_path=out / "history.jsonl", on_error=on_error)
    ckpt = ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=4, save_top_k=-1)
    trainer = pl.Trainer(default_root_dir=out, accelerator="cpu", devices=2, strategy="ddp", max_steps=8,
                         logger=False, callbacks=[cb, ckpt], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyLM())
    (out / f"done_rank{trainer.global_rank}.txt").write_text(str([r["step"] for r in cb.history]))


if __name__ == "__main__":
    main()
