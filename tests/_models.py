"""Tiny models and LightningModules for integration tests (built from configs, no downloads)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset


def tiny_gpt_neox(hidden: int = 64, layers: int = 2, seed: int = 0):
    """The architecture tests' tiny GPT-NeoX (64-token vocabulary), seeded."""
    from tests.architectures._helpers import tiny_gpt_neox as _tiny

    return _tiny(seed=seed, hidden=hidden, layers=layers)


class TinyLM(pl.LightningModule):
    """A tiny GPT-NeoX trained on random tokens (enough to move the weights)."""

    def __init__(self, hidden: int = 64, layers: int = 2, lr: float = 3e-3, n_batches: int = 64, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.model = tiny_gpt_neox(hidden, layers, seed=seed)

    def training_step(self, batch: Any, batch_idx: int):
        (x,) = batch
        out = self.model(input_ids=x, labels=x)
        self.log("train_loss", out.loss)
        return out.loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, 64, (self.hparams.n_batches * 4, 16), generator=g)
        return DataLoader(TensorDataset(x), batch_size=4, shuffle=False)


class RecordingLogger(Logger):
    """Keeps every ``log_metrics`` call: ``calls`` is a list of (step, metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def neuromfa_steps(self, key: str = "neuromfa/alpha0") -> list[int]:
        return [s for s, m in self.calls if key in m]

    def values(self, key: str) -> dict[int, float]:
        return {s: m[key] for s, m in self.calls if key in m}
