"""Two-process FSDP2 run on CPU (gloo, ``ModelParallelStrategy`` + ``fully_shard``) with the NeuroMFA callback.

Used by test_fsdp.py. Usage: python fsdp_script.py OUT_DIR [SAMPLES] [fsdp|tp]
(``tp``: tensor parallelism instead, the MLP of every block split column-/row-wise over the two ranks).
Writes OUT_DIR/history.jsonl (rank 0), OUT_DIR/final.ckpt (full state dict, assembled by the
strategy on rank 0) and OUT_DIR/sharded.txt (rank 0: whether the weights were DTensor shards
during training).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import ModelParallelStrategy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from neuromfa_callback import NeuroMFACallback  # noqa: E402
from neuromfa_callback._sharded import has_sharded_parameters  # noqa: E402
from tests._models import TinyLM  # noqa: E402


class ShardedTinyLM(TinyLM):
    """TinyLM with every GPT-NeoX block and the whole model wrapped by FSDP2 ``fully_shard``."""

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for layer in self.model.gpt_neox.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(self.model, mesh=mesh)


class TensorParallelTinyLM(TinyLM):
    """TinyLM with the MLP of every GPT-NeoX block split over the ranks (column-wise in, row-wise out)."""

    def configure_model(self) -> None:
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        mesh = self.device_mesh["tensor_parallel"]
        plan = {"dense_h_to_4h": ColwiseParallel(), "dense_4h_to_h": RowwiseParallel()}
        for layer in self.model.gpt_neox.layers:
            parallelize_module(layer.mlp, mesh, plan)


class ShardCheck(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 4 and trainer.is_global_zero:
            Path(trainer.default_root_dir, "sharded.txt").write_text(str(has_sharded_parameters(pl_module)))


def main() -> None:
    out = Path(sys.argv[1])
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    mode = sys.argv[3] if len(sys.argv) > 3 else "fsdp"
    dp, tp = (2, 1) if mode == "fsdp" else (1, 2)
    torch.set_num_threads(1)
    cb = NeuroMFACallback(
        every_n_train_steps=4, samples=samples, neurons_per_layer=16, history_path=out / "history.jsonl"
    )
    trainer = pl.Trainer(
        default_root_dir=out,
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(
            data_parallel_size=dp, tensor_parallel_size=tp, save_distributed_checkpoint=False
        ),
        max_steps=8,
        logger=False,
        callbacks=[cb, ShardCheck()],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(ShardedTinyLM() if mode == "fsdp" else TensorParallelTinyLM())
    trainer.save_checkpoint(out / "final.ckpt")  # collective: full weights gathered to rank 0


if __name__ == "__main__":
    main()
