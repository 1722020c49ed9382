"""Train a tiny Pythia (GPT-NeoX) on Python's own standard library and watch NeuroMFA evolve.

Run: ``python examples/train_tiny_pythia.py`` (a few minutes on a 2-core CPU; no GPU, no
account, no download). It trains a byte-level GPT-NeoX (hidden 128, 4 blocks) with Lightning on
the source files of the standard library (a held-out set of files is the validation split), with
:class:`neuromfa_callback.NeuroMFACallback` attached, and leaves in ``--output``:

- ``history.jsonl``: one NeuroMFA snapshot per line (alpha0, width, E, the scale-controlled
  values, the mean spectrum);
- ``spectra.png``: f(alpha) at every snapshot, coloured by step;
- ``emergence.png``: alpha0, width and E (raw, scale-controlled, against the permutation null) next to
  the validation loss;
- ``depth.png``, ``depth_emergence.png``: alpha0 and E of every block (depth) at every snapshot;
- ``checkpoints/step=N/``: Hugging Face model folders at a few snapshot steps (``neuromfa analyze``
  on them reproduces the logged values);
- ``wandb/``: the W&B run (offline unless you have configured W&B; ``wandb sync`` uploads it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import sysconfig
import time
import zlib
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from neuromfa_callback import NeuroMFACallback
from neuromfa_callback._wandb import wandb_init_kwargs
from neuromfa_callback.plotting import plot_depth_heatmap, plot_emergence, plot_spectra

CONTEXT = 64


def stdlib_bytes(max_bytes: int = 6_000_000) -> tuple[bytes, bytes]:
    """Train and held-out text: the standard library's ``.py`` files, split by file (1 in 10 held out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    train, val = bytearray(), bytearray()
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        (val if zlib.crc32(str(path.relative_to(root)).encode()) % 10 == 0 else train).extend(data)
        if len(train) + len(val) >= max_bytes:
            break
    if len(train) < 10 * CONTEXT or len(val) < 10 * CONTEXT:
        raise SystemExit(f"error: found too little standard-library source under {root}")
    return bytes(train), bytes(val)


class RandomWindows(IterableDataset):
    """Endless random windows of ``CONTEXT + 1`` bytes (seeded)."""

    def __init__(self, data: bytes, seed: int) -> None:
        self.data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        self.seed = seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        n = self.data.numel() - CONTEXT - 1
        while True:
            i = int(torch.randint(0, n, (1,), generator=g))
            yield self.data[i : i + CONTEXT + 1].long()


class TinyPythia(pl.LightningModule):
    """A byte-level GPT-NeoX with Pythia's architecture (parallel attention + MLP, rotary)."""

    def __init__(self, hidden: int = 128, layers: int = 4, heads: int = 4, lr: float = 2e-3, max_steps: int = 1000) -> None:
        super().__init__()
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        self.save_hyperparameters()
        cfg = GPTNeoXConfig(
            vocab_size=256,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            max_position_embeddings=CONTEXT,
            rotary_pct=0.25,
            use_parallel_residual=True,
            initializer_range=0.02,
        )
        self.model = GPTNeoXForCausalLM(cfg)

    def _shifted(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=batch[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._shifted(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        (x,) = batch
        self.log("val_loss", self._shifted(x), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.1, betas=(0.9, 0.95))
        warmup = max(1, self.hparams.max_steps // 20)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.hparams.max_steps - warmup))))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}


class SaveHFCheckpoints(Callback):
    """Save the inner model as a Hugging Face folder at given optimizer steps (for ``neuromfa analyze``)."""

    def __init__(self, dirpath: Path, steps: set[int]) -> None:
        self.dirpath, self.steps = dirpath, steps

    def _save(self, trainer: pl.Trainer, pl_module: TinyPythia) -> None:
        if trainer.global_step in self.steps and trainer.is_global_zero:
            pl_module.model.save_pretrained(self.dirpath / f"step={trainer.global_step}")
            self.steps = self.steps - {trainer.global_step}

    def on_train_start(self, trainer: pl.Trainer, pl_module: TinyPythia) -> None:
        self._save(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: TinyPythia, *args: Any) -> None:
        self._save(trainer, pl_module)


class ValLossHistory(Callback):
    """Validation loss at each validation run, keyed by optimizer step."""

    def __init__(self) -> None:
        self.values: dict[int, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and "val_loss" in trainer.callback_metrics:
            self.values[trainer.global_step] = float(trainer.callback_metrics["val_loss"])


def summary_table(history: list[dict[str, Any]], val: dict[int, float]) -> str:
    """A plain-text table of the snapshots with the validation loss."""
    head = (f"{'step':>6} {'val_loss':>9} {'alpha0':>8} {'width':>7} {'E':>8} {'alpha0_rms':>10} {'E_rms':>8} "
            f"{'alpha0_null':>11} {'E_null':>8} {'mean|w|':>8}")
    lines = [head, "-" * len(head)]
    nan = float("nan")
    for r in history:
        v = val.get(r["step"], nan)
        lines.append(
            f"{r['step']:>6} {v:>9.4f} {r['alpha0']:>8.4f} {r['width']:>7.4f} {r['emergence']:>8.4f} "
            f"{r.get('alpha0_rms', nan):>10.4f} {r.get('emergence_rms', nan):>8.4f} "
            f"{r.get('alpha0_null', nan):>11.4f} {r.get('emergence_null', nan):>8.4f} {r.get('weighted_degree', nan):>8.5f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-steps", type=int, default=1000, help="optimizer steps (default 1000)")
    p.add_argument("--every", type=int, default=50, help="NeuroMFA snapshot (and validation) interval in steps (default 50)")
    p.add_argument("--output", type=Path, default=Path("outputs/tiny_pythia"), help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--samples", type=int, default=10, help="NeuroMFA samples per snapshot")
    p.add_argument("--null", type=int, default=2, help="permutation nulls per sample (0: none; default 2)")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B (CSV only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.max_steps < 1 or args.every < 1:
        raise SystemExit("error: --max-steps and --every must be >= 1")
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    hist_path = out / "history.jsonl"
    if hist_path.exists():
        hist_path.unlink()  # a fresh run starts a fresh history
    pl.seed_everything(args.seed, workers=True, verbose=False)
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))  # leave a core to the NeuroMFA worker

    train, val = stdlib_bytes()
    g = torch.Generator().manual_seed(args.seed + 1)
    vdata = torch.frombuffer(bytearray(val), dtype=torch.uint8)
    starts = torch.randint(0, vdata.numel() - CONTEXT - 1, (128,), generator=g)
    val_windows = torch.stack([vdata[s : s + CONTEXT + 1].long() for s in starts])
    train_loader = DataLoader(RandomWindows(train, args.seed), batch_size=args.batch_size)
    val_loader = DataLoader(TensorDataset(val_windows), batch_size=64)

    loggers: list[Any] = [CSVLogger(out, name="csv", version=0)]
    if not args.no_wandb:
        from lightning.pytorch.loggers import WandbLogger

        kw = wandb_init_kwargs()
        mode = kw.pop("mode")
        kw.pop("dir", None)  # the demo keeps its run inside --output
        loggers.append(WandbLogger(project="neuromfa-demo", save_dir=str(out), offline=mode == "offline", mode=mode, log_model=False))
        print(f"W&B: {mode} run in {out / 'wandb'}", file=sys.stderr)

    neuromfa = NeuroMFACallback(every_n_train_steps=args.every, samples=args.samples, neurons_per_layer=32, null=args.null,
                                history_path=hist_path)
    val_hist = ValLossHistory()
    save_steps = {0, args.max_steps // 2 // args.every * args.every, args.max_steps // args.every * args.every}
    trainer = pl.Trainer(
        max_steps=args.max_steps,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=[neuromfa, val_hist, SaveHFCheckpoints(out / "checkpoints", save_steps), TQDMProgressBar(refresh_rate=20)],
        val_check_interval=args.every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
    )
    t0 = time.time()
    module = TinyPythia(max_steps=args.max_steps)
    trainer.validate(module, dataloaders=val_loader, verbose=False)  # validation loss at initialisation
    val_hist.values[0] = float(trainer.callback_metrics["val_loss"])
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    elapsed = time.time() - t0

    history = neuromfa.history
    val_pairs = sorted(val_hist.values.items())
    plot_spectra(history, path=out / "spectra.png")
    plot_emergence(history, val_loss=val_pairs, path=out / "emergence.png")
    plot_depth_heatmap(history, value="alpha0", path=out / "depth.png")
    plot_depth_heatmap(history, value="emergence", path=out / "depth_emergence.png")
    print()
    print(summary_table(history, val_hist.values))
    print(f"\n{len(history)} snapshots in {elapsed:.0f} s. Outputs in {out}/: history.jsonl, spectra.png, emergence.png, "
          "depth.png, depth_emergence.png, checkpoints/")
    if not args.no_wandb:
        print(f"W&B run saved under {out / 'wandb'}; upload it with: wandb sync {out / 'wandb'}/offline-run-*")
    return {"history": history, "val_loss": val_hist.values, "elapsed": elapsed}


if __name__ == "__main__":
    main()
