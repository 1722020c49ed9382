"""The Hugging Face Trainer twin: same snapshots, delivered through the Trainer's own logging."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from neuromfa_callback import NeuroMFA, NeuroMFATrainerCallback
from neuromfa_callback.history import load_history
from tests._models import tiny_gpt_neox


class _Recorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs or {})))


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 64, (n, 16), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


@pytest.mark.parametrize("asynchronous", [True, False])
def test_hf_trainer_logs_snapshots_through_report_to(tmp_path, asynchronous):
    model = tiny_gpt_neox()
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, logging_steps=100,
        report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=3e-3, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Tokens())
    cb = NeuroMFATrainerCallback(
        every_n_steps=3, samples=2, neurons_per_layer=16, history_path=tmp_path / "h.jsonl", asynchronous=asynchronous
    ).attach(trainer)
    rec = _Recorder()
    trainer.add_callback(rec)
    trainer.train()

    logged = {logs["neuromfa/step"]: logs for _, logs in rec.logs if "neuromfa/step" in logs}
    assert sorted(logged) == [0, 3, 6]
    assert logged[0]["neuromfa/emergence"] == 0.0
    assert [r["step"] for r in load_history(tmp_path / "h.jsonl")] == [0, 3, 6]
    metric = NeuroMFA(samples=2, neurons_per_layer=16)
    metric.update(model)
    assert logged[6]["neuromfa/alpha0"] == pytest.approx(float(metric.compute()["alpha0"]), abs=1e-12)
    assert math.isfinite(logged[6]["neuromfa/emergence_rms"])
    assert [r["step"] for r in cb.history] == [0, 3, 6]


def test_hf_callback_validates_arguments():
    with pytest.raises(ValueError, match=r"`every_n_steps` >= 1, got 0"):
        NeuroMFATrainerCallback(every_n_steps=0)
    with pytest.raises(ValueError, match=r"`samples` >= 1"):
        NeuroMFATrainerCallback(samples=0)
